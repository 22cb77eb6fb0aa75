//! The `rivulet-operator` binary: runs the controller (`run`), prints the CRD (`crd`) and
//! renders a StreamJob's objects without a cluster (`render`), and checks an operator's
//! health (`probe`, for `helm test`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rivulet_operator::run::{Election, RunOptions};
use rivulet_operator::settings::{default_worker_image, NetworkPolicySettings, Settings};

#[derive(Parser)]
#[command(
    name = "rivulet-operator",
    version,
    about = "Runs Rivulet StreamJobs on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args, Clone)]
struct SettingsArgs {
    /// Worker image of jobs whose spec names none.
    #[arg(long, env = "RIVULET_WORKER_IMAGE", default_value_t = default_worker_image())]
    worker_image: String,
    /// The cluster's DNS domain (the workers' peer addresses end in it).
    #[arg(long, env = "RIVULET_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Give each job a NetworkPolicy: its shuffle port open only to its own workers, its
    /// HTTP port (control API, /metrics) only to the operator and --scrape-namespaces.
    #[arg(long, env = "RIVULET_NETWORK_POLICY")]
    network_policy: bool,
    /// The operator's namespace (the NetworkPolicies let its pods in).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    operator_namespace: String,
    /// The operator's pod labels, `key=value`, comma-separated (the NetworkPolicies let
    /// these pods in).
    #[arg(
        long,
        env = "RIVULET_OPERATOR_LABELS",
        value_delimiter = ',',
        value_parser = label,
        default_value = "app.kubernetes.io/name=rivulet,app.kubernetes.io/component=operator"
    )]
    operator_labels: Vec<(String, String)>,
    /// Namespaces whose pods may scrape the workers' /metrics through the NetworkPolicies
    /// (Prometheus'), comma-separated.
    #[arg(long, env = "RIVULET_SCRAPE_NAMESPACES", value_delimiter = ',')]
    scrape_namespaces: Vec<String>,
}

/// A `key=value` label.
fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

impl SettingsArgs {
    fn settings(&self) -> Settings {
        Settings {
            worker_image: self.worker_image.clone(),
            cluster_domain: self.cluster_domain.clone(),
            network_policy: self.network_policy.then(|| NetworkPolicySettings {
                operator_namespace: self.operator_namespace.clone(),
                operator_labels: self.operator_labels.iter().cloned().collect(),
                scrape_namespaces: self.scrape_namespaces.clone(),
            }),
            ..Settings::default()
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the operator: reconcile StreamJobs in the cluster it runs in (or the one the
    /// kubeconfig names).
    Run {
        /// Namespaces to watch, comma-separated or repeated; all when absent.
        #[arg(long = "namespace", env = "RIVULET_NAMESPACES", value_delimiter = ',')]
        namespaces: Vec<String>,
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "RIVULET_METRICS_ADDR", default_value = "0.0.0.0:9090")]
        metrics_addr: std::net::SocketAddr,
        /// Run without leader election (only when exactly one replica runs).
        #[arg(long)]
        no_leader_election: bool,
        /// The Lease the replicas compete for.
        #[arg(long, env = "RIVULET_LEASE_NAME", default_value = "rivulet-operator")]
        lease_name: String,
        /// Namespace of the Lease (the operator's own).
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// This replica's name in the Lease.
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Log as JSON lines (the default in a cluster) or as text.
        #[arg(long, env = "RIVULET_LOG_FORMAT", default_value = "json")]
        log_format: LogFormat,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Print the StreamJob CustomResourceDefinition (YAML).
    Crd,
    /// Print every object the operator would apply for a StreamJob at its current spec,
    /// without a cluster.
    Render {
        /// The StreamJob manifest.
        file: PathBuf,
        /// Namespace of a manifest that names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Check an operator's health: GET the URL (its /readyz or /healthz), succeed on a 2xx
    /// answer. The chart's `helm test` runs it.
    Probe {
        /// For example http://rivulet-metrics.rivulet-system.svc:9090/readyz
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIVULET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run {
            namespaces,
            metrics_addr,
            no_leader_election,
            lease_name,
            lease_namespace,
            identity,
            log_format,
            settings,
        } => {
            init_logging(log_format);
            let identity =
                identity.unwrap_or_else(|| format!("rivulet-operator-{}", std::process::id()));
            let options = RunOptions {
                settings: settings.settings(),
                namespaces,
                metrics_addr,
                election: (!no_leader_election).then_some(Election {
                    lease_name,
                    lease_namespace,
                    identity,
                    duration_secs: 15,
                    grace_secs: 5,
                }),
            };
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let client = kube::Client::try_default()
                    .await
                    .context("connecting to the Kubernetes API (in-cluster or the kubeconfig)")?;
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let mut term = match tokio::signal::unix::signal(
                        tokio::signal::unix::SignalKind::terminate(),
                    ) {
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
                    tracing::info!("stopping: finishing the reconciles in flight");
                    let _ = stop_tx.send(true);
                });
                let metrics = std::sync::Arc::new(rivulet_operator::metrics::Metrics::new());
                rivulet_operator::run::run(client, options, metrics, stop_rx).await?;
                tracing::info!("stopped");
                anyhow::Ok(())
            })?;
        }
        Cmd::Crd => {
            print!(
                "{}",
                rivulet_api::job::crd_yaml().context("rendering the CRD")?
            );
        }
        Cmd::Render {
            file,
            namespace,
            settings,
        } => {
            let mut job = rivulet_api::validate::load_manifest_file(&file)?;
            job.metadata.namespace.get_or_insert(namespace);
            print!(
                "{}",
                rivulet_operator::render::render(&job, &settings.settings())?
            );
        }
        Cmd::Probe { url, timeout } => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let status = rt.block_on(async {
                let http = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(timeout))
                    .build()?;
                anyhow::Ok(http.get(&url).send().await?.status())
            });
            match status {
                Ok(s) if s.is_success() => println!("{url}: {s}"),
                Ok(s) => anyhow::bail!("{url} answered {s}"),
                Err(e) => anyhow::bail!("{url}: {e:#}"),
            }
        }
    }
    Ok(())
}
