//! `rivulet-bench`: the Nexmark suite through Kafka (`run`), or a Nexmark event filler for
//! any Kafka topic (`fill`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rivulet_bench::nexmark::Config;
use rivulet_bench::queries::{Variant, DEFAULT_VARIANTS};
use rivulet_bench::{report, runner};

#[derive(Parser)]
#[command(name = "rivulet-bench", about = "Nexmark benchmarks for Rivulet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start tansu, fill a topic, measure the raw-consume ceiling and every variant, and
    /// write <out>/<UTC date>.md.
    Run {
        /// Events in the source topic.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        checkpoint_ms: u64,
        /// Variants, QUERY-BACKEND-GUARANTEE (e.g. q5-rocksdb-eo); comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VARIANTS.iter().map(|s| s.to_string()))]
        variants: Vec<String>,
        /// Seconds before one variant is given up.
        #[arg(long, default_value_t = 300)]
        run_timeout: u64,
        /// Ceiling measurements (the best is used).
        #[arg(long, default_value_t = 2)]
        ceiling_runs: u32,
        /// Directory for the results file.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
        out: PathBuf,
    },
    /// Write Nexmark events (JSON, one topic) to an existing Kafka topic, round-robin over
    /// its partitions.
    Fill {
        #[arg(long)]
        bootstrap_servers: String,
        #[arg(long, default_value = "nexmark")]
        topic: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            events,
            partitions,
            seed,
            checkpoint_ms,
            variants,
            run_timeout,
            ceiling_runs,
            out,
        } => {
            let variants = variants
                .iter()
                .map(|v| Variant::parse(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let opts = runner::Options {
                events,
                partitions,
                seed,
                checkpoint_ms,
                variants,
                run_timeout: Duration::from_secs(run_timeout),
                ceiling_runs,
            };
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let outcome = runner::run(&opts, |line| eprintln!("{line}"))?;
            let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
            let text = report::render(&date, &command, &opts, &outcome);
            std::fs::create_dir_all(&out)?;
            let path = out.join(format!("{date}.md"));
            std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
            println!("{text}");
            eprintln!("wrote {}", path.display());
        }
        Command::Fill {
            bootstrap_servers,
            topic,
            events,
            seed,
        } => {
            let partitions = rivulet_tests::topic_partition_count(&bootstrap_servers, &topic)?;
            let config = Config {
                seed,
                ..Config::default()
            };
            let fill = runner::fill_topic(
                &bootstrap_servers,
                &topic,
                partitions as i32,
                &config,
                events,
            )?;
            eprintln!(
                "wrote {} events ({:.1} MB) to {topic} in {:.1} s",
                fill.events,
                fill.bytes as f64 / 1e6,
                fill.seconds
            );
        }
    }
    Ok(())
}
