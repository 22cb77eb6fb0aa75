//! Running the operator: the controllers (one watcher per namespace, or one for all), the
//! leader election that lets only one of several replicas act, the metrics server, and a
//! graceful stop on SIGTERM.
//!
//! Only the leader runs controllers. An instance that loses its lease stops its controllers
//! at once (a reconcile in flight finishes its current request) and stands by; the lease
//! (`coordination.k8s.io/v1`, held through server-side apply by `kube-lease-manager`)
//! passes to another once it expires.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use kube::runtime::{watcher, Controller};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
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
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
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
    mut stop: watch::Receiver<bool>,
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
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
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
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    loop {
        tracing::info!(identity = %election.identity, "standing by for the leader lease");
        tokio::select! {
            r = leader.wait_for(|l| *l) => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
        tracing::info!(identity = %election.identity, "leading: running the controllers");
        metrics.set_leader(true);
        // The controllers stop when the lease is lost or the process is told to stop.
        let (lost_tx, lost_rx) = watch::channel(false);
        let lost = async {
            tokio::select! {
                _ = leader.wait_for(|l| !*l) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            let _ = lost_tx.send(true);
        };
        tokio::join!(
            controllers(&client, &options.namespaces, ctx.clone(), lost_rx),
            lost
        );
        metrics.set_leader(false);
        if *stop.borrow() {
            break;
        }
        tracing::warn!(identity = %election.identity, "lost the leader lease: controllers stopped");
    }
    // Closing the channel releases the lease for the next leader.
    drop(leader);
    match lease_task.await {
        Ok(Ok(_)) => tracing::info!("leader lease released"),
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing the leader lease"),
        Err(e) => tracing::warn!(error = %e, "the lease task ended abnormally"),
    }
    Ok(())
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
