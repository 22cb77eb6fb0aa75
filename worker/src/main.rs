//! `rivulet-worker`: runs one worker of a StreamJob.
//!
//! Reads the StreamJob manifest (the file `rivulet run` and the operator write), validates it
//! (a bad manifest exits with status 2, every bad field named, and nothing is consumed),
//! restores the newest valid checkpoint, and processes until SIGTERM or SIGINT, when it takes
//! a final checkpoint and exits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use rivulet_worker::args::WorkerArgs;
use rivulet_worker::runtime::{run_worker, Fault, WorkerOptions};

/// mimalloc: per-record buffers are small and short-lived (see bench/results for the gain).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIVULET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("rivulet-worker: {e:#}");
            let code = if e.downcast_ref::<rivulet_api::LoadError>().is_some() {
                2
            } else {
                1
            };
            std::process::exit(code);
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = WorkerArgs::parse();
    let manifest = rivulet_api::validate::load_manifest_file(&args.job)?;
    if args.validate {
        println!("{}: valid", args.job.display());
        return Ok(());
    }
    let parallelism = args.parallelism.unwrap_or(manifest.spec.parallelism);
    anyhow::ensure!(
        args.index < parallelism,
        "--index {} is not below the parallelism {parallelism}",
        args.index
    );
    let peers = match &args.peers {
        Some(p) => rivulet_worker::peers::expand(p, parallelism)
            .with_context(|| format!("--peers {p:?}"))?,
        None => Vec::new(),
    };
    anyhow::ensure!(
        parallelism == 1 || !peers.is_empty(),
        "parallelism {parallelism}: the workers need each other's shuffle addresses \
         (--peers or RIVULET_PEERS)"
    );
    let data_dir = args.data_dir.unwrap_or_else(|| {
        PathBuf::from(".rivulet")
            .join("data")
            .join(manifest.job_namespace())
            .join(manifest.job_name())
            .join(args.index.to_string())
    });
    let fault = match std::env::var("RIVULET_FAULT") {
        Ok(s) if !s.is_empty() => Some(
            Fault::parse(&s)
                .with_context(|| format!("RIVULET_FAULT={s:?} is not a known fault"))?,
        ),
        _ => None,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    {
        let shutdown = shutdown.clone();
        rt.spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutdown requested");
            shutdown.store(true, Ordering::Relaxed);
        });
    }
    let opts = WorkerOptions {
        manifest,
        index: args.index,
        parallelism,
        peers,
        shuffle_listen: args.shuffle_listen,
        data_dir,
        bootstrap: args.bootstrap_servers,
        http: args.http,
        control_token: args.control_token.filter(|t| !t.is_empty()),
        restore: args
            .restore
            .as_deref()
            .map(rivulet_api::launch::Restore::parse),
        deployment: args.deployment,
        fault,
    };
    run_worker(opts, shutdown, &rt)?;
    Ok(())
}
