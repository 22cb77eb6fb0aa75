//! The StreamJob controller: one [`reconcile`] per change of a job (or of its StatefulSet)
//! and per requeue, and [`error_policy`] for the errors.
//!
//! A reconcile: make sure the finalizer is on (deletion then waits for the planner's
//! deletion savepoint, bounded by `savepoints.timeout`); refuse a spec that breaks a rule
//! the API server does not check (the job keeps running on its last reconciled spec, with
//! `Degraded` saying why); observe through the [`KubernetesRuntime`]; plan; write the
//! status through the status subresource *before* any action (the write-ahead log a
//! restarted operator resumes from); publish the plan's events; carry out its actions;
//! requeue as the planner asks. Errors back off per job (a failure count kept in the
//! context, reset by the next success), so a failing job never hot-loops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use rivulet_api::job::{StreamJob, API_VERSION, KIND};
use rivulet_api::job_status::StreamJobStatus;
use rivulet_control::{plan, rejected, Action, Event, Runtime};
use serde_json::json;

use crate::cluster::{ClusterError, JobCache, KubernetesRuntime};
use crate::metrics::Metrics;
use crate::settings::{Settings, FIELD_MANAGER};
use crate::worker_api::WorkerApi;

/// The finalizer that holds a deleted StreamJob until its deletion is carried out.
pub const FINALIZER: &str = "rivulet.dev/finalizer";
/// Longest wait before a failing job is reconciled again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One error enum for a reconcile, with a label for the error metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("status as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The `error` label of `rivulet_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Cluster(ClusterError::Kube(e)) | Error::Kube(e) => match e {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(_) => "api",
                _ => "client",
            },
            Error::Cluster(ClusterError::Storage(_)) => "storage",
            Error::Cluster(ClusterError::Worker(_)) => "worker",
            Error::Cluster(ClusterError::Object(_)) | Error::Json(_) => "object",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub workers: WorkerApi,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The clock (epoch milliseconds): the planner's only source of time.
    pub clock: Box<dyn Fn() -> i64 + Send + Sync>,
    /// Per job (`namespace/name`): what the runtime keeps between reconciles.
    caches: Mutex<HashMap<String, JobCache>>,
    /// Per job: consecutive failed reconciles.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Context {
        let reporter = Reporter {
            controller: "rivulet-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            workers: WorkerApi::new(),
            metrics,
            clock: Box::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
            }),
            caches: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// With another clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Context {
        self.clock = Box::new(clock);
        self
    }

    fn take_cache(&self, key: &str) -> JobCache {
        self.caches
            .lock()
            .ok()
            .and_then(|mut c| c.remove(key))
            .unwrap_or_default()
    }

    fn put_cache(&self, key: String, cache: JobCache) {
        if let Ok(mut c) = self.caches.lock() {
            c.insert(key, cache);
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut c) = self.caches.lock() {
            c.remove(key);
        }
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }

    /// Counts a failure of `key`'s reconcile; returns how many in a row.
    fn failed(&self, key: &str) -> u32 {
        let Ok(mut f) = self.failures.lock() else {
            return 1;
        };
        let n = f.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

fn key(job: &StreamJob) -> String {
    format!("{}/{}", job.job_namespace(), job.job_name())
}

/// Reconciles one StreamJob.
pub async fn reconcile(job: Arc<StreamJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&job, &ctx).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    if result.is_ok() {
        ctx.succeeded(&key(&job));
    }
    result
}

async fn reconcile_inner(job: &StreamJob, ctx: &Context) -> Result<Requeue, Error> {
    let ns = job.job_namespace().to_string();
    let name = job.job_name().to_string();
    let jobs: Api<StreamJob> = Api::namespaced(ctx.client.clone(), &ns);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let has_finalizer = job.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        ctx.forget(&key(job));
        return Ok(Requeue::await_change());
    }
    let mut job = job.clone();
    if !has_finalizer {
        let mut finalizers = job.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        // The resource version makes a concurrent change a conflict, retried.
        job = jobs
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {
                        "finalizers": finalizers,
                        "resourceVersion": job.resource_version(),
                    }
                })),
            )
            .await?;
    }

    let now_ms = (ctx.clock)();
    let generation = job.metadata.generation.unwrap_or(1);
    let mut errors = rivulet_api::validate::validate(&job);
    errors.extend(crate::check::kubernetes_errors(&job));
    let refused = (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    });
    let planned = match &refused {
        None => job.clone(),
        Some(message) => match rejected::last_good(&job) {
            Some(last) => last,
            // Never ran: nothing to stop or keep.
            None if deleting => {
                remove_finalizer(&jobs, &job).await?;
                ctx.forget(&key(&job));
                return Ok(Requeue::await_change());
            }
            None => {
                // Never ran: nothing is started for a spec that is refused.
                let status = rejected::reject(job.status.as_ref(), generation, message, now_ms);
                if job.status.as_ref() != Some(&status) {
                    write_status(&jobs, &name, &status).await?;
                    publish(
                        ctx,
                        &job,
                        &[Event {
                            warning: true,
                            reason: rejected::INVALID_SPEC.into(),
                            message: message.clone(),
                        }],
                    )
                    .await;
                }
                return Ok(Requeue::await_change());
            }
        },
    };

    let cache_key = key(&job);
    let mut cache = ctx.take_cache(&cache_key);
    let mut runtime =
        KubernetesRuntime::new(ctx.client.clone(), &ctx.settings, &ctx.workers, &mut cache);
    let outcome = plan_and_act(
        ctx,
        &jobs,
        &job,
        &planned,
        refused.as_deref(),
        &mut runtime,
        now_ms,
    )
    .await;
    for note in runtime.take_notes() {
        tracing::info!(job = %cache_key, "{note}");
    }
    let (finalized, requeue_ms) = match outcome {
        Ok(done) => done,
        Err(e) => {
            ctx.put_cache(cache_key, cache);
            return Err(e);
        }
    };
    if finalized {
        ctx.forget(&cache_key);
        ctx.metrics.forget_job(&job);
        remove_finalizer(&jobs, &job).await?;
        return Ok(Requeue::await_change());
    }
    ctx.put_cache(cache_key, cache);
    Ok(Requeue::requeue(Duration::from_millis(requeue_ms)))
}

/// Observes, plans, writes the status, publishes the events and acts; returns whether the
/// job's deletion is complete, and when to reconcile again.
async fn plan_and_act(
    ctx: &Context,
    jobs: &Api<StreamJob>,
    job: &StreamJob,
    planned: &StreamJob,
    refused: Option<&str>,
    runtime: &mut KubernetesRuntime<'_>,
    now_ms: i64,
) -> Result<(bool, u64), Error> {
    let observed = runtime.observe(planned, now_ms).await?;
    let plan = plan(planned, &observed);
    let mut status = plan.status.clone();
    if let Some(message) = refused {
        let generation = job.metadata.generation.unwrap_or(1);
        status = rejected::reject(Some(&status), generation, message, now_ms);
    }
    if job.status.as_ref() != Some(&status) {
        write_status(jobs, job.job_name(), &status).await?;
    }
    let mut events = plan.events.clone();
    if let Some(message) = refused {
        let was = job.status.as_ref().and_then(|s| s.error.as_deref());
        if was != Some(message) {
            events.push(Event {
                warning: true,
                reason: rejected::INVALID_SPEC.into(),
                message: format!("{message}; the job keeps running as it was"),
            });
        }
    }
    publish(ctx, job, &events).await;
    ctx.metrics.observe_job(job, &status);
    if let Some(decision) = &plan.autoscaler_decision {
        ctx.metrics.autoscaler_decision(job, decision);
    }
    let mut acted = planned.clone();
    acted.status = Some(status);
    let mut finalized = false;
    for action in &plan.actions {
        runtime.act(&acted, action).await?;
        finalized |= *action == Action::Finalize;
    }
    Ok((finalized, plan.requeue_after_ms))
}

/// Takes the operator's finalizer off: the API server then deletes the job (and its
/// children with it).
async fn remove_finalizer(jobs: &Api<StreamJob>, job: &StreamJob) -> Result<(), Error> {
    let finalizers: Vec<String> = job
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    jobs.patch(
        job.job_name(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })),
    )
    .await?;
    Ok(())
}

/// Writes the whole status through the status subresource (server-side apply, so fields
/// the planner dropped are dropped).
async fn write_status(
    jobs: &Api<StreamJob>,
    name: &str,
    status: &StreamJobStatus,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": serde_json::to_value(status)?,
    });
    jobs.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// Publishes the events; one that cannot be published is logged, never fatal.
async fn publish(ctx: &Context, job: &StreamJob, events: &[Event]) {
    let reference = job.object_ref(&());
    for e in events {
        let event = KubeEvent {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.clone(),
            note: Some(truncate(&e.message, 1000)),
            action: e.reason.clone(),
            secondary: None,
        };
        ctx.metrics.event(job, &e.reason);
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(job = %key(job), reason = %e.reason, error = %err, "cannot publish an event");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Backs off per job: 1 s after the first failure, doubling to [`MAX_BACKOFF`].
pub fn error_policy(job: Arc<StreamJob>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let n = ctx.failed(&key(&job));
    let delay = backoff(n);
    tracing::warn!(job = %key(&job), error = %error, failures = n, retry_in = ?delay, "reconcile failed");
    Requeue::requeue(delay)
}

/// The wait after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_bound() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
