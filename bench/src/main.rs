//! `rivulet-bench`: the Nexmark suite through Kafka (`run`), the Flink comparison
//! (`flink`), or a Nexmark event filler for any Kafka topic (`fill`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rivulet_bench::dataset::Dataset;
use rivulet_bench::flink::{self, FlinkOptions};
use rivulet_bench::nexmark::{Config, UniformBids};
use rivulet_bench::queries::{Variant, DEFAULT_VARIANTS};
use rivulet_bench::rescale::{self, RescaleOptions, Step};
use rivulet_bench::{report, runner};

/// mimalloc: per-record buffers are small and short-lived (see bench/results for the gain).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rivulet-bench", about = "Nexmark benchmarks for Rivulet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The generated events: how many, over how many partitions, from which seed.
#[derive(clap::Args)]
struct Events {
    /// Events generated.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Events {
    fn config(&self) -> Config {
        Config {
            seed: self.seed,
            ..Config::default()
        }
    }
}

/// The rescale phase (after the throughput runs, before the latency phase).
#[derive(clap::Args)]
struct RescaleArgs {
    /// Rescale phase: the variant stopped with a savepoint and restored at another
    /// parallelism (QUERY-BACKEND-GUARANTEE).
    #[arg(long, default_value = "q5-heap-eo")]
    rescale_variant: String,
    /// Rescale phase: steps FROM:TO (workers before and after), each measured on its own
    /// job; comma-separated.
    #[arg(long, value_delimiter = ',', default_value = rescale::DEFAULT_STEPS, value_parser = rescale::parse_step)]
    rescale_steps: Vec<Step>,
    /// Rescale phase: events per second produced to each step's fresh source topic.
    #[arg(long, default_value_t = 20_000)]
    rescale_rate: u64,
    /// Rescale phase: seconds the job runs before the stop (at least until a checkpoint).
    #[arg(long, default_value_t = 10)]
    rescale_warmup: u64,
    /// Skip the rescale phase.
    #[arg(long)]
    no_rescale: bool,
}

impl RescaleArgs {
    /// `None` with `--no-rescale`.
    fn options(&self) -> anyhow::Result<Option<RescaleOptions>> {
        if self.no_rescale {
            return Ok(None);
        }
        if self.rescale_steps.is_empty() {
            anyhow::bail!("no rescale step given (--no-rescale skips the phase)");
        }
        Ok(Some(RescaleOptions {
            variant: Variant::parse(&self.rescale_variant)?,
            steps: self.rescale_steps.clone(),
            rate: self.rescale_rate,
            warmup_seconds: self.rescale_warmup,
        }))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Start tansu, fill a topic, measure the raw-consume ceiling and every variant at
    /// every parallelism (repeated, with worker 0's checkpoints), then the rescale downtime
    /// of one variant, then each variant's live latency (one worker), and write
    /// <out>/<UTC date>.md.
    Run {
        #[command(flatten)]
        source: Events,
        #[arg(long, default_value_t = 1000)]
        checkpoint_ms: u64,
        /// Variants, QUERY-BACKEND-GUARANTEE (e.g. q5-rocksdb-eo); comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_VARIANTS.iter().map(|s| s.to_string()))]
        variants: Vec<String>,
        /// Workers of one job each variant is measured at (n `rivulet-worker` processes
        /// on loopback, shuffling over TCP); comma-separated, e.g. 1,2.
        #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u32).range(1..))]
        parallelism: Vec<u32>,
        /// Seconds before one run is given up.
        #[arg(long, default_value_t = 300)]
        run_timeout: u64,
        /// Ceiling measurements (the median is used).
        #[arg(long, default_value_t = 3)]
        ceiling_runs: u32,
        /// Throughput runs of each variant at each parallelism (the median is reported,
        /// with min-max and every run).
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// Live latency phase: events per second produced to each variant's fresh topic.
        #[arg(long, default_value_t = 20_000)]
        latency_rate: u64,
        /// Live latency phase: seconds of producing per variant; 0 skips the phase.
        #[arg(long, default_value_t = 10)]
        latency_seconds: u64,
        #[command(flatten)]
        rescale: RescaleArgs,
        /// Skip the in-process measurements.
        #[arg(long)]
        no_in_process: bool,
        /// Directory for the results file.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
        out: PathBuf,
    },
    /// The Flink comparison: bids per auction in tumbling 10 s windows (count, max price)
    /// over uniform bids, on Rivulet in process and through Kafka (tansu) at each
    /// parallelism, and on a local Flink (PyPI apache-flink, Java 17) from a JSON file to
    /// JSON files in the same run; every run checked against the truth counted from the
    /// bids; writes <out>/<UTC date>-flink.md.
    Flink {
        /// Bids generated (one per millisecond of event time).
        #[arg(long, default_value_t = 5_000_000)]
        events: u64,
        /// Auctions the bids are spread over, uniformly.
        #[arg(long, default_value_t = 10_000)]
        auctions: u64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = clap::value_parser!(u32).range(1..))]
        parallelism: Vec<u32>,
        #[arg(long, default_value_t = 1000)]
        checkpoint_ms: u64,
        /// Runs of each engine at each parallelism (medians reported).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Seconds before one run is given up.
        #[arg(long, default_value_t = 600)]
        run_timeout: u64,
        /// The Python that has apache-flink.
        #[arg(long, env = "RIVULET_FLINK_PYTHON", default_value = "python3")]
        python: String,
        /// Rivulet only: skip Flink (when it cannot run on the machine).
        #[arg(long)]
        no_flink: bool,
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
        out: PathBuf,
    },
    /// Only the in-process measurements (no broker), printed; for profiling.
    InProcess {
        #[command(flatten)]
        source: Events,
        /// QUERY-BACKEND (e.g. q5-rocksdb); comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "q5-heap")]
        queries: Vec<String>,
        /// Read the Flink comparison's uniform bids (10,000 auctions) instead of Nexmark's
        /// events (for `tumble-heap`).
        #[arg(long)]
        uniform_bids: bool,
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
            source,
            checkpoint_ms,
            variants,
            parallelism,
            run_timeout,
            ceiling_runs,
            repeat,
            latency_rate,
            latency_seconds,
            rescale,
            no_in_process,
            out,
        } => {
            let variants = variants
                .iter()
                .map(|v| Variant::parse(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Some(v) = variants.iter().find(|v| v.query == "tumble") {
                // Its truth is counted from uniform bids; on mixed Nexmark events the
                // in-process reference and a Kafka run close different windows.
                anyhow::bail!(
                    "{} runs on the Flink comparison's uniform bids: use `rivulet-bench flink` (make bench-flink)",
                    v.id()
                );
            }
            let opts = runner::Options {
                dataset: Dataset::nexmark(source.config()),
                events: source.events,
                partitions: source.partitions,
                seed: source.seed,
                expected_out: None,
                checkpoint_ms,
                variants,
                parallelisms: runner::parallelisms(&parallelism)?,
                run_timeout: Duration::from_secs(run_timeout),
                ceiling_runs,
                repeat,
                in_process: !no_in_process,
                latency_rate,
                latency_seconds,
                rescale: rescale.options()?,
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
        Command::InProcess {
            source,
            queries,
            uniform_bids,
        } => {
            let dataset = if uniform_bids {
                Dataset::UniformBids(UniformBids {
                    seed: source.seed,
                    ..UniformBids::default()
                })
            } else {
                Dataset::nexmark(source.config())
            };
            let records = rivulet_bench::inprocess::generate(
                &dataset,
                source.events,
                "nexmark",
                source.partitions,
            );
            for q in &queries {
                // Any guarantee: in process there is no sink.
                let v = Variant::parse(&format!("{q}-alo"))?;
                let r = rivulet_bench::inprocess::run(
                    rivulet_bench::queries::query(v.query)?,
                    v.backend,
                    &records,
                    source.partitions,
                    &std::env::temp_dir(),
                )?;
                println!(
                    "{q}: {:.0} events/s, {:.0} events/s per core, {} out",
                    r.rate(),
                    r.rate_per_core(),
                    r.records_out
                );
            }
        }
        Command::Flink {
            events,
            auctions,
            partitions,
            seed,
            parallelism,
            checkpoint_ms,
            repeat,
            run_timeout,
            python,
            no_flink,
            out,
        } => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let mut progress = |line: &str| eprintln!("{line}");
            let flink_opts = FlinkOptions {
                python,
                java_home: flink::default_java_home(),
                parallelisms: runner::parallelisms(&parallelism)?,
                checkpoint_ms,
                repeat,
                timeout: Duration::from_secs(run_timeout),
            };
            if !no_flink {
                flink::check_flink(&flink_opts.python)?;
            }
            let bids = UniformBids {
                seed,
                auctions,
                ..UniformBids::default()
            };
            let dataset = Dataset::UniformBids(bids.clone());
            let truth = flink::truth(&bids, events, partitions);
            progress(&format!(
                "truth: {} results in all, {} in the windows the last watermark closes",
                truth.all_windows, truth.closed_windows
            ));
            let opts = runner::Options {
                dataset: dataset.clone(),
                events,
                partitions,
                seed,
                expected_out: Some(truth.closed_windows),
                checkpoint_ms,
                variants: vec![Variant::parse("tumble-heap-eo")?],
                parallelisms: flink_opts.parallelisms.clone(),
                run_timeout: Duration::from_secs(run_timeout),
                ceiling_runs: 3,
                repeat,
                in_process: true,
                latency_rate: 0,
                latency_seconds: 0,
                rescale: None,
            };
            let outcome = runner::run(&opts, &mut progress)?;
            let scratch = tempfile::Builder::new()
                .prefix("rivulet-bench-flink-")
                .tempdir()?;
            let (flink_runs, input_bytes) = if no_flink {
                (Vec::new(), 0)
            } else {
                let input = scratch.path().join("bids.json");
                let bytes = flink::write_input(&dataset, events, &input)?;
                progress(&format!(
                    "wrote {events} bids ({:.1} MB) to {}",
                    bytes as f64 / 1e6,
                    input.display()
                ));
                let runs = flink::run_all(
                    &flink_opts,
                    &input,
                    scratch.path(),
                    events,
                    &truth,
                    &mut progress,
                );
                (runs, bytes)
            };
            let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
            let mut text = report::render_titled(
                &format!("The Flink comparison, {date}"),
                &command,
                &opts,
                &outcome,
            );
            flink::render(
                &mut text,
                events,
                input_bytes,
                &truth,
                &flink_runs,
                &flink_opts,
                &outcome,
            );
            std::fs::create_dir_all(&out)?;
            let path = out.join(format!("{date}-flink.md"));
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
            let dataset = Dataset::nexmark(Config {
                seed,
                ..Config::default()
            });
            let fill = runner::fill_topic(
                &bootstrap_servers,
                &topic,
                partitions as i32,
                &dataset,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rescale_of(args: &[&str]) -> anyhow::Result<Option<RescaleOptions>> {
        let cli = Cli::try_parse_from(["rivulet-bench", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run { rescale, .. } => rescale.options(),
            _ => anyhow::bail!("not run"),
        }
    }

    #[test]
    fn rescale_defaults_to_q5_heap_up_and_down() {
        let r = rescale_of(&[]).unwrap().unwrap();
        assert_eq!(r.variant.id(), "q5-heap-eo");
        assert_eq!(r.steps, [Step { from: 1, to: 2 }, Step { from: 2, to: 1 }]);
        assert_eq!((r.rate, r.warmup_seconds), (20_000, 10));
    }

    #[test]
    fn rescale_options_parse() {
        let r = rescale_of(&[
            "--rescale-variant",
            "q7-rocksdb-alo",
            "--rescale-steps",
            "2:4,4:1",
            "--rescale-rate",
            "500",
            "--rescale-warmup",
            "3",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(r.variant.id(), "q7-rocksdb-alo");
        assert_eq!(r.steps, [Step { from: 2, to: 4 }, Step { from: 4, to: 1 }]);
        assert_eq!((r.rate, r.warmup_seconds), (500, 3));
        assert!(rescale_of(&["--no-rescale"]).unwrap().is_none());
        assert!(rescale_of(&["--rescale-steps", "1:0"]).is_err());
        assert!(rescale_of(&["--rescale-steps", "2"]).is_err());
        assert!(rescale_of(&["--rescale-variant", "q5-nope-eo"]).is_err());
    }
}
