//! Running the operator: the controllers (one watcher per namespace, or one for all), the
//! leader election that lets only one of several replicas act, the metrics server, and a
//! graceful stop on SIGTERM.
//!
//! Only the leader runs controllers. An instance that loses its lease, or fails to renew
//! it, stops its controllers at once (a reconcile in flight finishes its current request)
//! and stands by; the lease (`coordination.k8s.io/v1`, held through server-side apply by
//! `kube-lease-manager`) passes to another once it expires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::runtime::{watcher, Controller};
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use rivulet_api::job::StreamJob;
use tokio::sync::watch;

use crate::controller::{error_policy, reconcile, Context};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// How the operator process runs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub settings: Settings,
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    /// Elect a leader on a Lease (`None`: act alone, e.g. one replica or a test).
    pub election: Option<Election>,
}

/// The Lease the replicas compete for.
#[derive(Clone, Debug)]
pub struct Election {
    pub lease_name: String,
    pub lease_namespace: String,
    /// This instance's name in the Lease (the pod's name).
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_secs: u64,
    /// Seconds before expiry the holder renews it.
    pub grace_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs until `stop` turns true.
pub async fn run(
    client: Client,
    options: RunOptions,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let addr = options.metrics_addr;
    let bound = {
        let mut stop = stop.clone();
        crate::metrics::serve(addr, metrics.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|source| RunError::Metrics { addr, source })?
    };
    tracing::info!(address = %bound, "serving /metrics, /healthz and /readyz");
    let ctx = Arc::new(Context::new(
        client.clone(),
        options.settings.clone(),
        metrics.clone(),
    ));
    metrics.set_ready(true);

    let Some(election) = &options.election else {
        metrics.set_leader(true);
        controllers(&client, &options.namespaces, ctx, stop).await;
        return Ok(());
    };
    lead(&client, &options, election, ctx, &metrics, stop).await;
    Ok(())
}

/// Stands by for the Lease, runs the controllers while holding it, and steps down when it
/// is lost or a renewal fails; returns when `stop` turns true, releasing the Lease.
///
/// A renewal that fails (the API server refused it, or could not be reached) steps down at
/// once: the lease may expire before the next attempt, and another replica may then take
/// it, so acting on would risk two leaders. The election starts afresh after a backoff,
/// and an instance that still holds the Lease leads again at once.
async fn lead(
    client: &Client,
    options: &RunOptions,
    election: &Election,
    ctx: Arc<Context>,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = lease_backoff(election);
    loop {
        let manager = tokio::select! {
            m = lease_manager(client, election) => m,
            _ = stop.wait_for(|s| *s) => return,
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, lease = %election.lease_name, "cannot read the leader lease; retrying");
                if pause(&mut delays, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(identity = %election.identity, "standing by for the leader lease");
        let acquired = tokio::select! {
            r = manager.changed() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        match acquired {
            None => return release(&manager).await,
            Some(Ok(true)) => {}
            Some(Ok(false)) => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "leader election; retrying");
                if pause(&mut delays, &mut stop).await {
                    return;
                }
                continue;
            }
        }
        delays = lease_backoff(election);
        tracing::info!(identity = %election.identity, "leading: running the controllers");
        metrics.set_leader(true);
        // The controllers stop when the lease is lost, a renewal fails, or the process is
        // told to stop.
        let (lost_tx, lost_rx) = watch::channel(false);
        let held = async {
            let outcome = tokio::select! {
                r = holding(&manager) => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            let _ = lost_tx.send(true);
            outcome
        };
        let (_, outcome) = tokio::join!(
            controllers(client, &options.namespaces, ctx.clone(), lost_rx),
            held
        );
        metrics.set_leader(false);
        match outcome {
            None => return release(&manager).await,
            Some(Ok(())) => {
                tracing::warn!(identity = %election.identity, "lost the leader lease: controllers stopped");
            }
            Some(Err(e)) => {
                tracing::warn!(identity = %election.identity, error = %e, "renewing the leader lease failed: controllers stopped");
                if pause(&mut delays, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// A fresh manager of the Lease (it starts as not leading).
async fn lease_manager(
    client: &Client,
    election: &Election,
) -> Result<LeaseManager, kube_lease_manager::LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.lease_namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_secs)
        .with_grace(election.grace_secs)
        // One field manager per replica: the API server's apply conflicts on
        // `holderIdentity` are what keep two replicas from both taking the Lease.
        .with_field_manager(format!(
            "{}-{}",
            crate::settings::FIELD_MANAGER,
            election.identity
        ))
        .build()
        .await
}

/// Renews the Lease until it is lost (`Ok`) or a renewal fails (`Err`).
async fn holding(manager: &LeaseManager) -> Result<(), kube_lease_manager::LeaseManagerError> {
    loop {
        if !manager.changed().await? {
            return Ok(());
        }
    }
}

async fn release(manager: &LeaseManager) {
    match manager.release().await {
        Ok(()) => tracing::info!("leader lease released"),
        Err(e) => tracing::warn!(error = %e, "releasing the leader lease"),
    }
}

/// Delays between election attempts after errors: 1 s doubling to the lease's duration.
fn lease_backoff(election: &Election) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(election.duration_secs.max(1)))
        .without_max_times()
        .build()
}

/// Waits the next delay; true when `stop` turned true meanwhile.
async fn pause(
    delays: &mut impl Iterator<Item = Duration>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let delay = delays.next().unwrap_or(Duration::from_secs(1));
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Runs one controller per namespace (or one for all) until `stop` turns true.
async fn controllers(
    client: &Client,
    namespaces: &[String],
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let scopes: Vec<(Api<StreamJob>, Api<StatefulSet>)> = if namespaces.is_empty() {
        vec![(Api::all(client.clone()), Api::all(client.clone()))]
    } else {
        namespaces
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                )
            })
            .collect()
    };
    let runs = scopes.into_iter().map(|(jobs, sets)| {
        let mut stop = stop.clone();
        let ctx = ctx.clone();
        Controller::new(jobs, watcher::Config::default())
            .owns(
                sets,
                watcher::Config::default().labels("app.kubernetes.io/managed-by=rivulet-operator"),
            )
            .graceful_shutdown_on(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                match result {
                    Ok((job, _)) => tracing::debug!(job = %job, "reconciled"),
                    Err(e) => tracing::debug!(error = %e, "controller"),
                }
            })
    });
    futures::future::join_all(runs).await;
}
