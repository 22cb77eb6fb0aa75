//! What `rivulet run` shows: window results as they are committed, and a live progress line
//! from the workers' `/status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use serde_json::Value;

pub use rivulet_api::status::WorkerStatus;

fn clock(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// One result line: `[12:00:00–12:00:10) user=user-1  clicks=3 revenue=12.5 pages=2`.
pub fn format_result(value: &[u8]) -> String {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(value) else {
        return String::from_utf8_lossy(value).into_owned();
    };
    let mut line = String::new();
    if let (Some(s), Some(e)) = (
        v.get("windowStart").and_then(Value::as_i64),
        v.get("windowEnd").and_then(Value::as_i64),
    ) {
        line.push_str(&format!("[{}–{}) ", clock(s), clock(e)));
    }
    if let Some(Value::Object(k)) = v.get("key") {
        for (name, val) in k {
            line.push_str(&format!("{name}={} ", plain(val)));
        }
    }
    line.push(' ');
    for (name, val) in &v {
        if matches!(name.as_str(), "key" | "windowStart" | "windowEnd" | "kind") {
            continue;
        }
        line.push_str(&format!("{name}={} ", plain(val)));
    }
    if v.get("kind").and_then(Value::as_str) == Some("update") {
        line.push_str("(late update)");
    }
    line.trim_end().to_string()
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Prints committed results of `topic` above the progress line until `stop`.
pub fn print_results(
    bootstrap: &str,
    topic: &str,
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    printed: Arc<AtomicU64>,
) -> Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rivulet-console")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::End)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                if let Some(v) = m.payload() {
                    say(&bar, format_result(v));
                    printed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }))
}

/// Prints a line above the progress bar, or plainly when there is no terminal to draw on.
pub fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

/// The progress line's style.
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The progress message for a status.
pub fn progress_message(s: &WorkerStatus, now_ms: i64) -> String {
    let wm = s
        .watermark_ms
        .map(|w| format!("{} ({:.1}s behind)", clock(w), (now_ms - w) as f64 / 1000.0))
        .unwrap_or_else(|| "–".into());
    let cp = s
        .last_checkpoint
        .as_ref()
        .map(|c| {
            format!(
                "#{} {:.0}s ago, {} ms, {} KiB",
                c.id,
                ((now_ms - c.time_ms) as f64 / 1000.0).max(0.0),
                c.duration_ms,
                c.size_bytes / 1024
            )
        })
        .unwrap_or_else(|| "none yet".into());
    format!(
        "{} · in {} · out {} · filtered {} · late {} · malformed {} · lag {} · watermark {} · checkpoint {}",
        s.phase,
        s.records_in,
        s.records_out,
        s.records_filtered,
        s.records_late,
        s.records_malformed + s.records_keyless,
        s.lag,
        wm,
        cp
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines() {
        let v = br#"{"key":{"user":"u1"},"windowStart":0,"windowEnd":10000,"clicks":3,"revenue":12.5,"kind":"final"}"#;
        assert_eq!(
            format_result(v),
            "[00:00:00–00:00:10) user=u1  clicks=3 revenue=12.50"
        );
        let u = br#"{"key":{"user":"u1"},"windowStart":0,"windowEnd":10000,"clicks":4,"kind":"update"}"#;
        assert!(format_result(u).ends_with("(late update)"));
    }
}
