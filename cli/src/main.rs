//! `rivulet`: run StreamJobs on this machine through the lifecycle planner, and manage them
//! the way `kubectl` manages them on a cluster (apply, get, describe, scale, savepoint,
//! suspend, resume, restart, delete).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use rivulet_api::job::{JobState, StreamJob};
use rivulet_api::job_status::Phase;
use rivulet_cli::jobs::{Applied, Jobs};
use rivulet_cli::local::{now_ms, LocalRuntime};
use rivulet_cli::reconcile::{reconcile, FaultPoint};
use rivulet_cli::{broker, console, generator, view};

#[derive(Parser)]
#[command(
    name = "rivulet",
    version,
    about = "Rivulet: Flink-style streaming jobs from Kafka to Kafka"
)]
struct Cli {
    /// Where the local broker, the job store, logs and worker data live.
    #[arg(
        long,
        default_value = ".rivulet",
        global = true,
        env = "RIVULET_WORK_DIR"
    )]
    work_dir: PathBuf,
    /// The namespace of the job a command names.
    #[arg(short, long, default_value = "default", global = true)]
    namespace: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a StreamJob on this machine: applies the manifest and runs its control plane in
    /// the foreground (starts a local broker when the job names none). Ctrl-C stops the job
    /// with a savepoint; running it again resumes from that savepoint.
    Run {
        /// StreamJob manifest.
        job: PathBuf,
        /// Feed the source topic with a built-in generator (`clicks` or `payments`).
        #[arg(long)]
        generator: Option<String>,
        /// Generator rate, records per second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Kafka bootstrap servers for workers whose manifest names none.
        #[arg(long)]
        bootstrap_servers: Option<String>,
        /// Stop by itself after this long (e.g. `30s`), as if Ctrl-C had been pressed.
        #[arg(long, value_parser = humantime_duration)]
        duration: Option<Duration>,
        /// Do not print the job's results.
        #[arg(long)]
        quiet: bool,
    },
    /// Create or change a job from a manifest (`kubectl apply`); a running job is changed
    /// under its upgradeMode.
    Apply {
        /// StreamJob manifest.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// List jobs, or show one (`-o yaml|json` for the whole object).
    Get {
        name: Option<String>,
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Show a job's spec, status, operation, savepoints, conditions and events.
    Describe { name: String },
    /// Change a job's parallelism (a rescale; 0 suspends).
    Scale {
        name: String,
        #[arg(long, visible_alias = "replicas")]
        parallelism: u32,
    },
    /// Take a savepoint of a running job.
    Savepoint { name: String },
    /// Stop a job with a savepoint and keep its state.
    Suspend { name: String },
    /// Start a suspended job again from its state.
    Resume { name: String },
    /// Restart a job's workers from their newest checkpoint.
    Restart { name: String },
    /// Delete a job (with a final savepoint when `savepoints.onDeletion` asks for one).
    Delete {
        name: String,
        /// Return at once instead of waiting until the job is gone.
        #[arg(long)]
        no_wait: bool,
    },
    /// Validate a StreamJob manifest.
    Validate { job: PathBuf },
    /// Print the StreamJob CustomResourceDefinition (what `crds/streamjob.yaml` holds).
    Crd,
    /// Manage the local broker.
    Broker {
        #[command(subcommand)]
        action: BrokerCmd,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Yaml,
    Json,
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
    let work = cli.work_dir;
    let ns = cli.namespace;
    let jobs = Jobs::new(&work);
    let now = || rivulet_control::plan::time(now_ms());
    let result = match cli.command {
        Cmd::Run {
            job,
            generator,
            rate,
            bootstrap_servers,
            duration,
            quiet,
        } => run(RunArgs {
            job,
            generator,
            rate,
            bootstrap: bootstrap_servers,
            work_dir: work,
            duration,
            quiet,
        }),
        Cmd::Apply { file } => load(&file).and_then(|job| {
            let name = job.job_name().to_string();
            let namespace = job.job_namespace().to_string();
            let changes = changes(&jobs, &job);
            let applied = jobs.apply(job, now())?;
            println!("streamjob.rivulet.dev/{name} {}{changes}", applied.word());
            hint_no_control_plane(&jobs, &namespace, &name, applied);
            Ok(())
        }),
        Cmd::Get { name, output } => get(&jobs, &ns, name.as_deref(), output),
        Cmd::Describe { name } => jobs
            .require(&ns, &name)
            .and_then(|j| Ok((j, jobs.events(&ns, &name)?)))
            .map(|(j, events)| print!("{}", view::describe(&j, &events, now_ms())))
            .map_err(Into::into),
        Cmd::Scale { name, parallelism } => change(&jobs, &ns, &name, "scaled", |s| {
            s.parallelism = parallelism;
        }),
        Cmd::Savepoint { name } => change(&jobs, &ns, &name, "savepoint requested", |s| {
            s.savepoint_trigger = Some(now_ms().to_string());
        }),
        Cmd::Suspend { name } => change(&jobs, &ns, &name, "suspended", |s| {
            s.job_state = JobState::Suspended;
        }),
        Cmd::Resume { name } => change(&jobs, &ns, &name, "resumed", |s| {
            s.job_state = JobState::Running;
        }),
        Cmd::Restart { name } => change(&jobs, &ns, &name, "restarted", |s| {
            s.restart_trigger = Some(now_ms().to_string());
        }),
        Cmd::Delete { name, no_wait } => delete(&jobs, &work, &ns, &name, no_wait),
        Cmd::Validate { job } => load(&job).map(|_| println!("{}: valid", job.display())),
        Cmd::Crd => rivulet_api::job::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(Into::into),
        Cmd::Broker {
            action: BrokerCmd::Stop,
        } => broker::stop_local_broker(&work).map(|info| match info {
            Some(i) => println!("stopped the local broker at {}", i.bootstrap()),
            None => println!("no local broker is running"),
        }),
    };
    if let Err(e) = result {
        eprintln!("rivulet: {e:#}");
        let invalid = e.downcast_ref::<rivulet_api::LoadError>().is_some()
            || matches!(
                e.downcast_ref::<rivulet_cli::jobs::JobsError>(),
                Some(rivulet_cli::jobs::JobsError::Invalid(_))
            );
        std::process::exit(if invalid { 2 } else { 1 });
    }
}

/// What applying `job` changes in the stored one, as ` (spec.a, spec.b changed)`.
fn changes(jobs: &Jobs, job: &StreamJob) -> String {
    match jobs.get(job.job_namespace(), job.job_name()) {
        Ok(Some(old)) => {
            let fields = rivulet_cli::jobs::spec_changes(&old.spec, &job.spec);
            if fields.is_empty() {
                String::new()
            } else {
                format!(" ({} changed)", fields.join(", "))
            }
        }
        _ => String::new(),
    }
}

/// Reads and validates a manifest, the CEL rules included.
fn load(path: &Path) -> anyhow::Result<StreamJob> {
    let job = rivulet_api::validate::load_manifest_file(path)?;
    rivulet_api::validate::validate_cel(&job, None)?;
    Ok(job)
}

/// An exclusive claim on running a job's control plane: one `rivulet run` per job.
fn claim(
    jobs: &Jobs,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let dir = jobs.dir(ns, name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(".control-plane.lock");
    let f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

fn hint_no_control_plane(jobs: &Jobs, ns: &str, name: &str, applied: Applied) {
    if applied == Applied::Unchanged {
        return;
    }
    if let Ok(Some(_free)) = claim(jobs, ns, name) {
        println!("no `rivulet run` is running this job: the change takes effect when one does");
    }
}

/// A spec change through the job store, as `kubectl scale` or `patch` makes it.
fn change(
    jobs: &Jobs,
    ns: &str,
    name: &str,
    what: &str,
    edit: impl FnOnce(&mut rivulet_api::StreamJobSpec),
) -> anyhow::Result<()> {
    let applied = jobs.edit(ns, name, rivulet_control::plan::time(now_ms()), edit)?;
    match applied {
        Applied::Unchanged => println!("streamjob.rivulet.dev/{name} unchanged"),
        _ => println!("streamjob.rivulet.dev/{name} {what}"),
    }
    hint_no_control_plane(jobs, ns, name, applied);
    Ok(())
}

fn get(jobs: &Jobs, ns: &str, name: Option<&str>, output: Option<Output>) -> anyhow::Result<()> {
    let list = match name {
        Some(n) => vec![jobs.require(ns, n)?],
        None => jobs.list()?,
    };
    match (output, name) {
        (None, _) => {
            if list.is_empty() {
                println!("No resources found");
            } else {
                print!("{}", view::table(&list, now_ms()));
            }
        }
        (Some(Output::Json), Some(_)) => println!("{}", serde_json::to_string_pretty(&list[0])?),
        (Some(Output::Yaml), Some(_)) => print!("{}", serde_yaml::to_string(&list[0])?),
        (Some(Output::Json), None) => println!("{}", serde_json::to_string_pretty(&list)?),
        (Some(Output::Yaml), None) => print!("{}", serde_yaml::to_string(&list)?),
    }
    Ok(())
}

/// Marks a job deleted; unless `no_wait`, waits until it is gone, running its control plane
/// here when no `rivulet run` does.
fn delete(jobs: &Jobs, work: &Path, ns: &str, name: &str, no_wait: bool) -> anyhow::Result<()> {
    let job = jobs.require(ns, name)?;
    let final_savepoint = job.spec.savepoints.on_deletion;
    if jobs.mark_deleting(ns, name, rivulet_control::plan::time(now_ms()))? {
        println!(
            "streamjob.rivulet.dev/{name} deleted{}",
            if final_savepoint {
                " (taking a final savepoint first)"
            } else {
                ""
            }
        );
    }
    if no_wait {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    loop {
        if jobs.get(ns, name)?.is_none() {
            println!("streamjob.rivulet.dev/{name} is gone");
            return Ok(());
        }
        match claim(jobs, ns, name)? {
            // Another `rivulet run` carries it out: wait for it.
            None => std::thread::sleep(Duration::from_millis(300)),
            Some(_lock) => {
                let job = jobs.require(ns, name)?;
                let mut runtime = LocalRuntime::new(&job, &jobs.dir(ns, name), work, None)?;
                let fault = FaultPoint::from_env();
                loop {
                    let r = rt.block_on(reconcile(
                        jobs,
                        &mut runtime,
                        ns,
                        name,
                        now_ms(),
                        fault.as_ref(),
                    ))?;
                    for e in &r.plan.events {
                        println!("{}: {}", e.reason, e.message);
                    }
                    for note in runtime.take_notes() {
                        println!("{note}");
                    }
                    if r.finalized {
                        println!("streamjob.rivulet.dev/{name} is gone");
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(r.plan.requeue_after_ms.min(500)));
                }
            }
        }
    }
}

struct RunArgs {
    job: PathBuf,
    generator: Option<String>,
    rate: u32,
    bootstrap: Option<String>,
    work_dir: PathBuf,
    duration: Option<Duration>,
    quiet: bool,
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let manifest = load(&args.job)?;
    let work_dir = args.work_dir.clone();
    let jobs = Jobs::new(&work_dir);
    let ns = manifest.job_namespace().to_string();
    let name = manifest.job_name().to_string();
    let p = manifest.spec.pipeline.clone();
    let Some(_control_plane) = claim(&jobs, &ns, &name)? else {
        bail!(
            "another `rivulet run` is running {ns}/{name} (its work directory is {})",
            work_dir.display()
        );
    };
    let previous = jobs.get(&ns, &name)?;
    let bootstrap = match (args.bootstrap.clone(), p.source.bootstrap_servers.clone()) {
        (Some(b), _) => Some(b),
        (None, Some(_)) => None,
        (None, None) => {
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
            // Room for a few workers' sinks, each on its own partitions.
            topics.push((p.sink.topic.clone(), 4));
            let dlq = p
                .dead_letter
                .topic
                .clone()
                .unwrap_or_else(|| format!("{name}-dlq"));
            topics.push((dlq, 4));
            broker::ensure_topics(&info.bootstrap(), &topics)?;
            Some(info.bootstrap())
        }
    };
    let kafka = bootstrap
        .clone()
        .or_else(|| p.source.bootstrap_servers.clone())
        .context("no Kafka bootstrap servers")?;
    let changes = changes(&jobs, &manifest);
    let applied = jobs.apply(manifest.clone(), rivulet_control::plan::time(now_ms()))?;
    println!("streamjob.rivulet.dev/{name} {}{changes}", applied.word());
    if let Some(prev) = previous.as_ref().and_then(|j| j.status.as_ref()) {
        if prev.phase == Some(Phase::Suspended) {
            match &prev.last_savepoint {
                Some(sp) => println!(
                    "{name} was stopped with savepoint #{}: it resumes from it",
                    sp.id
                ),
                None => println!("{name} was suspended: it resumes from its newest checkpoint"),
            }
        } else if prev.phase.is_some() {
            println!(
                "{name} was {} when its control plane last ran: carrying on from its status",
                prev.phase.map(|p| p.name()).unwrap_or("")
            );
        }
    }

    let gen = match &args.generator {
        Some(kind) => {
            let topic = p
                .source
                .topics
                .first()
                .context("spec.pipeline.source.topics is empty")?;
            println!("generating {kind} into {topic} at {}/s", args.rate);
            Some(generator::Generator::start(kind, &kafka, topic, args.rate)?)
        }
        None => None,
    };
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        console::progress_bar()
    };
    let stop_printer = Arc::new(AtomicBool::new(false));
    let printed = Arc::new(AtomicU64::new(0));
    let printer = if args.quiet {
        None
    } else {
        println!("results from topic {} below; Ctrl-C stops with a savepoint (the next run resumes from it)", p.sink.topic);
        Some(console::print_results(
            &kafka,
            &p.sink.topic,
            bar.clone(),
            stop_printer.clone(),
            printed.clone(),
        )?)
    };

    let interrupts = Arc::new(AtomicUsize::new(0));
    {
        let i = interrupts.clone();
        ctrlc::set_handler(move || {
            i.fetch_add(1, Ordering::Relaxed);
        })
        .context("installing the Ctrl-C handler")?;
    }
    let job_dir = jobs.dir(&ns, &name);
    let mut runtime = LocalRuntime::new(&manifest, &job_dir, &work_dir, bootstrap)?;
    let fault = FaultPoint::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut stopping = false;
    let mut announced_deployment = None;
    let outcome = loop {
        let interrupted = interrupts.load(Ordering::Relaxed);
        if interrupted >= 2 {
            break Outcome::Abandoned;
        }
        let timed_out = args.duration.is_some_and(|d| started.elapsed() >= d);
        if (interrupted == 1 || timed_out) && !stopping {
            stopping = true;
            console::say(
                &bar,
                "stopping with a savepoint… (Ctrl-C again leaves the workers running)",
            );
            let changed = jobs.edit(&ns, &name, rivulet_control::plan::time(now_ms()), |s| {
                s.job_state = JobState::Suspended;
            });
            if let Err(e) = changed {
                console::say(&bar, format!("could not suspend {name}: {e}"));
                break Outcome::Abandoned;
            }
        }
        let r = match rt.block_on(reconcile(
            &jobs,
            &mut runtime,
            &ns,
            &name,
            now_ms(),
            fault.as_ref(),
        )) {
            Ok(r) => r,
            Err(rivulet_cli::reconcile::ReconcileError::Jobs(
                rivulet_cli::jobs::JobsError::NotFound { .. },
            )) => break Outcome::Deleted,
            Err(e) => {
                console::say(&bar, format!("reconcile failed: {e}; retrying"));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        // What was decided, then what was done.
        for e in &r.plan.events {
            let mark = if e.warning { "warning: " } else { "" };
            console::say(&bar, format!("{mark}{}: {}", e.reason, e.message));
        }
        for note in runtime.take_notes() {
            console::say(&bar, note);
        }
        if r.finalized {
            break Outcome::Deleted;
        }
        let status = r.plan.status.clone();
        let statuses = runtime.worker_statuses();
        if let (Some(d), Some(Phase::Running)) = (&status.deployment, status.phase) {
            if announced_deployment != Some(d.id) && status.operation.is_none() {
                announced_deployment = Some(d.id);
                let restored = statuses.iter().flatten().find_map(|s| s.restored_from);
                console::say(
                    &bar,
                    match restored {
                        Some(id) => format!(
                            "running: {} worker{}, restored from snapshot #{id}",
                            d.parallelism,
                            if d.parallelism == 1 { "" } else { "s" }
                        ),
                        None => format!(
                            "running: {} worker{}, starting from no state",
                            d.parallelism,
                            if d.parallelism == 1 { "" } else { "s" }
                        ),
                    },
                );
            }
        }
        bar.set_message(progress(&r.job, &statuses));
        if stopping && status.phase == Some(Phase::Suspended) && status.operation.is_none() {
            break Outcome::Stopped(status.last_savepoint.clone());
        }
        std::thread::sleep(Duration::from_millis(
            r.plan.requeue_after_ms.clamp(100, 500),
        ));
    };
    if let Some(g) = gen {
        g.stop();
    }
    std::thread::sleep(Duration::from_millis(300));
    stop_printer.store(true, Ordering::Relaxed);
    if let Some(p) = printer {
        let _ = p.join();
    }
    bar.finish_and_clear();
    match outcome {
        Outcome::Stopped(Some(sp)) => println!(
            "stopped with savepoint #{} ({} bytes, {}); {} results shown. Run the same command to resume from it.",
            sp.id,
            sp.size_bytes,
            sp.path,
            printed.load(Ordering::Relaxed)
        ),
        Outcome::Stopped(None) => println!("stopped; run the same command to resume"),
        Outcome::Abandoned => println!(
            "left {name}'s workers running without a control plane; `rivulet run` again takes them over"
        ),
        Outcome::Deleted => println!("streamjob.rivulet.dev/{name} is gone"),
    }
    if p.source.bootstrap_servers.is_none() && args.bootstrap.is_none() {
        println!("the local broker keeps running for the next run; `rivulet broker stop` stops it");
    }
    Ok(())
}

enum Outcome {
    Stopped(Option<rivulet_api::job_status::SavepointRecord>),
    Abandoned,
    Deleted,
}

/// The progress line: phase, the operation and its step, then worker 0's counters.
fn progress(job: &StreamJob, statuses: &[Option<console::WorkerStatus>]) -> String {
    let now = now_ms();
    let s = job.status.clone().unwrap_or_default();
    let phase = s.phase.map(|p| p.name()).unwrap_or("Pending");
    let op = s
        .operation
        .as_ref()
        .map(|op| {
            format!(
                " ({}: {}, {:.0}s)",
                op.kind.name(),
                op.step.name(),
                ((now - op.step_started_at.0.as_millisecond()) as f64 / 1000.0).max(0.0)
            )
        })
        .unwrap_or_default();
    let ready = statuses.iter().filter(|s| s.is_some()).count();
    let workers = format!("{ready}/{} workers", job.spec.parallelism);
    match statuses.iter().flatten().next() {
        Some(w) => format!(
            "{phase}{op} · {workers} · {}",
            console::progress_message(w, now)
        ),
        None => format!("{phase}{op} · {workers}"),
    }
}
