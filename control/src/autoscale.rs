//! The autoscaler inside the planner: samples the workers' metrics into
//! `status.autoscaler`, asks [`autoscaler::decide`] for a decision when the job runs steadily,
//! sets the parallelism the planner deploys (the planner's ordinary rescale carries it out),
//! records each rescale with its measured downtime, and reports a `spec.parallelism` changed
//! from outside as a conflict instead of acting on it.
//!
//! Everything it remembers is in status, so a restarted control plane decides as the one
//! before it would have.

use rivulet_api::job::{AutoscalerSpec, StreamJob};
use rivulet_api::job_status::{
    AutoscalerDecision, AutoscalerRecommendation, AutoscalerRescale, AutoscalerSample,
    AutoscalerStatus, Phase, StreamJobStatus,
};
use rivulet_api::StreamJobSpec;

use crate::autoscaler::{self, Current, History, Reason, Recommendation, Rescale};
use crate::observed::Observed;
use crate::plan::{millis, time, workers, Event};

/// How often the autoscaler samples the metrics and decides: a twelfth of the metrics
/// window, from 1 s to 5 s (every 5 s with the default window of a minute).
pub fn sample_every_ms(settings: &AutoscalerSpec) -> i64 {
    (settings.metrics_window.as_millis_i64() / 12).clamp(1_000, 5_000)
}

/// What the autoscaler contributes to one plan.
#[derive(Clone, Debug, Default)]
pub(crate) struct Autoscaled {
    /// The spec the planner acts on: the job's, with the autoscaler's parallelism.
    pub spec: Option<StreamJobSpec>,
    /// `status.autoscaler` to write.
    pub status: Option<AutoscalerStatus>,
    pub events: Vec<Event>,
    /// The decision taken in this plan, if one was.
    pub decision: Option<AutoscalerDecision>,
    /// Plan again within this long, milliseconds.
    pub requeue_ms: Option<u64>,
}

/// The autoscaler's step of a plan for `job` given `obs`.
pub(crate) fn autoscale(job: &StreamJob, obs: &Observed) -> Autoscaled {
    let spec = &job.spec;
    let settings = &spec.autoscaler;
    let empty = StreamJobStatus::default();
    let status = job.status.as_ref().unwrap_or(&empty);
    let mut out = Autoscaled::default();
    if !settings.enabled {
        if let Some(p) = status.autoscaler.as_ref().and_then(|a| a.parallelism) {
            if p != spec.parallelism {
                out.event(
                    false,
                    "AutoscalerDisabled",
                    format!(
                        "the autoscaler is off: spec.parallelism ({}) holds again instead of \
                         its {p}",
                        spec.parallelism
                    ),
                );
            }
        }
        return out;
    }
    let mut st = status.autoscaler.clone().unwrap_or_default();
    follow_spec(&mut st, spec, &mut out);
    if runs_steadily(status, obs, &st) && spec.parallelism > 0 {
        let due = st
            .samples
            .last()
            .is_none_or(|s| obs.now_ms - s.at_ms >= sample_every_ms(settings));
        if due {
            decide(&mut st, settings, spec, status, obs, &mut out);
        }
    }
    let mut effective = spec.clone();
    if spec.parallelism > 0 {
        if let Some(p) = st.parallelism {
            effective.parallelism = p;
        }
    }
    out.spec = Some(effective);
    out.status = Some(st);
    out.requeue_ms = Some(sample_every_ms(settings) as u64);
    out
}

impl Autoscaled {
    fn event(&mut self, warning: bool, reason: &str, message: String) {
        self.events.push(Event {
            warning,
            reason: reason.into(),
            message,
        });
    }
}

/// Takes `spec.parallelism` as the starting point, or reports a change to it as a conflict
/// once the autoscaler has set its own (parallelism 0, a suspension, is always honoured).
fn follow_spec(st: &mut AutoscalerStatus, spec: &StreamJobSpec, out: &mut Autoscaled) {
    let wanted = spec.parallelism;
    match (st.parallelism, st.spec_parallelism) {
        (Some(own), Some(recorded)) if wanted != recorded && wanted != 0 => {
            let message = format!(
                "spec.parallelism was set to {wanted} while the autoscaler runs the job at \
                 {own}; the autoscaler keeps deciding (set spec.autoscaler.enabled: false to \
                 scale by hand or with an HPA or KEDA)"
            );
            if st.conflict.as_deref() != Some(message.as_str()) {
                out.event(true, "ParallelismConflict", message.clone());
            }
            st.conflict = Some(message);
        }
        (Some(_), Some(_)) => st.conflict = None,
        _ => {
            st.spec_parallelism = Some(wanted);
            st.conflict = None;
        }
    }
}

/// After the planner: completes the rescale the autoscaler asked for once its workers are
/// ready (measuring its downtime), or gives it up when the operation ended otherwise (a
/// rollback).
pub(crate) fn track_rescale(status: &mut StreamJobStatus, events: &mut Vec<Event>) {
    let mut out = Autoscaled::default();
    if let Some(mut st) = status.autoscaler.take() {
        track(&mut st, status, &mut out);
        status.autoscaler = Some(st);
    }
    events.append(&mut out.events);
}

fn track(st: &mut AutoscalerStatus, status: &StreamJobStatus, out: &mut Autoscaled) {
    let Some(mut r) = st.pending_rescale.clone() else {
        return;
    };
    if status.operation.is_some() {
        return;
    }
    let Some(d) = &status.deployment else {
        return;
    };
    let ready_ms = d.ready_at.as_ref().map(millis);
    match ready_ms {
        Some(ready) if d.parallelism == r.to && ready >= r.requested_ms => {
            r.completed_ms = Some(ready);
            r.downtime_ms = Some(ready - r.requested_ms);
            out.event(
                false,
                "AutoscalerRescaled",
                format!(
                    "rescaled from {} to {} in {:.1} s",
                    workers(r.from),
                    workers(r.to),
                    (ready - r.requested_ms) as f64 / 1000.0
                ),
            );
            st.rescales += 1;
            st.last_rescale = Some(r);
            st.pending_rescale = None;
        }
        _ if d.parallelism != r.to => {
            out.event(
                true,
                "AutoscalerRescaleAbandoned",
                format!(
                    "the rescale to {} did not complete; the job runs {}",
                    workers(r.to),
                    workers(d.parallelism)
                ),
            );
            st.parallelism = Some(d.parallelism);
            st.pending_rescale = None;
        }
        // Ready but not yet marked (a restart of the control plane in between).
        _ => {}
    }
}

/// The job runs as last deployed, every worker ready, no operation and nothing pending: its
/// metrics say something about its parallelism.
fn runs_steadily(status: &StreamJobStatus, obs: &Observed, st: &AutoscalerStatus) -> bool {
    let (Some(d), Some(w)) = (&status.deployment, &obs.workers) else {
        return false;
    };
    status.operation.is_none()
        && st.pending_rescale.is_none()
        && !obs.deleting
        && status.phase == Some(Phase::Running)
        && w.deployment == d.id
        && w.failure.is_none()
        && w.count == d.parallelism
        && w.ready == w.count
        && w.reporting == w.count
}

/// Takes a sample, decides, and acts on the decision.
fn decide(
    st: &mut AutoscalerStatus,
    settings: &AutoscalerSpec,
    spec: &StreamJobSpec,
    status: &StreamJobStatus,
    obs: &Observed,
    out: &mut Autoscaled,
) {
    let (Some(d), Some(w)) = (&status.deployment, &obs.workers) else {
        return;
    };
    let now = obs.now_ms;
    if w.partitions > 0 {
        st.partitions = w.partitions;
    }
    st.samples.push(AutoscalerSample {
        at_ms: now,
        parallelism: w.count,
        records_per_second: w.records_per_second,
        busy: w.busy,
        backpressure: w.backpressure,
        lag: w.lag,
    });
    let window_ms = settings.metrics_window.as_millis_i64();
    prune(
        &mut st.samples,
        now - window_ms - sample_every_ms(settings),
        |s| s.at_ms,
    );
    st.samples.retain(|s| s.parallelism == w.count);

    let history = History {
        samples: st
            .samples
            .iter()
            .map(|s| autoscaler::Sample {
                at_ms: s.at_ms,
                parallelism: s.parallelism,
                records_per_second: s.records_per_second,
                busy: s.busy,
                backpressure: s.backpressure,
                lag: s.lag as f64,
            })
            .collect(),
        recommendations: st
            .recommendations
            .iter()
            .map(|r| Recommendation {
                at_ms: r.at_ms,
                parallelism: r.parallelism,
                recommended: r.recommended,
            })
            .collect(),
    };
    let current = Current {
        now_ms: now,
        parallelism: d.parallelism,
        key_groups: spec.max_parallelism,
        partitions: st.partitions.max(1),
        last_rescale: last_rescale(st, status),
    };
    let decision = autoscaler::decide(&history, settings, &current);

    record(
        &mut st.recommendations,
        AutoscalerRecommendation {
            at_ms: now,
            parallelism: d.parallelism,
            recommended: decision.recommended,
        },
    );
    let horizon = settings
        .scale_down_interval
        .as_millis_i64()
        .max(settings.stabilization.as_millis_i64())
        + window_ms;
    prune(&mut st.recommendations, now - horizon, |r| r.at_ms);

    let message = autoscaler::explain(&decision, settings, &current);
    let record = AutoscalerDecision {
        time: Some(time(now)),
        reason: decision.reason.name().into(),
        message: message.clone(),
        parallelism: d.parallelism,
        recommended: decision.recommended,
        target: decision.target,
        arrival_rate: round(decision.inputs.arrival_rate),
        read_rate: round(decision.inputs.read_rate),
        lag: round(decision.inputs.lag),
        lag_growth: round(decision.inputs.lag_growth),
        busy: round(decision.inputs.busy),
        worker_capacity: round(decision.inputs.worker_capacity),
        required_capacity: round(decision.inputs.required_capacity),
        projected_utilization: round(decision.inputs.projected_utilization),
    };
    let changed = st
        .last_decision
        .as_ref()
        .is_none_or(|l| l.reason != record.reason || l.recommended != record.recommended);
    if let Some(target) = decision.target {
        st.parallelism = Some(target);
        st.pending_rescale = Some(AutoscalerRescale {
            from: d.parallelism,
            to: target,
            requested_ms: now,
            completed_ms: None,
            downtime_ms: None,
            capacity_before: round(decision.inputs.worker_capacity * f64::from(d.parallelism)),
            reason: decision.reason.name().into(),
        });
    }
    if changed || decision.target.is_some() {
        let warning = matches!(decision.reason, Reason::IneffectiveScaleUp { .. });
        out.event(
            warning,
            &format!("Autoscaler{}", decision.reason.name()),
            message,
        );
    }
    out.decision = Some(record.clone());
    st.last_decision = Some(record);
}

/// The last rescale as the decision sees it: the autoscaler's own, or any later redeploy of
/// the job (an upgrade, a restart, a rescale by hand), after which it also stabilizes.
fn last_rescale(st: &AutoscalerStatus, status: &StreamJobStatus) -> Option<Rescale> {
    let own = st.last_rescale.as_ref().and_then(|r| {
        Some(Rescale {
            from: r.from,
            to: r.to,
            completed_ms: r.completed_ms?,
            downtime_ms: r.downtime_ms.unwrap_or(0),
            capacity_before: r.capacity_before,
        })
    });
    let deployed = status.deployment.as_ref().and_then(|d| {
        let ready = millis(d.ready_at.as_ref()?);
        Some(Rescale {
            from: d.parallelism,
            to: d.parallelism,
            completed_ms: ready,
            downtime_ms: own.map_or(0, |o| o.downtime_ms),
            capacity_before: 0.0,
        })
    });
    match (own, deployed) {
        (Some(o), Some(d)) if d.completed_ms > o.completed_ms => Some(d),
        (Some(o), _) => Some(o),
        (None, d) => d,
    }
}

/// Appends a recommendation; of a run of equal ones only the first and the last are kept
/// (which is all the decision reads: when the run began, and its value).
fn record(list: &mut Vec<AutoscalerRecommendation>, r: AutoscalerRecommendation) {
    let same = |a: &AutoscalerRecommendation| {
        a.parallelism == r.parallelism && a.recommended == r.recommended
    };
    let n = list.len();
    if n >= 2 && same(&list[n - 1]) && same(&list[n - 2]) {
        list[n - 1] = r;
    } else {
        list.push(r);
    }
}

/// Drops entries before `cutoff`, except the last of them (it may begin a run that reaches
/// past the cutoff).
fn prune<T>(list: &mut Vec<T>, cutoff: i64, at: impl Fn(&T) -> i64) {
    let before = list.iter().filter(|x| at(x) < cutoff).count();
    if before > 1 {
        list.drain(..before - 1);
    }
}

/// Three decimals: status shows inputs, not noise.
fn round(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}
