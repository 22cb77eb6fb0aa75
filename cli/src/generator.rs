//! Built-in data generators for demos: they fill a source topic at a steady rate.
//!
//! `clicks`: JSON page views `{"user","page","amount","ts"}` from a few hundred users with a
//! skewed popularity, event times up to 1.5 s out of order, about 1 in 200 to `/health`
//! (filtered by the example job) and 1 in 400 malformed (dead-lettered).
//!
//! `payments`: JSON card payments `{"card","merchant","country","amount","ts"}` from a few
//! thousand cards, a few of them (the "suspicious" ones) paying far more often; event times
//! up to 3 s out of order, 1 in 100 up to a minute late, 1 in 500 malformed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use rand::Rng;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// A running generator.
pub struct Generator {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Generator {
    /// Starts generator `kind` writing `rate` records/s to `topic`.
    pub fn start(kind: &str, bootstrap: &str, topic: &str, rate: u32) -> Result<Generator> {
        let event: fn(&mut rand::rngs::ThreadRng, i64) -> String = match kind {
            "clicks" => click,
            "payments" => payment,
            _ => bail!("unknown generator {kind:?} (available: clicks, payments)"),
        };
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "20")
            .create()?;
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let (s, p, topic) = (stop.clone(), produced.clone(), topic.to_string());
        let handle = std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || produce(producer, &topic, rate.max(1), event, &s, &p))?;
        Ok(Generator {
            stop,
            produced,
            handle: Some(handle),
        })
    }

    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One click event as JSON text.
pub fn click(rng: &mut impl Rng, now: i64) -> String {
    if rng.random_ratio(1, 400) {
        return "{\"user\": \"broken".to_string();
    }
    // Skewed users: squaring a uniform draw favours low ids.
    let u: f64 = rng.random();
    let user = (u * u * 300.0) as u32;
    let page = if rng.random_ratio(1, 200) {
        "/health".to_string()
    } else {
        format!("/product/{}", rng.random_range(0..40))
    };
    let amount = f64::from(rng.random_range(0..5000u32)) / 100.0;
    let ts = now - rng.random_range(0..1500);
    format!("{{\"user\":\"user-{user}\",\"page\":\"{page}\",\"amount\":{amount},\"ts\":{ts}}}")
}

/// One card payment as JSON text.
pub fn payment(rng: &mut impl Rng, now: i64) -> String {
    if rng.random_ratio(1, 500) {
        return "{\"card\": 4111".to_string();
    }
    // One payment in twenty comes from one of ten cards that pay far too often.
    let card = if rng.random_ratio(1, 20) {
        rng.random_range(0..10u32)
    } else {
        rng.random_range(10..5000u32)
    };
    let merchant = rng.random_range(0..200u32);
    let country = ["DE", "FR", "NL", "US", "BR", "JP"][rng.random_range(0..6usize)];
    let amount = f64::from(rng.random_range(100..50_000u32)) / 100.0;
    let late = if rng.random_ratio(1, 100) {
        rng.random_range(0..60_000)
    } else {
        rng.random_range(0..3000)
    };
    let ts = now - late;
    format!(
        "{{\"card\":\"card-{card}\",\"merchant\":\"m-{merchant}\",\"country\":\"{country}\",\
         \"amount\":{amount},\"ts\":{ts}}}"
    )
}

fn produce(
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    rate: u32,
    event: fn(&mut rand::rngs::ThreadRng, i64) -> String,
    stop: &AtomicBool,
    produced: &AtomicU64,
) {
    let mut rng = rand::rng();
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        if sent >= due {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let now = now_ms();
        while sent < due {
            let value = event(&mut rng, now);
            let key = value.split('"').nth(3).unwrap_or_default().to_string();
            let rec = BaseRecord::<String, String>::to(topic)
                .key(&key)
                .payload(&value);
            if let Err((e, _)) = producer.send(rec) {
                tracing::warn!(error = %e, "generator send failed");
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            sent += 1;
            produced.store(sent, Ordering::Relaxed);
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_are_mostly_valid_json_with_the_fields() {
        let mut rng = rand::rng();
        let mut valid = 0;
        for _ in 0..1000 {
            let c = click(&mut rng, 1_700_000_000_000);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&c) {
                assert!(v["user"].is_string() && v["page"].is_string());
                assert!(v["amount"].is_number() && v["ts"].as_i64().unwrap() <= 1_700_000_000_000);
                valid += 1;
            }
        }
        assert!(valid > 950, "{valid}");
    }

    #[test]
    fn payments_are_mostly_valid_json_with_the_fields() {
        let mut rng = rand::rng();
        let mut valid = 0;
        for _ in 0..1000 {
            let p = payment(&mut rng, 1_700_000_000_000);
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&p) {
                assert!(v["card"].is_string() && v["merchant"].is_string());
                assert!(v["country"].is_string() && v["amount"].is_number());
                let ts = v["ts"].as_i64().unwrap();
                assert!((1_700_000_000_000 - 60_000..=1_700_000_000_000).contains(&ts));
                valid += 1;
            }
        }
        assert!(valid > 980, "{valid}");
    }
}
