//! The autoscaler's decision, as a pure function: `decide(history, spec, current)` turns a
//! window of the job's metrics and its recent recommendations into a target parallelism, a
//! reason and the inputs it was computed from. No clock and no I/O: the time is
//! `current.now_ms`, so every decision can be replayed and tested exhaustively.
//!
//! The model:
//! - the **arrival rate** is the rate the workers read plus the lag's growth (a job that is
//!   behind reads at its capacity, not at the arrival rate);
//! - a worker's **true processing rate** is its observed rate divided by its busy ratio (a
//!   worker busy half the time could read twice as fast);
//! - the **arrival rate** and the lag's growth are medians over the window, so a burst
//!   shorter than half of it moves neither;
//! - the **required capacity** is the larger of the arrival rate at the target utilization
//!   (steady state) and, flat out, the arrival rate plus reading the current lag and the
//!   records that pile up during the rescale itself (the last rescale's measured downtime)
//!   within `catchUpDuration`;
//! - the parallelism is the fewest workers whose most loaded one (key groups divide
//!   unevenly) still keeps up, never above the source partitions (more would sit idle) nor
//!   outside `minParallelism`..`maxParallelism`, and each step is bounded by
//!   `maxScaleUpFactor` and `maxScaleDownFactor`.
//!
//! Against flapping: metrics are averaged over `metricsWindow` and ignored for
//! `stabilization` after a rescale; a scale-up needs every recommendation of the last
//! `stabilization` to be above the current parallelism; a scale-down waits for a whole
//! `scaleDownInterval` of lower recommendations, and then goes to the highest of them (of
//! those computed from metrics wholly inside the interval); and
//! a utilization from [`SCALE_DOWN_BAND`] below the target to [`SCALE_UP_BAND`] above it is
//! left alone (so the spare capacity a scale-up adds to catch up does not turn into a
//! scale-down once the lag is read). A scale-up that
//! did not raise the processing rate blocks the next scale-up and says so (effectiveness
//! detection).

use rivulet_api::job::AutoscalerSpec;

/// A projected utilization up to this much above the target holds the parallelism (unless
/// the lag grows).
pub const SCALE_UP_BAND: f64 = 0.1;
/// A projected utilization down to this much below the target holds the parallelism.
pub const SCALE_DOWN_BAND: f64 = 0.25;
/// A scale-up is effective when the processing rate grew by at least this share of what
/// the added workers promised.
pub const EFFECTIVE_GAIN: f64 = 0.3;
/// Busy ratios below this are taken as this (an idle worker's true rate is unknowable).
const MIN_BUSY: f64 = 0.05;

/// The job's metrics at one moment, summed (rates, lag) or averaged (ratios) over its
/// workers.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// When it was taken, epoch milliseconds.
    pub at_ms: i64,
    /// Workers that reported.
    pub parallelism: u32,
    /// Records read per second, all workers.
    pub records_per_second: f64,
    /// Share of time the workers spent processing rather than waiting for input, 0 to 1
    /// (averaged over the workers, weighted by their rates).
    pub busy: f64,
    /// Share of time the workers were blocked on a full sink, 0 to 1 (the highest).
    pub backpressure: f64,
    /// Records waiting in the source partitions, all of them.
    pub lag: f64,
}

/// A recommendation made earlier (every decision leaves one, acted on or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub at_ms: i64,
    /// The parallelism the job ran at then.
    pub parallelism: u32,
    /// What the autoscaler recommended.
    pub recommended: u32,
}

/// What the decision looks back on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Metric samples, oldest first.
    pub samples: Vec<Sample>,
    /// Earlier recommendations, oldest first.
    pub recommendations: Vec<Recommendation>,
}

/// The last rescale, as the control plane recorded it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rescale {
    pub from: u32,
    pub to: u32,
    /// When the new workers were all running again, epoch milliseconds.
    pub completed_ms: i64,
    /// From the stop of the old workers to the new ones running, milliseconds.
    pub downtime_ms: i64,
    /// The job's true processing rate (records/s, all workers) just before it.
    pub capacity_before: f64,
}

/// The job as it is now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Current {
    pub now_ms: i64,
    /// Workers running now (the deployed parallelism).
    pub parallelism: u32,
    /// The job's key groups (`spec.maxParallelism`).
    pub key_groups: u32,
    /// Partitions of the source topics (the most workers that can all read).
    pub partitions: u32,
    pub last_rescale: Option<Rescale>,
}

/// Why the decision is what it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// `autoscaler.enabled` is false.
    Disabled,
    /// The metrics window is not yet covered since the start or the last rescale.
    Warming { until_ms: i64 },
    /// Within the target utilization's band and keeping up: nothing to do.
    Steady,
    /// The recommendation is above the parallelism, not yet for a whole stabilization.
    ScaleUpPending { since_ms: i64 },
    /// The recommendation is below the parallelism, not yet for a whole scale-down interval.
    ScaleDownPending { since_ms: i64 },
    /// More workers would help, but the last scale-up did not raise the processing rate.
    IneffectiveScaleUp { from: u32, to: u32, gain: f64 },
    /// Scale up: the arrival rate or the lag needs more workers.
    ScaleUp,
    /// Scale down: a whole interval needed fewer workers.
    ScaleDown,
    /// The recommendation differs but the bounds hold the parallelism where it is.
    AtBound,
}

/// Every [`Reason::name`], for metric labels.
pub const REASONS: &[&str] = &[
    "Disabled",
    "Warming",
    "Steady",
    "ScaleUpPending",
    "ScaleDownPending",
    "IneffectiveScaleUp",
    "ScaleUp",
    "ScaleDown",
    "AtBound",
];

impl Reason {
    /// CamelCase, for events, metrics and status.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Disabled => "Disabled",
            Reason::Warming { .. } => "Warming",
            Reason::Steady => "Steady",
            Reason::ScaleUpPending { .. } => "ScaleUpPending",
            Reason::ScaleDownPending { .. } => "ScaleDownPending",
            Reason::IneffectiveScaleUp { .. } => "IneffectiveScaleUp",
            Reason::ScaleUp => "ScaleUp",
            Reason::ScaleDown => "ScaleDown",
            Reason::AtBound => "AtBound",
        }
    }
}

/// What the decision was computed from (shown with it).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Inputs {
    /// Records arriving per second (read rate plus lag growth).
    pub arrival_rate: f64,
    /// Records read per second.
    pub read_rate: f64,
    /// The lag's growth, records per second (negative while it drains).
    pub lag_growth: f64,
    pub lag: f64,
    /// Average busy ratio.
    pub busy: f64,
    /// What one worker processes per second when busy all the time.
    pub worker_capacity: f64,
    /// Records per second the job should be able to process.
    pub required_capacity: f64,
    /// Busy ratio the busiest worker would have at the current parallelism with the arrival
    /// rate.
    pub projected_utilization: f64,
}

/// The autoscaler's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Rescale to this parallelism now (`None`: keep it).
    pub target: Option<u32>,
    /// What the metrics call for, acted on or not (the current parallelism when unknown).
    pub recommended: u32,
    pub reason: Reason,
    pub inputs: Inputs,
}

/// The most workers the job can use: the spec's bound, the key groups and the partitions.
pub fn max_useful(spec: &AutoscalerSpec, current: &Current) -> u32 {
    let spec_max = spec.max_parallelism.unwrap_or(current.key_groups);
    spec_max
        .min(current.key_groups)
        .min(current.partitions.max(1))
        .max(1)
}

/// The fewest workers, at least `min`, whose most loaded one holds at most `units` workers'
/// worth of the key groups' load: with `g` key groups on `p` workers the busiest has
/// `ceil(g / p)` of them, so `p` workers carry the load of `g / ceil(g / p)` even ones.
pub fn aligned(units: f64, key_groups: u32, min: u32, max: u32) -> u32 {
    let g = f64::from(key_groups.max(1));
    let mut p = min.max(1);
    while p < max {
        let busiest = (g / f64::from(p)).ceil();
        if g / busiest >= units - 1e-9 {
            break;
        }
        p += 1;
    }
    // The same busiest worker with fewer workers would waste none: take the fewest.
    let busiest = (g / f64::from(p)).ceil();
    while p > min.max(1) && (g / f64::from(p - 1)).ceil() == busiest {
        p -= 1;
    }
    p.min(max)
}

/// The decision now.
pub fn decide(history: &History, spec: &AutoscalerSpec, current: &Current) -> Decision {
    let keep = |reason: Reason, recommended: u32, inputs: Inputs| Decision {
        target: None,
        recommended,
        reason,
        inputs,
    };
    let p = current.parallelism.max(1);
    if !spec.enabled {
        return keep(Reason::Disabled, p, Inputs::default());
    }
    let now = current.now_ms;
    let window_ms = spec.metrics_window.as_millis_i64().max(1);
    let stabilization_ms = spec.stabilization.as_millis_i64();
    // Metrics count from the end of the last rescale's stabilization, at this parallelism.
    let settled_ms = current.last_rescale.map_or(i64::MIN, |r| {
        r.completed_ms.saturating_add(stabilization_ms)
    });
    let from_ms = (now - window_ms).max(settled_ms);
    let samples: Vec<&Sample> = history
        .samples
        .iter()
        .filter(|s| s.at_ms >= from_ms && s.at_ms <= now && s.parallelism == current.parallelism)
        .collect();
    // The whole window (less one sampling gap), and at least two samples.
    let gap_ms = samples
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .max()
        .unwrap_or(0);
    let needed_ms = (window_ms - gap_ms).max(window_ms / 2);
    let covered = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if samples.len() >= 2 => b.at_ms - a.at_ms,
        _ => 0,
    };
    if covered < needed_ms {
        let until_ms = from_ms.max(now - covered) + needed_ms;
        return keep(Reason::Warming { until_ms }, p, Inputs::default());
    }

    let inputs = inputs(&samples, spec, current);
    let raw = recommend(&inputs, spec, current);
    let max = max_useful(spec, current);
    let min = spec.min_parallelism.clamp(1, max);
    let up_bound = ((f64::from(p) * spec.max_scale_up_factor.max(1.0)).floor() as u32).max(p + 1);
    let down_bound = ((f64::from(p) / spec.max_scale_down_factor.max(1.0)).ceil() as u32).max(1);
    let recommended = raw.clamp(down_bound.max(min), up_bound.min(max).max(min));

    // Recommendations since the job settled at this parallelism, this one included.
    let mut recent: Vec<Recommendation> = history
        .recommendations
        .iter()
        .copied()
        .filter(|r| r.at_ms >= settled_ms && r.at_ms < now && r.parallelism == current.parallelism)
        .collect();
    recent.push(Recommendation {
        at_ms: now,
        parallelism: current.parallelism,
        recommended,
    });

    if recommended > current.parallelism {
        if let Some(r) = current.last_rescale.filter(|r| r.to > r.from) {
            let promised = f64::from(r.to) / f64::from(r.from.max(1)) - 1.0;
            let capacity_now = inputs.worker_capacity * f64::from(p);
            let gain = if r.capacity_before > 0.0 {
                (capacity_now / r.capacity_before - 1.0) / promised
            } else {
                1.0
            };
            if gain < EFFECTIVE_GAIN {
                return keep(
                    Reason::IneffectiveScaleUp {
                        from: r.from,
                        to: r.to,
                        gain,
                    },
                    recommended,
                    inputs,
                );
            }
        }
        let since_ms = streak_start(&recent, |r| r.recommended > current.parallelism);
        if now - since_ms < stabilization_ms {
            return keep(Reason::ScaleUpPending { since_ms }, recommended, inputs);
        }
        return Decision {
            target: Some(recommended),
            recommended,
            reason: Reason::ScaleUp,
            inputs,
        };
    }
    if recommended < current.parallelism {
        let interval_ms = spec.scale_down_interval.as_millis_i64();
        let since_ms = streak_start(&recent, |r| r.recommended < current.parallelism);
        let last_ms = current.last_rescale.map_or(i64::MIN, |r| r.completed_ms);
        if now - since_ms < interval_ms || now.saturating_sub(last_ms) < interval_ms {
            return keep(Reason::ScaleDownPending { since_ms }, recommended, inputs);
        }
        // The highest recommendation of the interval, counting those whose metrics window
        // lies wholly inside it (earlier ones still average the load before the drop).
        let target = recent
            .iter()
            .filter(|r| r.at_ms >= (now - interval_ms).max(since_ms + window_ms))
            .map(|r| r.recommended)
            .max()
            .unwrap_or(recommended);
        if target >= current.parallelism {
            return keep(Reason::Steady, recommended, inputs);
        }
        return Decision {
            target: Some(target),
            recommended,
            reason: Reason::ScaleDown,
            inputs,
        };
    }
    let reason = if raw != recommended {
        Reason::AtBound
    } else {
        Reason::Steady
    };
    keep(reason, recommended, inputs)
}

/// The decision in words, for status, events and `rivulet describe`.
pub fn explain(decision: &Decision, spec: &AutoscalerSpec, current: &Current) -> String {
    let i = &decision.inputs;
    let p = current.parallelism;
    let n = |k: u32| {
        if k == 1 {
            "1 worker".to_string()
        } else {
            format!("{k} workers")
        }
    };
    let seconds = |ms: i64| format!("{:.0} s", (ms.max(0) as f64) / 1000.0);
    let load = format!(
        "{:.0} records/s arrive, {:.0} read; lag {:.0} ({:+.0}/s); {} at {:.0}% busy, \
         {:.0} records/s each at full load; {:.0} records/s needed",
        i.arrival_rate,
        i.read_rate,
        i.lag,
        i.lag_growth,
        n(p),
        i.busy * 100.0,
        i.worker_capacity,
        i.required_capacity
    );
    match &decision.reason {
        Reason::Disabled => "the autoscaler is disabled".into(),
        Reason::Warming { until_ms } => format!(
            "collecting a metrics window ({}) at {}: the first decision is due in {}",
            spec.metrics_window,
            n(p),
            seconds(until_ms - current.now_ms)
        ),
        Reason::Steady => format!(
            "keeping {}: {:.0}% projected utilization for a target of {:.0}% ({load})",
            n(p),
            i.projected_utilization * 100.0,
            spec.target_utilization * 100.0
        ),
        Reason::ScaleUpPending { since_ms } => format!(
            "{} recommended for {} of the stabilization ({}) before scaling up ({load})",
            n(decision.recommended),
            seconds(current.now_ms - since_ms),
            spec.stabilization
        ),
        Reason::ScaleDownPending { since_ms } => format!(
            "{} recommended for {} of the scale-down interval ({}) before scaling down \
             ({load})",
            n(decision.recommended),
            seconds(current.now_ms - since_ms),
            spec.scale_down_interval
        ),
        Reason::IneffectiveScaleUp { from, to, gain } => format!(
            "{} recommended, but the scale-up from {} to {} raised the processing rate by \
             only {:.0}% of what it promised: no further scale-up for this load ({load})",
            n(decision.recommended),
            from,
            to,
            gain * 100.0
        ),
        Reason::ScaleUp => format!(
            "scaling up from {} to {} ({load})",
            n(p),
            n(decision.target.unwrap_or(decision.recommended))
        ),
        Reason::ScaleDown => format!(
            "scaling down from {} to {}, the most a whole scale-down interval ({}) needed \
             ({load})",
            n(p),
            n(decision.target.unwrap_or(decision.recommended)),
            spec.scale_down_interval
        ),
        Reason::AtBound => format!(
            "keeping {}: the bounds (minParallelism {}, at most {} by maxParallelism, key \
             groups and {} source partitions) hold it ({load})",
            n(p),
            spec.min_parallelism,
            max_useful(spec, current),
            current.partitions
        ),
    }
}

/// When the run of recommendations matching `keep` that ends now began.
fn streak_start(recent: &[Recommendation], keep: impl Fn(&Recommendation) -> bool) -> i64 {
    let mut since = recent.last().map_or(0, |r| r.at_ms);
    for r in recent.iter().rev() {
        if !keep(r) {
            break;
        }
        since = r.at_ms;
    }
    since
}

/// The window's rates and the capacity they imply. The arrival rate and the lag's growth
/// are medians over the window's sample intervals, so a burst shorter than half the window
/// moves neither; the capacity comes from the mean read rate and busy ratio.
fn inputs(samples: &[&Sample], spec: &AutoscalerSpec, current: &Current) -> Inputs {
    let n = samples.len() as f64;
    let read_rate = samples.iter().map(|s| s.records_per_second).sum::<f64>() / n;
    let busy = samples.iter().map(|s| s.busy.clamp(0.0, 1.0)).sum::<f64>() / n;
    let mut growth = Vec::new();
    let mut arrival = Vec::new();
    for w in samples.windows(2) {
        let dt_s = (w[1].at_ms - w[0].at_ms) as f64 / 1000.0;
        if dt_s > 0.0 {
            let g = (w[1].lag - w[0].lag) / dt_s;
            growth.push(g);
            arrival.push((w[1].records_per_second + g).max(0.0));
        }
    }
    let lag_growth = median(&mut growth);
    let arrival_rate = median(&mut arrival);
    let lag = samples[samples.len() - 1].lag.max(0.0);
    let p = f64::from(current.parallelism.max(1));
    let worker_capacity = read_rate / p / busy.max(MIN_BUSY);
    let catch_up_s = spec.catch_up_duration.std().as_secs_f64().max(1.0);
    let downtime_s = current
        .last_rescale
        .map_or(0.0, |r| r.downtime_ms.max(0) as f64 / 1000.0);
    let target_utilization = spec.target_utilization.clamp(0.05, 1.0);
    // Steady state at the target utilization; or, flat out, keeping up while the lag and
    // what piles up during the rescale are read within the catch-up duration.
    let required_capacity = (arrival_rate / target_utilization)
        .max(arrival_rate + (lag + arrival_rate * downtime_s) / catch_up_s);
    // The busiest worker's: key groups rarely divide evenly.
    let g = f64::from(current.key_groups.max(1));
    let even_workers = g / (g / p).ceil();
    let projected_utilization = if worker_capacity > 0.0 {
        arrival_rate / (worker_capacity * even_workers)
    } else {
        busy
    };
    Inputs {
        arrival_rate,
        read_rate,
        lag_growth,
        lag,
        busy,
        worker_capacity,
        required_capacity,
        projected_utilization,
    }
}

/// The lower median (0 for none): a value that more than half of the samples reach;
/// sorts `values`.
fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// The parallelism the inputs call for, before the step bounds.
fn recommend(inputs: &Inputs, spec: &AutoscalerSpec, current: &Current) -> u32 {
    let p = current.parallelism.max(1);
    let target = spec.target_utilization.clamp(0.05, 1.0);
    let behind = inputs.lag_growth > 0.0 && inputs.lag > 0.0;
    let catch_up_s = spec.catch_up_duration.std().as_secs_f64().max(1.0);
    // The lag the spare capacity cannot read within the catch-up duration.
    let spare = (inputs.worker_capacity * f64::from(p) - inputs.arrival_rate).max(0.0);
    let catching_up = inputs.lag / catch_up_s > spare;
    // Close enough to the target, and the lag under control: hold.
    let u = inputs.projected_utilization;
    if !behind && u <= target + SCALE_UP_BAND && u >= target - SCALE_DOWN_BAND && !catching_up {
        return p;
    }
    if inputs.worker_capacity <= 0.0 {
        // Nothing read: no rate to scale on. An idle job goes to its minimum.
        return if inputs.lag > 0.0 {
            p
        } else {
            spec.min_parallelism
        };
    }
    let units = inputs.required_capacity / inputs.worker_capacity;
    aligned(units, current.key_groups, 1, current.key_groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed() {
        let all = [
            Reason::Disabled,
            Reason::Warming { until_ms: 0 },
            Reason::Steady,
            Reason::ScaleUpPending { since_ms: 0 },
            Reason::ScaleDownPending { since_ms: 0 },
            Reason::IneffectiveScaleUp {
                from: 1,
                to: 2,
                gain: 0.0,
            },
            Reason::ScaleUp,
            Reason::ScaleDown,
            Reason::AtBound,
        ];
        let names: Vec<&str> = all.iter().map(Reason::name).collect();
        assert_eq!(names, REASONS);
    }

    #[test]
    fn alignment_takes_the_fewest_workers_whose_busiest_keeps_up() {
        // 128 key groups: 3 workers carry 43/43/42 (capacity of 128/43 ≈ 2.98 even ones).
        assert_eq!(aligned(2.5, 128, 1, 64), 3);
        assert_eq!(aligned(3.0, 128, 1, 64), 4);
        // 10 key groups: 4 workers hold 3/3/2/2 (the load of 3.33 even ones); 5 hold 2 each.
        assert_eq!(aligned(3.3, 10, 1, 10), 4);
        assert_eq!(aligned(3.4, 10, 1, 10), 5);
        // 6 and 7 workers on 10 key groups both leave a worker with 2: 5 is as good.
        assert_eq!(aligned(4.9, 10, 1, 10), 5);
        assert_eq!(aligned(5.1, 10, 1, 10), 10);
        // Never above the bound.
        assert_eq!(aligned(100.0, 128, 1, 8), 8);
        assert_eq!(aligned(0.1, 128, 2, 8), 2);
    }
}
