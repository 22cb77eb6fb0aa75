//! The Nexmark queries as `StreamJob` manifests (`bench/queries/*.yaml`, compiled in), and
//! the variants the runner measures (query × state backend × delivery guarantee).
//!
//! q1 (currency conversion) uses a projection expression (`expr: price * 0.908`). The
//! manifests name the source topic `nexmark`; the runner sets the sink and dead-letter
//! topics, the state section and the guarantee per variant.

use anyhow::{bail, Context};
use rivulet_api::spec::{DeliveryGuarantee, StateBackendKind};
use rivulet_api::StreamJob;

/// One query: its name and manifest text.
pub struct Query {
    pub name: &'static str,
    pub description: &'static str,
    pub yaml: &'static str,
}

pub const QUERIES: &[Query] = &[
    Query {
        name: "q0",
        description: "pass-through (all events)",
        yaml: include_str!("../queries/q0.yaml"),
    },
    Query {
        name: "q1",
        description: "currency conversion: bids projected with `price * 0.908`",
        yaml: include_str!("../queries/q1.yaml"),
    },
    Query {
        name: "q2",
        description: "filter bids on 5 auctions, project (auction, price)",
        yaml: include_str!("../queries/q2.yaml"),
    },
    Query {
        name: "q5",
        description: "bids per auction, sliding event-time window 10 s / 2 s",
        yaml: include_str!("../queries/q5.yaml"),
    },
    Query {
        name: "q7",
        description: "max bid price, tumbling event-time window 10 s (constant key `all`)",
        yaml: include_str!("../queries/q7.yaml"),
    },
    Query {
        name: "tumble",
        description: "the Flink comparison: bids per auction, tumbling event-time window 10 s, count and max(price)",
        yaml: include_str!("../queries/tumble.yaml"),
    },
    Query {
        name: "q12",
        description: "bids per bidder, tumbling processing-time window 10 s",
        yaml: include_str!("../queries/q12.yaml"),
    },
];

pub fn query(name: &str) -> anyhow::Result<&'static Query> {
    QUERIES
        .iter()
        .find(|q| q.name == name)
        .with_context(|| format!("unknown query {name:?}"))
}

/// One measured configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub query: &'static str,
    pub backend: StateBackendKind,
    pub guarantee: DeliveryGuarantee,
}

impl Variant {
    /// `q5-heap-eo`: also used for the job name and its topics.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-{}",
            self.query,
            backend_name(self.backend),
            guarantee_short(self.guarantee)
        )
    }

    /// Parses `q5-heap-eo` / `q5-rocksdb-alo`.
    pub fn parse(s: &str) -> anyhow::Result<Variant> {
        let parts: Vec<&str> = s.split('-').collect();
        let [q, b, g] = parts[..] else {
            bail!("expected QUERY-BACKEND-GUARANTEE like q5-heap-eo, got {s:?}");
        };
        let query = query(q)?.name;
        let backend = match b {
            "heap" => StateBackendKind::Heap,
            "rocksdb" => StateBackendKind::Rocksdb,
            _ => bail!("backend must be heap or rocksdb, got {b:?}"),
        };
        let guarantee = match g {
            "eo" => DeliveryGuarantee::ExactlyOnce,
            "alo" => DeliveryGuarantee::AtLeastOnce,
            _ => bail!("guarantee must be eo or alo, got {g:?}"),
        };
        Ok(Variant {
            query,
            backend,
            guarantee,
        })
    }

    /// The query's manifest set up for this variant: job name, sink and dead-letter topics
    /// `<id>-out` / `<id>-dlq`, the backend, the guarantee, checkpoints every
    /// `checkpoint_ms` to `storage`.
    pub fn manifest(
        &self,
        source_topic: &str,
        checkpoint_ms: u64,
        storage: &str,
    ) -> anyhow::Result<StreamJob> {
        let q = query(self.query)?;
        let mut m = rivulet_api::validate::load_manifest(q.yaml)
            .map_err(|e| anyhow::anyhow!("{}: {e}", q.name))?;
        let id = self.id();
        m.metadata.name = Some(format!("nexmark-{id}"));
        let p = &mut m.spec.pipeline;
        p.source.topics = vec![source_topic.to_string()];
        p.sink.topic = format!("{id}-out");
        p.sink.delivery_guarantee = self.guarantee;
        p.dead_letter.topic = Some(format!("{id}-dlq"));
        m.spec.state.backend = self.backend;
        m.spec.state.checkpoint_interval =
            rivulet_api::duration::Duration::from_millis(checkpoint_ms);
        m.spec.state.storage = storage.to_string();
        let errors = rivulet_api::validate::validate(&m);
        if !errors.is_empty() {
            bail!("{id}: invalid manifest: {errors:?}");
        }
        Ok(m)
    }
}

pub fn backend_name(b: StateBackendKind) -> &'static str {
    match b {
        StateBackendKind::Heap => "heap",
        StateBackendKind::Rocksdb => "rocksdb",
    }
}

pub fn guarantee_short(g: DeliveryGuarantee) -> &'static str {
    match g {
        DeliveryGuarantee::ExactlyOnce => "eo",
        DeliveryGuarantee::AtLeastOnce => "alo",
    }
}

pub fn guarantee_name(g: DeliveryGuarantee) -> &'static str {
    match g {
        DeliveryGuarantee::ExactlyOnce => "exactly-once",
        DeliveryGuarantee::AtLeastOnce => "at-least-once",
    }
}

/// The default set, in run order.
pub const DEFAULT_VARIANTS: &[&str] = &[
    "q0-heap-eo",
    "q1-heap-eo",
    "q2-heap-eo",
    "q5-heap-eo",
    "q5-heap-alo",
    "q5-rocksdb-eo",
    "q7-heap-eo",
    "q12-heap-alo",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_manifest_is_valid() {
        for q in QUERIES {
            let m = rivulet_api::validate::load_manifest(q.yaml)
                .unwrap_or_else(|e| panic!("{}: {e}", q.name));
            let errors = rivulet_api::validate::validate(&m);
            assert!(errors.is_empty(), "{}: {errors:?}", q.name);
        }
    }

    #[test]
    fn q1_converts_the_price_of_bids() {
        let m = rivulet_api::validate::load_manifest(query("q1").unwrap().yaml).unwrap();
        let p = &m.spec.pipeline;
        assert!(p.window.is_none());
        assert_eq!(p.filter.len(), 1);
        let price = p.project.iter().find(|p| p.name == "price").unwrap();
        assert_eq!(price.expr.as_deref(), Some("price * 0.908"));
        assert_eq!(price.field, None);
    }

    #[test]
    fn every_default_variant_builds_a_valid_manifest() {
        for v in DEFAULT_VARIANTS {
            let variant = Variant::parse(v).unwrap();
            assert_eq!(variant.id(), *v);
            let m = variant
                .manifest("nexmark", 1000, "file:///tmp/rivulet-bench/snapshots")
                .unwrap();
            assert_eq!(m.spec.pipeline.sink.topic, format!("{v}-out"));
        }
        assert!(Variant::parse("q3-heap-eo").is_err());
    }
}
