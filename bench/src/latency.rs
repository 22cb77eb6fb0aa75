//! Live end-to-end latency through Kafka: the pieces the runner's latency phase uses.
//!
//! - [`produce_live`]: Nexmark events written at a fixed rate for a fixed time, paced by the
//!   wall clock, with event times following the wall clock (`base_time_ms` = now at start,
//!   `first_event_rate` = the rate), so event-time windows close in real time. Records carry
//!   the producer's CreateTime, which the worker takes as the trigger time of an output.
//!   [`produce_until`] is the same until a flag is set (the rescale phase's live source).
//! - [`Histogram`]: the worker's `rivulet_end_to_end_latency_seconds` read back from the
//!   Prometheus text of `/metrics`, and its quantiles by linear interpolation within a
//!   bucket, as Prometheus' `histogram_quantile` does.
//!
//! The worker observes, per output record, the time it was sent (at-least-once) or its
//! transaction committed (exactly-once) minus the triggering input record's Kafka timestamp.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::producer::Producer;
use rivulet_tests::{KafkaProducer, ProduceRecord};
use rivulet_worker::runtime::now_ms;

use crate::nexmark::{Config, Generator};

/// The worker's latency histogram, as exposed on `/metrics`.
pub const LATENCY_METRIC: &str = "rivulet_end_to_end_latency_seconds";

/// How often the live producer sends the events due by then.
pub const PACE: Duration = Duration::from_millis(10);

/// What [`produce_live`] wrote.
#[derive(Clone, Debug)]
pub struct Produced {
    pub events: u64,
    /// From the first send until every event was acknowledged.
    pub seconds: f64,
}

impl Produced {
    /// The achieved produce rate.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Writes `rate × seconds` events to `topic`, round-robin over `partitions`, unkeyed: every
/// [`PACE`] the events due by then (event `n` is due `n / rate` seconds after the start).
/// Event times start at the wall clock and advance at `rate` events per second, so they
/// follow the wall clock while the pacing keeps up. Waits until all are acknowledged.
pub fn produce_live(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    seed: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Produced> {
    let never = AtomicBool::new(false);
    produce_until(
        bootstrap,
        topic,
        partitions,
        seed,
        rate,
        rate.max(1) * seconds,
        &never,
    )
}

/// [`produce_live`] for a phase of unknown length: paced the same way, until `stop` is set
/// or `max_events` were sent; waits until everything sent is acknowledged.
pub fn produce_until(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    seed: u64,
    rate: u64,
    max_events: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Produced> {
    let producer = KafkaProducer::idempotent(bootstrap)?;
    // Connect before the clock starts: records sent while the producer still looks up the
    // broker and its producer id would wait for that, with their CreateTime already set
    // (over a second on tansu; it showed as latency of the first outputs).
    producer
        .inner()
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {topic}"))?;
    let rate = rate.max(1);
    let partitions = partitions.max(1) as u64;
    let generator = Generator::new(Config {
        seed,
        base_time_ms: now_ms(),
        first_event_rate: rate,
        ..Config::default()
    });
    let start = Instant::now();
    let mut next = 0u64;
    let mut batch = Vec::new();
    while next < max_events && !stop.load(Ordering::Relaxed) {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(max_events);
        batch.clear();
        for n in next..due {
            let value = generator.event(n).to_json();
            batch.push(ProduceRecord::new(value).with_partition((n % partitions) as i32));
        }
        producer.send(topic, &batch)?;
        next = due.max(next);
        if next < max_events {
            std::thread::sleep(PACE);
        }
    }
    producer.flush()?;
    if producer.delivered() != next {
        bail!(
            "only {} of {next} events acknowledged",
            producer.delivered()
        );
    }
    Ok(Produced {
        events: next,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A Prometheus histogram: cumulative counts by upper bound, ascending, `+Inf` last.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The histogram `name` in Prometheus/OpenMetrics text (its `<name>_bucket{le="…"}`
    /// lines; any other labels are ignored, so there should be one series). `None` if the
    /// text has no bucket of it, or a bucket line does not parse.
    pub fn parse(text: &str, name: &str) -> Option<Histogram> {
        let prefix = format!("{name}_bucket{{");
        let mut buckets = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix(&prefix) else {
                continue;
            };
            let (labels, value) = rest.split_once('}')?;
            let le = labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("le="))?
                .trim_matches('"');
            let le = match le {
                "+Inf" | "Inf" | "inf" => f64::INFINITY,
                _ => le.parse().ok()?,
            };
            // The value may be followed by a timestamp or an exemplar.
            let count: f64 = value.split_whitespace().next()?.parse().ok()?;
            buckets.push((le, count));
        }
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(Histogram { buckets })
    }

    /// Observations: the `+Inf` bucket's count (or the largest bucket's, if it is missing).
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1.max(0.0) as u64)
    }

    /// The `q` quantile (0..=1), like `histogram_quantile`: find the first bucket whose
    /// cumulative count reaches `q × count` and interpolate linearly between its lower bound
    /// (the previous bucket's upper bound, 0 for the first) and its upper bound. A rank in
    /// the `+Inf` bucket gives the largest finite bound. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let finite: Vec<(f64, f64)> = self
            .buckets
            .iter()
            .copied()
            .filter(|b| b.0.is_finite())
            .collect();
        let Some(i) = finite.iter().position(|b| b.1 >= rank) else {
            return finite.last().map(|b| b.0);
        };
        let (upper, cumulative) = finite[i];
        let (lower, below) = if i == 0 {
            (0.0_f64.min(upper), 0.0)
        } else {
            finite[i - 1]
        };
        let in_bucket = cumulative - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP rivulet_end_to_end_latency_seconds From a triggering input record's Kafka timestamp to its output becoming visible.
# TYPE rivulet_end_to_end_latency_seconds histogram
rivulet_end_to_end_latency_seconds_sum 1.5
rivulet_end_to_end_latency_seconds_count 100
rivulet_end_to_end_latency_seconds_bucket{le=\"0.001\"} 0
rivulet_end_to_end_latency_seconds_bucket{le=\"0.002\"} 10
rivulet_end_to_end_latency_seconds_bucket{le=\"0.004\"} 60
rivulet_end_to_end_latency_seconds_bucket{le=\"0.008\"} 98
rivulet_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 100
# TYPE rivulet_checkpoint_duration_seconds histogram
rivulet_checkpoint_duration_seconds_bucket{le=\"0.005\"} 7
rivulet_checkpoint_duration_seconds_bucket{le=\"+Inf\"} 7
# EOF
";

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn parses_the_named_histogram_only() {
        let h = Histogram::parse(TEXT, LATENCY_METRIC).unwrap();
        assert_eq!(h.buckets.len(), 5);
        assert_eq!(h.buckets[4], (f64::INFINITY, 100.0));
        assert_eq!(h.count(), 100);
        let c = Histogram::parse(TEXT, "rivulet_checkpoint_duration_seconds").unwrap();
        assert_eq!(c.count(), 7);
        assert!(Histogram::parse(TEXT, "rivulet_nothing").is_none());
        assert!(Histogram::parse("x_bucket{le=\"zz\"} 1", "x").is_none());
    }

    #[test]
    fn interpolates_within_the_bucket() {
        let h = Histogram::parse(TEXT, LATENCY_METRIC).unwrap();
        // Rank 50: bucket (0.002, 0.004] holds ranks 10..60, so 40/50 of the way.
        assert!(close(h.quantile(0.5), 0.002 + 0.002 * 40.0 / 50.0));
        // Rank 5: the first non-empty bucket, (0.001, 0.002].
        assert!(close(h.quantile(0.05), 0.001 + 0.001 * 5.0 / 10.0));
        // Rank 98: exactly the top of (0.004, 0.008].
        assert!(close(h.quantile(0.98), 0.008));
    }

    #[test]
    fn the_first_bucket_starts_at_zero() {
        let h = Histogram {
            buckets: vec![(0.001, 4.0), (0.002, 4.0), (f64::INFINITY, 4.0)],
        };
        assert!(close(h.quantile(0.5), 0.0005));
    }

    #[test]
    fn a_rank_in_the_inf_bucket_gives_the_largest_finite_bound() {
        let h = Histogram::parse(TEXT, LATENCY_METRIC).unwrap();
        assert!(close(h.quantile(0.99), 0.008));
        let all_inf = Histogram {
            buckets: vec![(0.001, 0.0), (0.002, 0.0), (f64::INFINITY, 3.0)],
        };
        assert!(close(all_inf.quantile(0.5), 0.002));
    }

    #[test]
    fn an_empty_histogram_has_no_quantiles() {
        let empty = "\
rivulet_end_to_end_latency_seconds_sum 0.0
rivulet_end_to_end_latency_seconds_count 0
rivulet_end_to_end_latency_seconds_bucket{le=\"0.001\"} 0
rivulet_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 0
";
        let h = Histogram::parse(empty, LATENCY_METRIC).unwrap();
        assert_eq!(h.count(), 0);
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.quantile(0.99), None);
    }
}
