//! The operator's Prometheus metrics: reconciles, their durations and errors, jobs by
//! phase; per job its parallelism, rescales and savepoints by result (labels `namespace`
//! and `streamjob`, the names the chart's dashboard joins the workers' metrics on); and the
//! HTTP server that exports them with `/healthz` and `/readyz`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rivulet_api::job::StreamJob;
use rivulet_api::job_status::StreamJobStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    namespace: String,
    streamjob: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SavepointLabels {
    namespace: String,
    streamjob: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    namespace: String,
    streamjob: String,
    reason: String,
}

impl JobLabels {
    fn of(job: &StreamJob) -> JobLabels {
        JobLabels {
            namespace: job.job_namespace().to_string(),
            streamjob: job.job_name().to_string(),
        }
    }
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    jobs: Family<PhaseLabels, Gauge>,
    savepoints: Family<SavepointLabels, Counter>,
    parallelism: Family<JobLabels, Gauge>,
    rescales: Family<JobLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    recommended: Family<JobLabels, Gauge>,
    /// Each job's phase, to count jobs by phase.
    phases: Mutex<HashMap<String, String>>,
    /// This instance holds the leader lease (or runs without election).
    leader: Gauge,
    /// The controller is running (for `/readyz`).
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rivulet_operator");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let jobs = Family::<PhaseLabels, Gauge>::default();
        let savepoints = Family::<SavepointLabels, Counter>::default();
        let parallelism = Family::<JobLabels, Gauge>::default();
        let rescales = Family::<JobLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let recommended = Family::<JobLabels, Gauge>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "StreamJob reconciles", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by error kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            duration.clone(),
        );
        registry.register("jobs", "StreamJobs by phase", jobs.clone());
        registry.register(
            "savepoints",
            "Savepoints the operator saw complete or fail, by job and result",
            savepoints.clone(),
        );
        registry.register(
            "job_parallelism",
            "Workers each job runs now (its status.parallelism)",
            parallelism.clone(),
        );
        registry.register("rescales", "Rescales started, by job", rescales.clone());
        registry.register(
            "autoscaler_decisions",
            "Autoscaler decisions, by job and reason",
            decisions.clone(),
        );
        registry.register(
            "autoscaler_recommended_parallelism",
            "The parallelism the autoscaler last recommended, acted on or not",
            recommended.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance holds the leader lease",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            jobs,
            savepoints,
            parallelism,
            rescales,
            decisions,
            recommended,
            phases: Mutex::default(),
            leader,
            ready: AtomicBool::new(false),
        }
    }

    /// A reconcile that took `took` and failed with `error` (a metric label), if it did.
    pub fn reconciled(&self, took: Duration, error: Option<&str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(e) = error {
            self.errors
                .get_or_create(&ErrorLabels { error: e.into() })
                .inc();
        }
    }

    /// The job's phase as of its latest status.
    pub fn observe_job(&self, job: &StreamJob, status: &StreamJobStatus) {
        let phase = status.phase.map_or("Unknown", |p| p.name());
        self.set_phase(&job_key(job), Some(phase));
        self.parallelism
            .get_or_create(&JobLabels::of(job))
            .set(i64::from(status.parallelism));
    }

    /// The job is gone.
    pub fn forget_job(&self, job: &StreamJob) {
        self.set_phase(&job_key(job), None);
        let labels = JobLabels::of(job);
        self.parallelism.remove(&labels);
        self.rescales.remove(&labels);
        self.recommended.remove(&labels);
        for reason in rivulet_control::autoscaler::REASONS {
            self.decisions.remove(&DecisionLabels {
                namespace: labels.namespace.clone(),
                streamjob: labels.streamjob.clone(),
                reason: (*reason).into(),
            });
        }
        for result in ["completed", "failed"] {
            self.savepoints.remove(&SavepointLabels {
                namespace: labels.namespace.clone(),
                streamjob: labels.streamjob.clone(),
                result: result.into(),
            });
        }
    }

    fn set_phase(&self, key: &str, phase: Option<&str>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        match phase {
            Some(p) => {
                phases.insert(key.to_string(), p.to_string());
            }
            None => {
                phases.remove(key);
            }
        }
        self.jobs.clear();
        for p in phases.values() {
            self.jobs
                .get_or_create(&PhaseLabels { phase: p.clone() })
                .inc();
        }
    }

    /// An event the planner recorded for `job` (savepoint results and rescales are counted).
    pub fn event(&self, job: &StreamJob, reason: &str) {
        let labels = JobLabels::of(job);
        let result = match reason {
            "SavepointCompleted" => "completed",
            "SavepointFailed" => "failed",
            "RescaleStarted" => {
                self.rescales.get_or_create(&labels).inc();
                return;
            }
            _ => return,
        };
        self.savepoints
            .get_or_create(&SavepointLabels {
                namespace: labels.namespace,
                streamjob: labels.streamjob,
                result: result.into(),
            })
            .inc();
    }

    /// An autoscaler decision taken for `job`.
    pub fn autoscaler_decision(
        &self,
        job: &StreamJob,
        decision: &rivulet_api::job_status::AutoscalerDecision,
    ) {
        let labels = JobLabels::of(job);
        self.recommended
            .get_or_create(&labels)
            .set(i64::from(decision.recommended));
        self.decisions
            .get_or_create(&DecisionLabels {
                namespace: labels.namespace,
                streamjob: labels.streamjob,
                reason: decision.reason.clone(),
            })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn job_key(job: &StreamJob) -> String {
    format!("{}/{}", job.job_namespace(), job.job_name())
}

/// Serves `/metrics`, `/healthz` and `/readyz` (ready once the controller runs, leader or
/// standing by) on `addr` until `shutdown` resolves; returns the bound address once
/// listening.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Arc<Metrics>>| async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.encode(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(m): State<Arc<Metrics>>| async move {
                if m.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready").into_response()
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                }
            }),
        )
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_counted_by_phase_and_savepoints_by_result() {
        let m = Metrics::new();
        m.set_phase("ns/a", Some("Running"));
        m.set_phase("ns/b", Some("Running"));
        m.set_phase("ns/c", Some("Upgrading"));
        m.set_phase("ns/b", Some("Suspended"));
        m.set_phase("ns/c", None);
        let job = rivulet_api::load_manifest(
            "apiVersion: rivulet.dev/v1alpha1\nkind: StreamJob\nmetadata: {name: clicks, namespace: ns}\n\
             spec:\n  pipeline:\n    source: {topics: [in]}\n    time: {type: processing}\n\
             \x20   sink: {topic: out}\n",
        )
        .expect("a valid manifest");
        m.event(&job, "SavepointCompleted");
        m.event(&job, "SavepointCompleted");
        m.event(&job, "SavepointFailed");
        m.event(&job, "RescaleStarted");
        m.event(&job, "Deployed");
        let status = StreamJobStatus {
            parallelism: 3,
            ..StreamJobStatus::default()
        };
        m.observe_job(&job, &status);
        m.reconciled(Duration::from_millis(20), Some("conflict"));
        let text = m.encode();
        assert!(
            text.contains("rivulet_operator_jobs{phase=\"Running\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_operator_jobs{phase=\"Suspended\"} 1"),
            "{text}"
        );
        assert!(!text.contains("phase=\"Upgrading\""), "{text}");
        assert!(
            text.contains(
                "rivulet_operator_savepoints_total{namespace=\"ns\",streamjob=\"clicks\",result=\"completed\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rivulet_operator_rescales_total{namespace=\"ns\",streamjob=\"clicks\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "rivulet_operator_job_parallelism{namespace=\"ns\",streamjob=\"clicks\"} 3"
            ),
            "{text}"
        );
        m.forget_job(&job);
        let text = m.encode();
        assert!(!text.contains("streamjob=\"clicks\""), "{text}");
        assert!(
            text.contains("rivulet_operator_reconcile_errors_total{error=\"conflict\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rivulet_operator_reconciles_total 1"),
            "{text}"
        );
    }
}
