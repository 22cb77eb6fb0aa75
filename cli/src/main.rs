//! `rivulet`: run a StreamJob on this machine, validate manifests, manage the local broker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use rivulet_cli::local::{LocalJob, LocalOptions};
use rivulet_cli::{broker, console, generator};

#[derive(Parser)]
#[command(
    name = "rivulet",
    version,
    about = "Rivulet: Flink-style streaming jobs from Kafka to Kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a StreamJob on this machine (starts a local broker when the job names none).
    Run {
        /// StreamJob manifest.
        job: PathBuf,
        /// Feed the source topic with a built-in generator (`clicks`).
        #[arg(long)]
        generator: Option<String>,
        /// Generator rate, records per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Kafka bootstrap servers (overrides the manifest).
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Where the local broker, logs and worker data live.
        #[arg(long, default_value = ".rivulet")]
        work_dir: PathBuf,
        /// Stop by itself after this long (e.g. `30s`), as if Ctrl-C had been pressed.
        #[arg(long, value_parser = humantime_duration)]
        duration: Option<Duration>,
    },
    /// Validate a StreamJob manifest.
    Validate { job: PathBuf },
    /// Print the StreamJob CustomResourceDefinition (what `crds/streamjob.yaml` holds).
    Crd,
    /// Manage the local broker.
    Broker {
        #[command(subcommand)]
        action: BrokerCmd,
        #[arg(long, default_value = ".rivulet", global = true)]
        work_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum BrokerCmd {
    /// Stop the local broker `rivulet run` left running.
    Stop,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    rivulet_api::Duration::parse(s).map(|d| d.std())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIVULET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            job,
            generator,
            rate,
            bootstrap_servers,
            work_dir,
            duration,
        } => run(job, generator, rate, bootstrap_servers, work_dir, duration),
        Cmd::Validate { job } => rivulet_api::validate::load_manifest_file(&job)
            .map(|_| println!("{}: valid", job.display()))
            .map_err(Into::into),
        Cmd::Crd => rivulet_api::job::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(Into::into),
        Cmd::Broker {
            action: BrokerCmd::Stop,
            work_dir,
        } => broker::stop_local_broker(&work_dir).map(|info| match info {
            Some(i) => println!("stopped the local broker at {}", i.bootstrap()),
            None => println!("no local broker is running"),
        }),
    };
    if let Err(e) = result {
        eprintln!("rivulet: {e:#}");
        let code = if e.downcast_ref::<rivulet_api::LoadError>().is_some() {
            2
        } else {
            1
        };
        std::process::exit(code);
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn run(
    job: PathBuf,
    generator_kind: Option<String>,
    rate: u32,
    bootstrap: Option<String>,
    work_dir: PathBuf,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    let manifest = rivulet_api::validate::load_manifest_file(&job)?;
    let p = &manifest.spec.pipeline;
    let name = manifest.job_name().to_string();
    if manifest.spec.parallelism == 0
        || manifest.spec.job_state == rivulet_api::job::JobState::Suspended
    {
        anyhow::bail!(
            "{name} is suspended (spec.parallelism 0 or spec.jobState suspended): no worker to run"
        );
    }
    let bootstrap = match bootstrap.or_else(|| p.source.bootstrap_servers.clone()) {
        Some(b) => b,
        None => {
            let (info, new) = broker::ensure_local_broker(&work_dir)?;
            if new {
                println!(
                    "started a local broker at {} (pid {})",
                    info.bootstrap(),
                    info.pid
                );
            } else {
                println!(
                    "using the local broker at {} from an earlier run",
                    info.bootstrap()
                );
            }
            let mut topics: Vec<(String, i32)> =
                p.source.topics.iter().map(|t| (t.clone(), 2)).collect();
            topics.push((p.sink.topic.clone(), 1));
            let dlq = p
                .dead_letter
                .topic
                .clone()
                .unwrap_or_else(|| format!("{name}-dlq"));
            topics.push((dlq, 1));
            broker::ensure_topics(&info.bootstrap(), &topics)?;
            info.bootstrap()
        }
    };
    let gen = match &generator_kind {
        Some(kind) => {
            let topic = p
                .source
                .topics
                .first()
                .context("spec.pipeline.source.topics is empty")?;
            println!("generating {kind} into {topic} at {rate}/s");
            Some(generator::Generator::start(kind, &bootstrap, topic, rate)?)
        }
        None => None,
    };
    let opts = LocalOptions {
        manifest_path: job.clone(),
        manifest: manifest.clone(),
        bootstrap: bootstrap.clone(),
        work_dir: work_dir.clone(),
    };
    let mut local = LocalJob::start(&opts)?;
    println!(
        "running {name} ({} worker{}); results from topic {} below. Ctrl-C stops (the next run resumes).",
        local.workers.len(),
        if local.workers.len() == 1 { "" } else { "s" },
        p.sink.topic
    );

    let bar = console::progress_bar();
    let stop_printer = Arc::new(AtomicBool::new(false));
    let printed = Arc::new(AtomicU64::new(0));
    let printer = console::print_results(
        &bootstrap,
        &p.sink.topic,
        bar.clone(),
        stop_printer.clone(),
        printed.clone(),
    )?;

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let i = interrupted.clone();
        ctrlc::set_handler(move || i.store(true, Ordering::Relaxed))
            .context("installing the Ctrl-C handler")?;
    }
    let started = Instant::now();
    let mut announced = false;
    let http0 = local.workers[0].http.clone();
    let mut last_checkpoint = None;
    while !interrupted.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        for event in local.supervise() {
            console::say(&bar, event);
            announced = false;
        }
        if let Some(s) = console::fetch_status(&http0) {
            if !announced && s.phase == "running" {
                match s.restored_from {
                    Some(id) => console::say(&bar, format!("resumed from checkpoint #{id}")),
                    None => console::say(&bar, "no checkpoint yet: starting from the beginning"),
                }
                announced = true;
            }
            if let Some(c) = &s.last_checkpoint {
                last_checkpoint = Some(c.id);
            }
            bar.set_message(console::progress_message(&s, now_ms()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    console::say(&bar, "stopping: each worker takes a final checkpoint…");
    if let Some(g) = gen {
        g.stop();
    }
    let results = local.stop(Duration::from_secs(60));
    for w in &local.workers {
        if let Some(c) = w.final_status().and_then(|s| s.last_checkpoint) {
            last_checkpoint = Some(c.id);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_printer.store(true, Ordering::Relaxed);
    let _ = printer.join();
    bar.finish_and_clear();
    let clean = results.iter().all(|(_, s)| s.is_some_and(|s| s.success()));
    match (clean, last_checkpoint) {
        (true, Some(id)) => println!(
            "stopped cleanly at checkpoint #{id}; {} results shown. Run the same command to resume.",
            printed.load(Ordering::Relaxed)
        ),
        (true, None) => println!("stopped cleanly"),
        (false, _) => println!(
            "a worker did not stop cleanly; see the logs in {}",
            work_dir.join("logs").display()
        ),
    }
    if p.source.bootstrap_servers.is_none() {
        println!("the local broker keeps running for the next run; `rivulet broker stop` stops it");
    }
    Ok(())
}
