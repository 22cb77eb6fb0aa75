//! What `rivulet get` and `rivulet describe` print: the columns of `kubectl get sj` (the
//! CRD's printer columns) and the sections of `kubectl describe sj`, from the job store.

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rivulet_api::job::StreamJob;

use crate::jobs::EventRecord;

/// How long ago `t` was, as kubectl prints ages (`45s`, `3m12s`, `2h5m`, `3d`).
pub fn age(t: &Time, now_ms: i64) -> String {
    let secs = ((now_ms - t.0.as_millisecond()) / 1000).max(0);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d", s / 86_400),
    }
}

/// `kubectl get sj`: the CRD's printer columns (NAME PHASE DESIRED AUTOSCALED CURRENT LAG
/// LAST SAVEPOINT AGE).
pub fn table(jobs: &[StreamJob], now_ms: i64) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        "NAME",
        "PHASE",
        "DESIRED",
        "AUTOSCALED",
        "CURRENT",
        "LAG",
        "LAST SAVEPOINT",
        "AGE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for j in jobs {
        let s = j.status.clone().unwrap_or_default();
        rows.push(vec![
            j.job_name().to_string(),
            s.phase.map(|p| p.name().to_string()).unwrap_or_default(),
            j.spec.parallelism.to_string(),
            s.autoscaler
                .as_ref()
                .and_then(|a| a.parallelism)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            s.parallelism.to_string(),
            s.metrics.map(|m| m.lag.to_string()).unwrap_or_default(),
            s.last_savepoint.map(|sp| sp.path).unwrap_or_default(),
            j.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| age(t, now_ms))
                .unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

/// `kubectl describe sj NAME`.
pub fn describe(job: &StreamJob, events: &[EventRecord], now_ms: i64) -> String {
    let s = job.status.clone().unwrap_or_default();
    let spec = &job.spec;
    let mut o = String::new();
    let _ = writeln!(o, "Name:           {}", job.job_name());
    let _ = writeln!(o, "Namespace:      {}", job.job_namespace());
    let _ = writeln!(
        o,
        "Generation:     {} (observed {})",
        job.metadata.generation.unwrap_or(1),
        s.observed_generation.map_or("-".into(), |g| g.to_string())
    );
    if let Some(t) = &job.metadata.deletion_timestamp {
        let _ = writeln!(o, "Deleting since: {} ({} ago)", t.0, age(t, now_ms));
    }
    let _ = writeln!(o, "Spec:");
    let _ = writeln!(
        o,
        "  Parallelism:      {} (max {})",
        spec.parallelism, spec.max_parallelism
    );
    let _ = writeln!(o, "  Job State:        {}", serde_plain(&spec.job_state));
    let _ = writeln!(o, "  Upgrade Mode:     {}", serde_plain(&spec.upgrade_mode));
    let _ = writeln!(o, "  State Storage:    {}", spec.state.storage);
    let a = &spec.autoscaler;
    if a.enabled {
        let _ = writeln!(
            o,
            "  Autoscaler:       on ({}..{} workers, target {:.0}% busy, window {}, \
             stabilization {}, scale-down interval {})",
            a.min_parallelism,
            a.max_parallelism
                .map_or_else(|| spec.max_parallelism.to_string(), |m| m.to_string()),
            a.target_utilization * 100.0,
            a.metrics_window,
            a.stabilization,
            a.scale_down_interval
        );
    } else {
        let _ = writeln!(o, "  Autoscaler:       off");
    }
    let _ = writeln!(o, "Status:");
    let _ = writeln!(
        o,
        "  Phase:            {}",
        s.phase.map(|p| p.name()).unwrap_or("<none>")
    );
    let _ = writeln!(o, "  Parallelism:      {}", s.parallelism);
    if let Some(d) = &s.deployment {
        let _ = writeln!(
            o,
            "  Deployment:       {} (generation {}, {} worker{}, {}, started {} ago{})",
            d.id,
            d.generation,
            d.parallelism,
            if d.parallelism == 1 { "" } else { "s" },
            match (&d.restore_from, d.empty_state) {
                (_, true) => "no state".to_string(),
                (Some(p), _) => format!("restored {p}"),
                (None, _) => "own newest checkpoint".to_string(),
            },
            age(&d.started_at, now_ms),
            match &d.ready_at {
                Some(t) => format!(", ready {} ago", age(t, now_ms)),
                None => ", not ready yet".into(),
            }
        );
    }
    match &s.operation {
        Some(op) => {
            let _ = writeln!(
                o,
                "  Operation:        {}: {} (for {}, this step {}){}",
                op.kind.name(),
                op.step.name(),
                age(&op.started_at, now_ms),
                age(&op.step_started_at, now_ms),
                op.message
                    .as_ref()
                    .map(|m| format!(" — {m}"))
                    .unwrap_or_default()
            );
            if let Some(id) = op.savepoint_id {
                let _ = writeln!(o, "    Savepoint:      {id}");
            }
            if let Some(r) = &op.restore_from {
                let _ = writeln!(o, "    Restore From:   {r}");
            }
        }
        None => {
            let _ = writeln!(o, "  Operation:        <none>");
        }
    }
    if let Some(m) = &s.metrics {
        let _ = writeln!(
            o,
            "  Lag:              {} records ({:.0} records/s in, backpressure {:.0}%)",
            m.lag,
            m.records_per_second,
            m.backpressure * 100.0
        );
    }
    if let Some(w) = s.metrics.as_ref().and_then(|m| m.watermark.as_ref()) {
        let _ = writeln!(
            o,
            "  Watermark:        {} ({:.1}s behind)",
            w.0,
            ((now_ms - w.0.as_millisecond()) as f64 / 1000.0).max(0.0)
        );
    }
    if let Some(a) = &s.autoscaler {
        describe_autoscaler(&mut o, a, now_ms);
    }
    if let Some(c) = &s.last_checkpoint {
        let _ = writeln!(
            o,
            "  Last Checkpoint:  #{} ({} bytes, {} ms, {:.0}s ago)",
            c.id,
            c.size_bytes,
            c.duration_ms,
            ((now_ms - c.time_ms) as f64 / 1000.0).max(0.0)
        );
    }
    if let Some(p) = &s.stable_savepoint {
        let _ = writeln!(o, "  Stable Savepoint: {p}");
    }
    if let Some(e) = &s.error {
        let _ = writeln!(o, "  Error:            {e}");
    }
    let _ = writeln!(o, "  Conditions:");
    let _ = writeln!(
        o,
        "    Type         Status  Reason            Age    Message"
    );
    for c in &s.conditions {
        let _ = writeln!(
            o,
            "    {:<12} {:<7} {:<17} {:<6} {}",
            c.type_,
            c.status,
            c.reason,
            age(&c.last_transition_time, now_ms),
            c.message
        );
    }
    let _ = writeln!(o, "  Savepoints:");
    if s.savepoints.is_empty() {
        let _ = writeln!(o, "    <none>");
    }
    for sp in &s.savepoints {
        let _ = writeln!(
            o,
            "    #{:<5} {:<10} {:>10} bytes  {} ago  {}",
            sp.id,
            serde_plain(&sp.trigger),
            sp.size_bytes,
            age(&sp.time, now_ms),
            sp.path
        );
    }
    let _ = writeln!(o, "Events:");
    if events.is_empty() {
        let _ = writeln!(o, "  <none>");
    } else {
        let _ = writeln!(o, "  Type     Reason                 Age     Message");
        for e in events.iter().rev().take(20).rev() {
            let _ = writeln!(
                o,
                "  {:<8} {:<22} {:<7} {}",
                e.type_,
                e.reason,
                age(&e.time, now_ms),
                e.message
            );
        }
    }
    o
}

/// The autoscaler's part of `describe`: its parallelism, the last decision with its reason
/// and inputs, the last rescale, and any conflict.
fn describe_autoscaler(o: &mut String, a: &rivulet_api::job_status::AutoscalerStatus, now_ms: i64) {
    let _ = writeln!(o, "  Autoscaler:");
    let _ = writeln!(
        o,
        "    Parallelism:    {}",
        a.parallelism.map_or_else(
            || "the spec's (none set yet)".to_string(),
            |p| p.to_string()
        )
    );
    if let Some(d) = &a.last_decision {
        let ago = d.time.as_ref().map_or("-".into(), |t| age(t, now_ms));
        let _ = writeln!(
            o,
            "    Decision:       {} ({ago} ago): recommends {} at {}{}",
            d.reason,
            d.recommended,
            d.parallelism,
            d.target
                .map(|t| format!(", rescaling to {t}"))
                .unwrap_or_default()
        );
        let _ = writeln!(o, "                    {}", d.message);
    }
    if let Some(r) = &a.pending_rescale {
        let _ = writeln!(
            o,
            "    Rescaling:      {} → {} ({}, asked {:.0}s ago)",
            r.from,
            r.to,
            r.reason,
            ((now_ms - r.requested_ms) as f64 / 1000.0).max(0.0)
        );
    }
    if let Some(r) = &a.last_rescale {
        let _ = writeln!(
            o,
            "    Last Rescale:   {} → {} ({}, {:.0}s ago, {:.1}s without processing); {} in all",
            r.from,
            r.to,
            r.reason,
            ((now_ms - r.completed_ms.unwrap_or(r.requested_ms)) as f64 / 1000.0).max(0.0),
            r.downtime_ms.unwrap_or(0) as f64 / 1000.0,
            a.rescales
        );
    }
    if let Some(c) = &a.conflict {
        let _ = writeln!(o, "    Conflict:       {c}");
    }
}

/// A unit enum value as its serialized name (`last-state`, `suspended`).
fn serde_plain<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
