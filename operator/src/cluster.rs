//! `KubernetesRuntime`: the planner's [`Runtime`] against a cluster.
//!
//! It observes a job's StatefulSet and pods, each worker's `/status`, worker 0's savepoint
//! board and the snapshots in storage; it carries out the planner's actions with
//! server-side apply (one field manager) and the workers' control API. It decides nothing:
//! every action is safe to repeat, and one whose effect it has not observed yet is simply
//! issued again by the planner.
//!
//! Two deployments of a job never run at once: a deploy whose StatefulSet still has pods of
//! another deployment scales it to zero and waits (the planner asks again) until they are
//! gone, and only then applies the new ConfigMap and StatefulSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use rivulet_api::job::StreamJob;
use rivulet_api::status::WorkerStatus;
use rivulet_control::observed::{RateMeter, SavepointRequest, Workers};
use rivulet_control::{Action, Deploy, Observed, Runtime};
use rivulet_storage::{JobStore, SnapshotCatalog, StoreEnv, StoreError};
use serde::Serialize;
use serde_json::json;

use crate::objects::{self, Names, ObjectError, Rollout, DEPLOYMENT_LABEL, POD_INDEX_LABEL};
use crate::settings::{Settings, FIELD_MANAGER};
use crate::worker_api::{WorkerApi, WorkerApiError};

/// Restarts of a worker container that is not ready, after which it is crash-looping.
pub const CRASH_LOOP_RESTARTS: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("snapshot storage: {0}")]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Worker(#[from] WorkerApiError),
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// What the runtime keeps about one job between reconciles.
#[derive(Debug, Default)]
pub struct JobCache {
    catalog: SnapshotCatalog,
    /// The control-API token, once read or made.
    token: Option<String>,
    /// Per pod: records read per second.
    records_in: BTreeMap<String, RateMeter>,
    /// The storage credentials from the job's Secret, as last read.
    storage_env: StoreEnv,
    /// The StatefulSet's replicas at the last observation (`None`: no StatefulSet).
    replicas: Option<i32>,
}

/// One job's runtime for one reconcile.
pub struct KubernetesRuntime<'a> {
    client: Client,
    settings: &'a Settings,
    workers: &'a WorkerApi,
    cache: &'a mut JobCache,
    /// What it did, for the operator's log.
    notes: Vec<String>,
}

/// One pod of the job as observed.
#[derive(Debug)]
struct PodView {
    name: String,
    index: Option<u32>,
    deployment: Option<u64>,
    ready: bool,
    base_url: Option<String>,
    status: Option<WorkerStatus>,
    failure: Option<String>,
}

impl<'a> KubernetesRuntime<'a> {
    pub fn new(
        client: Client,
        settings: &'a Settings,
        workers: &'a WorkerApi,
        cache: &'a mut JobCache,
    ) -> KubernetesRuntime<'a> {
        KubernetesRuntime {
            client,
            settings,
            workers,
            cache,
            notes: Vec::new(),
        }
    }

    /// What the runtime did since the last call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn api<K>(&self, job: &StreamJob) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), job.job_namespace())
    }

    async fn pods(&mut self, job: &StreamJob) -> Result<Vec<PodView>, ClusterError> {
        let selector = format!("{}={}", rivulet_api::job::JOB_LABEL, job.job_name());
        let pods = self
            .api::<Pod>(job)
            .list(&ListParams::default().labels(&selector))
            .await?;
        let mut out = Vec::new();
        for pod in pods.items {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let status = pod.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let base_url = status
                .and_then(|s| s.pod_ip.as_ref())
                .map(|ip| format!("http://{ip}:{}", self.settings.worker_http_port));
            let failure = status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == objects::CONTAINER))
                .filter(|c| !c.ready && c.restart_count >= CRASH_LOOP_RESTARTS)
                .map(|c| {
                    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                    match last {
                        Some(t) => match t.message.as_deref().filter(|m| !m.is_empty()) {
                            Some(m) => format!("exit code {}: {}", t.exit_code, m.trim()),
                            None => format!(
                                "exit code {} ({})",
                                t.exit_code,
                                t.reason.as_deref().unwrap_or("no reason given")
                            ),
                        },
                        None => format!("restarted {} times", c.restart_count),
                    }
                });
            let deleting = pod.metadata.deletion_timestamp.is_some();
            out.push(PodView {
                name,
                index: labels.get(POD_INDEX_LABEL).and_then(|i| i.parse().ok()),
                deployment: labels.get(DEPLOYMENT_LABEL).and_then(|d| d.parse().ok()),
                ready: ready && !deleting,
                base_url: base_url.filter(|_| !deleting),
                status: None,
                failure,
            });
        }
        // Every worker at once: one that does not answer costs one timeout, not one each.
        let workers = &self.workers;
        let statuses = futures::future::join_all(out.iter().map(|p| async move {
            match &p.base_url {
                Some(base) => workers.status(base).await,
                None => None,
            }
        }))
        .await;
        for (pod, status) in out.iter_mut().zip(statuses) {
            pod.status = status;
        }
        out.sort_by_key(|p| p.index);
        Ok(out)
    }

    fn rate(&mut self, pod: &str, records_in: u64, now_ms: i64) -> f64 {
        self.cache
            .records_in
            .entry(pod.to_string())
            .or_default()
            .update(records_in, now_ms)
    }

    /// The deployment the StatefulSet runs, from its annotation.
    fn deployment_of(sts: &StatefulSet) -> Option<u64> {
        sts.metadata
            .annotations
            .as_ref()?
            .get(DEPLOYMENT_LABEL)?
            .parse()
            .ok()
    }

    /// The storage credentials of the Secret `spec.credentials.storage` names, read at each
    /// reconcile (a rotated Secret takes effect at once); none when it names none.
    async fn storage_env(&mut self, job: &StreamJob) -> Result<StoreEnv, ClusterError> {
        let Some(secret) = &job.spec.credentials.storage else {
            return Ok(StoreEnv::default());
        };
        let env = match self.api::<Secret>(job).get_opt(&secret.secret_name).await? {
            Some(s) => StoreEnv(
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
                    .collect(),
            ),
            None => {
                self.notes.push(format!(
                    "Secret {} (spec.credentials.storage) does not exist",
                    secret.secret_name
                ));
                StoreEnv::default()
            }
        };
        self.cache.storage_env = env.clone();
        Ok(env)
    }

    async fn token(
        &mut self,
        job: &StreamJob,
        create: bool,
    ) -> Result<Option<String>, ClusterError> {
        if let Some(t) = &self.cache.token {
            return Ok(Some(t.clone()));
        }
        let names = Names::of(job);
        let secrets = self.api::<Secret>(job);
        let existing = secrets
            .get_opt(&names.token_secret)
            .await?
            .and_then(|s| s.data)
            .and_then(|d| d.get(objects::TOKEN_KEY).cloned())
            .and_then(|b| String::from_utf8(b.0).ok());
        let token = match existing {
            Some(t) => Some(t),
            None if create => {
                let token = new_token();
                let secret = objects::token_secret(job, &token);
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        self.notes
                            .push(format!("created Secret {}", names.token_secret));
                        Some(token)
                    }
                    // Made meanwhile (by an operator instance that lost its lease): read it.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        return Box::pin(self.token(job, false)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => None,
        };
        self.cache.token = token.clone();
        Ok(token)
    }

    async fn apply<K>(&self, job: &StreamJob, object: &K) -> Result<(), ClusterError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug + Serialize,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        self.api::<K>(job)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await?;
        Ok(())
    }

    async fn scale_to_zero(&mut self, job: &StreamJob) -> Result<(), ClusterError> {
        if self.cache.replicas == Some(0) {
            // Already asked; its pods are on their way out.
            return Ok(());
        }
        let name = Names::of(job).workers;
        let sts = self.api::<StatefulSet>(job);
        match sts
            .patch_scale(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "replicas": 0 } })),
            )
            .await
        {
            Ok(_) => {
                self.cache.replicas = Some(0);
                self.notes.push(format!("scaled StatefulSet {name} to 0"));
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn deploy(&mut self, job: &StreamJob, d: &Deploy) -> Result<(), ClusterError> {
        let names = Names::of(job);
        let existing = self.api::<StatefulSet>(job).get_opt(&names.workers).await?;
        if let Some(sts) = &existing {
            if Self::deployment_of(sts) != Some(d.deployment) {
                let pods = self.pods(job).await?;
                let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                if replicas > 0 || !pods.is_empty() {
                    // The old deployment's pods go first; the planner asks again.
                    self.notes.push(format!(
                        "waiting for {} pod(s) of deployment {} to go before deployment {}",
                        pods.len(),
                        Self::deployment_of(sts).map_or("?".into(), |d| d.to_string()),
                        d.deployment
                    ));
                    self.cache.replicas = Some(replicas);
                    if replicas > 0 {
                        self.scale_to_zero(job).await?;
                    }
                    return Ok(());
                }
            }
        }
        self.token(job, true).await?;
        let rollout = Rollout::of(d);
        let config =
            objects::config_map(job, &rollout, self.settings).map_err(ObjectError::from)?;
        self.apply(job, &config).await?;
        self.apply::<Service>(job, &objects::service(job)).await?;
        if let Some(np) = &self.settings.network_policy {
            self.apply(job, &objects::network_policy(job, np)).await?;
        }
        self.apply::<PodDisruptionBudget>(job, &objects::pod_disruption_budget(job))
            .await?;
        self.apply(job, &objects::stateful_set(job, &rollout, self.settings))
            .await?;
        self.notes.push(format!(
            "applied deployment {} ({} worker(s))",
            d.deployment, d.parallelism
        ));
        Ok(())
    }

    async fn request_savepoint(&mut self, job: &StreamJob, stop: bool) -> Result<(), ClusterError> {
        let pods = self.pods(job).await?;
        let Some(base) = pods
            .iter()
            .find(|p| p.index == Some(0))
            .and_then(|p| p.base_url.clone())
        else {
            self.notes
                .push("worker 0 has no address yet: the savepoint is asked for again".into());
            return Ok(());
        };
        let Some(token) = self.token(job, false).await? else {
            self.notes
                .push("the control token Secret is missing: the savepoint waits".into());
            return Ok(());
        };
        let id = self.workers.request_savepoint(&base, &token, stop).await?;
        self.notes.push(format!(
            "asked worker 0 for {} (request {id})",
            if stop {
                "a stop-with-savepoint"
            } else {
                "a savepoint"
            }
        ));
        Ok(())
    }
}

impl Runtime for KubernetesRuntime<'_> {
    type Error = ClusterError;

    async fn observe(&mut self, job: &StreamJob, now_ms: i64) -> Result<Observed, ClusterError> {
        let (generation, deleting) = rivulet_control::runtime::metadata_of(job);
        let env = self.storage_env(job).await?;
        let store = JobStore::open_with(
            &job.spec.state.storage,
            job.job_namespace(),
            job.job_name(),
            &env,
        )?;
        let snapshots = self.cache.catalog.observe(&store).await?;
        let sts = self
            .api::<StatefulSet>(job)
            .get_opt(&Names::of(job).workers)
            .await?;
        self.cache.replicas = sts
            .as_ref()
            .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
        let pods = self.pods(job).await?;
        let deployment = sts
            .as_ref()
            .and_then(Self::deployment_of)
            .or_else(|| pods.iter().find_map(|p| p.deployment));
        let workers = match deployment {
            Some(deployment) if !pods.is_empty() => {
                let count = pods.len() as u32;
                let ready = pods.iter().filter(|p| p.ready).count() as u32;
                let stopped = pods.iter().all(|p| {
                    p.status.as_ref().is_some_and(|s| {
                        s.stopped_with_savepoint && s.deployment == Some(deployment)
                    })
                });
                let failure = pods.iter().find_map(|p| {
                    p.failure.as_ref().map(|why| {
                        format!(
                            "worker {} keeps failing: {why}",
                            p.index.map_or(p.name.clone(), |i| i.to_string())
                        )
                    })
                });
                let mut rate = 0.0;
                for p in &pods {
                    if let Some(s) = &p.status {
                        rate += self.rate(&p.name, s.records_in, now_ms);
                    }
                }
                let mut workers = Workers {
                    deployment,
                    count,
                    ready,
                    stopped,
                    failure,
                    records_per_second: rate,
                    ..Workers::default()
                };
                workers.read_statuses(pods.iter().filter_map(|p| p.status.as_ref()));
                Some(workers)
            }
            _ => None,
        };
        let worker0 = pods
            .iter()
            .find(|p| p.index == Some(0) && p.status.is_some())
            .and_then(|p| p.base_url.clone());
        let savepoint_request = match worker0 {
            Some(base) => match self.token(job, false).await? {
                Some(token) => match self.workers.savepoints(&base, &token).await {
                    Ok(board) => SavepointRequest::newest_on_board(&board),
                    Err(e) => {
                        self.notes.push(format!("worker 0's savepoints: {e}"));
                        None
                    }
                },
                None => None,
            },
            None => None,
        };
        Ok(Observed {
            now_ms,
            generation,
            deleting,
            workers,
            snapshots,
            savepoint_request,
        })
    }

    async fn act(&mut self, job: &StreamJob, action: &Action) -> Result<(), ClusterError> {
        match action {
            Action::Deploy(d) => self.deploy(job, d).await,
            Action::RequestSavepoint { stop } => self.request_savepoint(job, *stop).await,
            Action::StopWorkers => self.scale_to_zero(job).await,
            Action::DeleteSavepoint { path, .. } => {
                let env = self.cache.storage_env.clone();
                let id = self.cache.catalog.delete(path, &env).await?;
                self.notes.push(format!("deleted savepoint {id}"));
                Ok(())
            }
            // The children go with the StreamJob (owner references); the controller
            // removes its finalizer.
            Action::Finalize => Ok(()),
        }
    }
}

/// A new control-API token: 32 random bytes, hex.
fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
