//! The autoscaler inside the planner, against a simulated job whose workers each process a
//! fixed number of records per second: decisions become the planner's ordinary rescale
//! (stop-with-savepoint, restore), every decision is in status and the events, the rescale's
//! downtime is measured, a `spec.parallelism` changed from outside is a conflict and not a
//! rescale, and turning the autoscaler off hands the parallelism back to the spec.

mod world;

use rivulet_api::job::AutoscalerSpec;
use rivulet_api::job_status::{AutoscalerStatus, OperationKind};
use rivulet_api::Duration;
use rivulet_control::Action;
use world::{job, Load, World};

const CAPACITY: f64 = 1_000.0;

fn settings() -> AutoscalerSpec {
    AutoscalerSpec {
        enabled: true,
        metrics_window: Duration::from_secs(20),
        stabilization: Duration::from_secs(20),
        scale_down_interval: Duration::from_secs(60),
        catch_up_duration: Duration::from_secs(60),
        ..AutoscalerSpec::default()
    }
}

/// A running job with the autoscaler on, reading `rate` records per second until `step_ms`
/// after the start, then `then` per second.
fn world(rate: f64, then: impl Fn(i64) -> f64 + 'static) -> World {
    let mut j = job();
    j.spec.autoscaler = settings();
    let mut w = World::new(j);
    let start = w.now_ms;
    w.load = Some(Load {
        arrival: Box::new(move |t| if t - start < 0 { rate } else { then(t - start) }),
        capacity: CAPACITY,
        partitions: 4,
        lag: 0.0,
        rate: 0.0,
        busy: 0.0,
    });
    w.run_until(20, World::running);
    w
}

fn autoscaler(w: &World) -> AutoscalerStatus {
    w.status().autoscaler.expect("status.autoscaler")
}

fn events(w: &World, from: usize, reason: &str) -> Vec<String> {
    w.plans[from..]
        .iter()
        .flat_map(|p| p.events.iter())
        .filter(|e| e.reason == reason)
        .map(|e| e.message.clone())
        .collect()
}

fn deployed_parallelisms(w: &World) -> Vec<u32> {
    w.log
        .iter()
        .filter_map(|a| match a {
            Action::Deploy(d) => Some(d.parallelism),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step_up_is_carried_out_by_the_ordinary_rescale_and_a_step_down_after_the_interval() {
    // 500 records/s for 60 s, then 1800 for 4 minutes, then 500 again.
    let mut w = world(500.0, |t| match t {
        t if t < 60_000 => 500.0,
        t if t < 300_000 => 1_800.0,
        _ => 500.0,
    });
    let start = w.now_ms;
    // Steady at 1 worker: warming, then steady; no rescale.
    for _ in 0..60 {
        w.step();
    }
    let a = autoscaler(&w);
    let d = a.last_decision.clone().expect("a decision");
    assert_eq!(d.reason, "Steady", "{d:?}");
    assert_eq!(d.recommended, 1);
    assert!((d.arrival_rate - 500.0).abs() < 50.0, "{d:?}");
    assert!(!events(&w, 0, "AutoscalerWarming").is_empty());
    assert_eq!(deployed_parallelisms(&w), vec![1]);

    // The step up: a rescale to 3 (1800 / 0.7 needs 2.6 workers of 1000) within 2 minutes.
    let from = w.plans.len();
    w.run_until(120, |w| {
        w.status()
            .operation
            .is_some_and(|o| o.kind == OperationKind::Rescale)
    });
    let decided_after = w.now_ms - start - 60_000;
    assert!(
        decided_after <= 60_000,
        "decided {decided_after} ms after the step"
    );
    let up = events(&w, from, "AutoscalerScaleUp");
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].contains("from 1 worker to 3 workers"), "{up:?}");
    assert!(!events(&w, from, "AutoscalerScaleUpPending").is_empty());
    w.run_until(30, World::running);
    let a = autoscaler(&w);
    assert_eq!(a.parallelism, Some(3));
    assert_eq!(a.rescales, 1);
    let r = a.last_rescale.clone().expect("the rescale recorded");
    assert_eq!((r.from, r.to, r.reason.as_str()), (1, 3, "ScaleUp"));
    assert!(r.downtime_ms.is_some_and(|d| d > 0), "{r:?}");
    assert!(r.capacity_before > 900.0, "{r:?}");
    assert_eq!(events(&w, from, "AutoscalerRescaled").len(), 1);
    // Carried out as any rescale: stop with a savepoint, then restore it.
    assert!(w.log.contains(&Action::RequestSavepoint { stop: true }));
    assert_eq!(deployed_parallelisms(&w), vec![1, 3]);
    assert_eq!(w.job.spec.parallelism, 1, "the spec is the user's");
    assert_eq!(w.status().parallelism, 3);

    // The lag drains, and nothing else happens while the load holds.
    for _ in 0..150 {
        w.step();
    }
    assert!(w.load.as_ref().unwrap().lag < 100.0);
    assert_eq!(deployed_parallelisms(&w), vec![1, 3]);

    // The step down: once a whole interval needed fewer workers, by at most the
    // maxScaleDownFactor (2: from 3 to 2), and after another interval to 1.
    let down_from = w.plans.len();
    let dropped = w.now_ms;
    w.run_until(200, |w| deployed_parallelisms(w).len() == 3);
    w.run_until(30, World::running);
    let waited = w.now_ms - dropped;
    assert!(waited >= 60_000, "scaled down {waited} ms after the drop");
    assert_eq!(deployed_parallelisms(&w), vec![1, 3, 2]);
    let second = w.now_ms;
    w.run_until(200, |w| deployed_parallelisms(w).len() == 4);
    w.run_until(30, World::running);
    assert!(
        w.now_ms - second >= 60_000,
        "one interval between scale-downs"
    );
    assert_eq!(deployed_parallelisms(&w), vec![1, 3, 2, 1]);
    assert_eq!(events(&w, down_from, "AutoscalerScaleDown").len(), 2);
    assert!(!events(&w, down_from, "AutoscalerScaleDownPending").is_empty());
    assert_eq!(autoscaler(&w).rescales, 3);
    for _ in 0..200 {
        w.step();
    }
    assert_eq!(deployed_parallelisms(&w), vec![1, 3, 2, 1], "no flapping");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    // The memory in status stays bounded.
    let a = autoscaler(&w);
    assert!(a.samples.len() <= 14, "{}", a.samples.len());
    assert!(a.recommendations.len() <= 8, "{:?}", a.recommendations);
}

fn scaled_up_world() -> World {
    let mut w = world(2_500.0, |_| 2_500.0);
    w.run_until(200, |w| w.status().parallelism > 1 && w.running());
    w
}

#[test]
fn a_parallelism_set_from_outside_is_a_conflict_and_not_a_rescale() {
    let mut w = scaled_up_world();
    let p = w.status().parallelism;
    let deploys = deployed_parallelisms(&w).len();
    let from = w.plans.len();
    // An HPA (or `kubectl scale`) sets the spec's parallelism.
    w.apply(|s| s.parallelism = 2);
    for _ in 0..60 {
        w.step();
    }
    assert_eq!(deployed_parallelisms(&w).len(), deploys, "not fought over");
    assert_eq!(w.status().parallelism, p);
    let a = autoscaler(&w);
    let conflict = a.conflict.clone().expect("a conflict reported");
    assert!(
        conflict.contains("spec.parallelism was set to 2"),
        "{conflict}"
    );
    assert_eq!(
        events(&w, from, "ParallelismConflict").len(),
        1,
        "reported once, not in a loop"
    );
    // Set back, the conflict is gone.
    w.apply(|s| s.parallelism = 1);
    w.step();
    assert_eq!(autoscaler(&w).conflict, None);
    // Parallelism 0 suspends even with the autoscaler on.
    w.apply(|s| s.parallelism = 0);
    w.run_until(30, |w| {
        w.phase() == Some(rivulet_api::job_status::Phase::Suspended)
    });
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn turning_the_autoscaler_off_hands_the_parallelism_back_to_the_spec() {
    let mut w = scaled_up_world();
    let from = w.plans.len();
    w.apply(|s| s.autoscaler.enabled = false);
    w.run_until(30, |w| w.running() && w.status().parallelism == 1);
    assert_eq!(w.status().autoscaler, None);
    assert_eq!(events(&w, from, "AutoscalerDisabled").len(), 1);
    assert_eq!(*deployed_parallelisms(&w).last().unwrap(), 1);
    // With it off, spec.parallelism (the scale subresource) drives the job.
    w.apply(|s| s.parallelism = 2);
    w.run_until(30, |w| w.running() && w.status().parallelism == 2);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_control_plane_restarted_mid_rescale_completes_and_measures_it() {
    let mut w = world(2_500.0, |_| 2_500.0);
    w.run_until(200, |w| {
        w.status()
            .operation
            .is_some_and(|o| o.kind == OperationKind::Rescale)
    });
    // The status is all a restarted control plane has: plans that die before acting, then
    // a fresh one carrying on from the status.
    w.step_with(false);
    w.step_with(false);
    w.run_until(60, World::running);
    let a = autoscaler(&w);
    assert_eq!(a.rescales, 1, "{a:?}");
    assert!(a.pending_rescale.is_none());
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}
