//! The events a benchmark run reads, as JSON: Nexmark's mix of persons, auctions and bids
//! ([`crate::nexmark::Generator`]) or the Flink comparison's uniform bids
//! ([`crate::nexmark::UniformBids`]). Event `n` is a pure function of the dataset and `n`,
//! so the in-process run, the Kafka topic and Flink's input file hold the same events.

use crate::nexmark::{Config, Event, Generator, UniformBids};

#[derive(Clone, Debug)]
pub enum Dataset {
    Nexmark(Generator),
    UniformBids(UniformBids),
}

impl Dataset {
    pub fn nexmark(config: Config) -> Dataset {
        Dataset::Nexmark(Generator::new(config))
    }

    /// Event `n` as one JSON object.
    pub fn json(&self, n: u64) -> String {
        match self {
            Dataset::Nexmark(g) => g.event(n).to_json(),
            Dataset::UniformBids(b) => Event::Bid(b.bid(n)).to_json(),
        }
    }

    /// One line for the results file.
    pub fn describe(&self) -> String {
        match self {
            Dataset::Nexmark(g) => format!(
                "Nexmark events (persons, auctions and bids 1:3:46, seed {})",
                g.config().seed
            ),
            Dataset::UniformBids(b) => format!(
                "bids only, one per millisecond of event time, `auction` uniform over {} ids (seed {})",
                b.auctions, b.seed
            ),
        }
    }
}
