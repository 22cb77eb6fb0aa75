//! The operator's reconciler against a Kubernetes API server the test plays request by
//! request (method, path, query and body asserted in order, answered with realistic
//! objects), with snapshot storage on a real S3 server (moto) reached with the credentials
//! of the job's Secret, and worker 0's control API as a real HTTP server on loopback.

#[path = "common/apiserver.rs"]
mod apiserver;
#[path = "common/rbac.rs"]
mod rbac;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apiserver::{ApiServer, FakeWorker};
use kube::runtime::controller::Action as Requeue;
use rivulet_api::job::StreamJob;
use rivulet_operator::controller::{reconcile, Context, FINALIZER};
use rivulet_operator::metrics::Metrics;
use rivulet_operator::Settings;
use rivulet_tests::Moto;
use serde_json::{json, Value};

const NS: &str = "analytics";
const NOW_MS: i64 = 1_796_000_000_000;

fn job_json() -> Value {
    json!({
        "apiVersion": "rivulet.dev/v1alpha1",
        "kind": "StreamJob",
        "metadata": {
            "name": "clicks",
            "namespace": NS,
            "uid": "7d1c2a9e-0000-4000-8000-000000000001",
            "resourceVersion": "1",
            "generation": 1,
            "creationTimestamp": "2026-12-01T00:00:00Z",
        },
        "spec": {
            "parallelism": 2,
            "pipeline": {
                "source": {"bootstrapServers": "kafka.kafka:9092", "topics": ["clicks"]},
                "time": {"type": "event", "field": "ts"},
                "key": ["user"],
                "window": {"type": "tumbling", "size": "10s"},
                "aggregates": [{"name": "n", "fn": "count"}],
                "sink": {"topic": "clicks-per-user", "partitioner": "fixed"},
            },
            "state": {"storage": "s3://snapshots/rivulet"},
            "credentials": {"storage": {"secretName": "s3-credentials"}},
        },
    })
}

fn job(v: &Value) -> Arc<StreamJob> {
    Arc::new(serde_json::from_value(v.clone()).expect("a StreamJob"))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_base64(s: &str) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

/// The storage Secret as the API server returns it: moto's endpoint and test keys.
fn storage_secret(moto: &Moto) -> Value {
    let data: serde_json::Map<String, Value> = moto
        .s3_env()
        .into_iter()
        .map(|(k, v)| (k, json!(base64(v.as_bytes()))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s3-credentials", "namespace": NS, "uid": "s", "resourceVersion": "3"},
        "type": "Opaque",
        "data": data,
    })
}

fn pod_list(items: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": items})
}

/// A worker pod of deployment `deployment`, ordinal `i`, running at 127.0.0.1.
fn pod(i: u32, deployment: u64, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("clicks-{i}"),
            "namespace": NS,
            "uid": format!("pod-{i}"),
            "labels": {
                "rivulet.dev/job": "clicks",
                "rivulet.dev/deployment": deployment.to_string(),
                "apps.kubernetes.io/pod-index": i.to_string(),
            },
        },
        "spec": {"containers": [{"name": "worker", "image": "rivulet/worker:0.1.0"}]},
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [{
                "name": "worker", "ready": ready, "restartCount": 0,
                "image": "rivulet/worker:0.1.0", "imageID": "", "started": true,
                "state": {"running": {"startedAt": "2026-12-01T00:00:05Z"}},
            }],
        },
    })
}

fn context(client: kube::Client, worker_port: u16) -> Arc<Context> {
    context_with_clock(client, worker_port, Arc::new(AtomicI64::new(NOW_MS)))
}

/// A context whose clock the test moves.
fn context_with_clock(
    client: kube::Client,
    worker_port: u16,
    clock: Arc<AtomicI64>,
) -> Arc<Context> {
    let settings = Settings {
        worker_http_port: worker_port,
        ..Settings::default()
    };
    Arc::new(
        Context::new(client, settings, Arc::new(Metrics::new()))
            .with_clock(move || clock.load(Ordering::Relaxed)),
    )
}

fn path(kind_path: &str, name: &str) -> String {
    format!("{kind_path}/namespaces/{NS}/{name}")
}

const JOBS: &str = "/apis/rivulet.dev/v1alpha1";
const APPS: &str = "/apis/apps/v1";
const CORE: &str = "/api/v1";
const POLICY: &str = "/apis/policy/v1";

/// The reconciler's reads before it plans: the storage Secret, the StatefulSet, the pods.
async fn observed(api: &mut ApiServer, moto: &Moto, sts: Option<Value>, pods: Vec<Value>) {
    api.next("GET", &path(CORE, "secrets/s3-credentials"))
        .await
        .ok(storage_secret(moto));
    let call = api.next("GET", &path(APPS, "statefulsets/clicks")).await;
    match sts {
        Some(s) => call.ok(s),
        None => call.not_found("statefulsets.apps", "clicks"),
    }
    let call = api.next("GET", &path(CORE, "pods")).await;
    assert_eq!(
        call.query.get("labelSelector").map(String::as_str),
        Some("rivulet.dev/job=clicks")
    );
    call.ok(pod_list(pods));
}

/// A job the operator has deployed and seen running, as the API server stores it.
struct Deployed {
    job: Value,
    sts: Value,
    /// The control-token Secret the operator created.
    token_secret: Value,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_deploy_applies_every_object_after_the_status_and_reaches_running() {
    running_job().await;
}

/// A job deployed and running, with everything the test drives it through.
struct Running {
    moto: Moto,
    worker: FakeWorker,
    client: kube::Client,
    api: ApiServer,
    ctx: Arc<Context>,
    deployed: Deployed,
}

async fn running_job() -> Running {
    running_job_with_clock(Arc::new(AtomicI64::new(NOW_MS))).await
}

async fn running_job_with_clock(clock: Arc<AtomicI64>) -> Running {
    let moto = Moto::start().expect("start moto");
    moto.create_bucket("snapshots").unwrap();
    let worker = FakeWorker::start("unused").await;
    let (client, mut api) = apiserver::client();
    let ctx = context_with_clock(client.clone(), worker.port, clock);
    let deployed = deploy_to_running(&mut api, &ctx, &moto, &worker).await;
    Running {
        moto,
        worker,
        client,
        api,
        ctx,
        deployed,
    }
}

/// Drives a new job through its first deployment to Running, asserting every request.
async fn deploy_to_running(
    api: &mut ApiServer,
    ctx: &Arc<Context>,
    moto: &Moto,
    worker: &FakeWorker,
) -> Deployed {
    // Reconcile 1: the finalizer, then the first deployment.
    let mut stored = job_json();
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    let call = api.next("PATCH", &path(JOBS, "streamjobs/clicks")).await;
    assert_eq!(call.body["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(call.body["metadata"]["resourceVersion"], "1");
    stored["metadata"]["finalizers"] = json!([FINALIZER]);
    stored["metadata"]["resourceVersion"] = json!("2");
    call.ok(stored.clone());

    observed(api, moto, None, vec![]).await;
    // The status (the write-ahead log) is written before anything is created.
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(call.body["kind"], "StreamJob");
    assert_eq!(status["phase"], "Deploying", "{status}");
    assert_eq!(status["selector"], "rivulet.dev/job=clicks");
    assert_eq!(status["operation"]["kind"], "deploy", "{status}");
    stored["status"] = status.clone();
    call.ok(stored.clone());
    let (reasons, next) = api.events(NS, Duration::from_secs(10)).await;
    assert!(!reasons.is_empty(), "no event for the deploy");
    let call = next.expect("the deploy's requests");
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("GET", path(APPS, "statefulsets/clicks").as_str())
    );
    call.not_found("statefulsets.apps", "clicks");
    api.next("GET", &path(CORE, "secrets/clicks-control-token"))
        .await
        .not_found("secrets", "clicks-control-token");
    let call = api.next("POST", &path(CORE, "secrets")).await;
    assert_eq!(call.body["metadata"]["name"], "clicks-control-token");
    assert_eq!(
        call.body["metadata"]["ownerReferences"][0]["uid"],
        "7d1c2a9e-0000-4000-8000-000000000001"
    );
    let token = call.body["data"]["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 40, "{token}");
    worker.state.lock().unwrap().token = decode_base64(&token);
    let mut token_secret = call.body.clone();
    apiserver::stored(&mut token_secret);
    call.respond(201, token_secret.clone());
    let call = api.apply(&path(CORE, "configmaps/clicks")).await;
    assert_eq!(call.body["data"]["RIVULET_DEPLOYMENT"], "1");
    assert_eq!(call.body["data"]["RIVULET_PARALLELISM"], "2");
    call.applied();
    api.apply(&path(CORE, "services/clicks")).await.applied();
    api.apply(&path(POLICY, "poddisruptionbudgets/clicks"))
        .await
        .applied();
    let call = api.apply(&path(APPS, "statefulsets/clicks")).await;
    assert_eq!(call.body["spec"]["replicas"], 2);
    assert_eq!(
        call.body["metadata"]["annotations"]["rivulet.dev/deployment"],
        "1"
    );
    let mut sts = call.body.clone();
    apiserver::stored(&mut sts);
    call.ok(sts.clone());
    let requeue = task.await.unwrap().expect("the first reconcile");
    assert_eq!(requeue, Requeue::requeue(Duration::from_secs(1)));

    // Reconcile 2: both workers ready: Running, nothing to do.
    worker.state.lock().unwrap().status = json!({
        "job": "clicks", "namespace": NS, "worker": 0, "parallelism": 2,
        "phase": "running", "deployment": 1, "lag": 5, "recordsIn": 100,
        "backpressureRatio": 0.25, "watermarkMs": NOW_MS - 2_000,
    });
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(
        api,
        moto,
        Some(sts.clone()),
        vec![pod(0, 1, true), pod(1, 1, true)],
    )
    .await;
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(status["parallelism"], 2);
    assert_eq!(status["metrics"]["lag"], 10, "{status}");
    assert!(status["operation"].is_null(), "{status}");
    assert!(status["lastStableSpec"].is_string(), "{status}");
    stored["status"] = status;
    call.ok(stored.clone());
    let (reasons, next) = api.events(NS, Duration::from_secs(2)).await;
    assert!(next.is_none(), "nothing else to do");
    assert!(!reasons.is_empty());
    task.await.unwrap().expect("the second reconcile");
    // The board was read with the token; the token never went to status.
    assert_eq!(worker.state.lock().unwrap().refused, 0);
    assert!(!stored["status"].to_string().contains(&token));
    Deployed {
        job: stored,
        sts,
        token_secret,
    }
}

/// A spec change under `upgradeMode: savepoint` asks worker 0 (with the token) for a
/// stop-with-savepoint, with the status saying so first; an operator that restarts then
/// finds the request on worker 0's board and waits for it instead of asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_asks_once_for_a_savepoint_even_across_an_operator_restart() {
    let Running {
        moto,
        worker,
        client,
        mut api,
        ctx,
        deployed:
            Deployed {
                job: mut stored,
                sts,
                token_secret,
            },
    } = running_job().await;
    let running = || vec![pod(0, 1, true), pod(1, 1, true)];

    // A new pipeline: generation 2.
    stored["spec"]["pipeline"]["aggregates"] =
        json!([{"name": "n", "fn": "count"}, {"name": "total", "fn": "sum", "field": "amount"}]);
    stored["metadata"]["generation"] = json!(2);
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(&mut api, &moto, Some(sts.clone()), running()).await;
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Upgrading", "{status}");
    assert_eq!(status["operation"]["kind"], "upgrade", "{status}");
    stored["status"] = status.clone();
    call.ok(stored.clone());
    let (_, next) = api.events(NS, Duration::from_secs(10)).await;
    // Asking worker 0 looks up its address first.
    let call = next.expect("the savepoint request");
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("GET", path(CORE, "pods").as_str())
    );
    call.ok(pod_list(running()));
    task.await.unwrap().expect("the upgrade's first reconcile");
    {
        let w = worker.state.lock().unwrap();
        assert_eq!(w.requested, vec![json!({"stop": true})]);
        assert_eq!(w.refused, 0);
    }

    // The operator restarts: no cache, no token in memory. It reads the token from its
    // Secret, finds the pending request on the board, and asks nothing new.
    let ctx = context(client, worker.port);
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(&mut api, &moto, Some(sts.clone()), running()).await;
    api.next("GET", &path(CORE, "secrets/clicks-control-token"))
        .await
        .ok(token_secret.clone());
    // The status may only move its clock; nothing else is sent.
    let (_, next) = api.events(NS, Duration::from_secs(2)).await;
    if let Some(call) = next {
        assert_eq!(call.path, path(JOBS, "streamjobs/clicks/status"));
        let status = call.body["status"].clone();
        assert_eq!(status["phase"], "Upgrading", "{status}");
        assert_eq!(
            status["operation"], stored["status"]["operation"],
            "{status}"
        );
        stored["status"] = status;
        call.ok(stored.clone());
        let (_, next) = api.events(NS, Duration::from_secs(2)).await;
        assert!(next.is_none(), "asked again: {:?}", next.map(|c| c.path));
    }
    task.await
        .unwrap()
        .expect("the reconcile after the restart");
    assert_eq!(worker.state.lock().unwrap().requested.len(), 1);
}

/// Deleting a running job (no deletion savepoint asked for): the status says Deleting, the
/// workers are stopped, and once they are gone the finalizer comes off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_stops_the_workers_then_removes_the_finalizer() {
    let Running {
        moto,
        worker: _worker,
        mut api,
        ctx,
        deployed: Deployed {
            job: mut stored,
            sts,
            ..
        },
        ..
    } = running_job().await;
    stored["metadata"]["deletionTimestamp"] = json!("2026-12-01T01:00:00Z");

    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(
        &mut api,
        &moto,
        Some(sts.clone()),
        vec![pod(0, 1, true), pod(1, 1, true)],
    )
    .await;
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Deleting", "{status}");
    stored["status"] = status;
    call.ok(stored.clone());
    let (_, next) = api.events(NS, Duration::from_secs(10)).await;
    let call = next.expect("the workers are stopped");
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("PATCH", path(APPS, "statefulsets/clicks/scale").as_str())
    );
    assert_eq!(call.body, json!({"spec": {"replicas": 0}}));
    call.ok(json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "clicks", "namespace": NS},
        "spec": {"replicas": 0}, "status": {"replicas": 2},
    }));
    task.await.unwrap().expect("the first deletion reconcile");

    // The pods are gone: the deletion is complete and the finalizer comes off.
    let mut stopped = sts.clone();
    stopped["spec"]["replicas"] = json!(0);
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(&mut api, &moto, Some(stopped), vec![]).await;
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    stored["status"] = call.body["status"].clone();
    call.ok(stored.clone());
    let (_, next) = api.events(NS, Duration::from_secs(10)).await;
    let call = next.expect("the finalizer removed");
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("PATCH", path(JOBS, "streamjobs/clicks").as_str())
    );
    assert_eq!(call.body["metadata"]["finalizers"], json!([]));
    let mut gone = stored.clone();
    gone["metadata"]["finalizers"] = json!([]);
    call.ok(gone);
    let requeue = task.await.unwrap().expect("the last deletion reconcile");
    assert_eq!(requeue, Requeue::await_change());
    api.nothing_within(Duration::from_millis(500)).await;
}

/// An API server that answers 409 (the job changed meanwhile) or 500 fails the reconcile
/// with the error's metric label; the job is retried with a backoff that doubles per
/// failure and starts over after a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_server_errors_are_retried_with_backoff() {
    use rivulet_operator::controller::error_policy;
    let worker = FakeWorker::start("unused").await;
    let (client, mut api) = apiserver::client();
    let ctx = context(client, worker.port);
    let stored = job_json();
    let mut delays = Vec::new();
    for (code, reason, label) in [
        (409, "Conflict", "conflict"),
        (500, "InternalError", "api"),
        (409, "Conflict", "conflict"),
    ] {
        let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
        api.next("PATCH", &path(JOBS, "streamjobs/clicks"))
            .await
            .respond(code, apiserver::status_body(code, reason, "try again"));
        let err = task.await.unwrap().expect_err("the reconcile fails");
        assert_eq!(err.metric_label(), label, "{err}");
        delays.push(error_policy(job(&stored), &err, ctx.clone()));
    }
    assert_eq!(
        delays,
        [1, 2, 4].map(|s| Requeue::requeue(Duration::from_secs(s)))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("rivulet_operator_reconcile_errors_total{error=\"conflict\"} 2"),
        "{metrics}"
    );
    api.nothing_within(Duration::from_millis(300)).await;
}

/// A worker that keeps crashing: the job is Failed, with the container's last words in
/// `Degraded`, and a warning event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_worker_fails_the_job_with_its_reason() {
    let Running {
        moto,
        worker: _worker,
        mut api,
        ctx,
        deployed: Deployed {
            job: mut stored,
            sts,
            ..
        },
        ..
    } = running_job().await;

    let mut crashing = pod(1, 1, false);
    crashing["status"]["containerStatuses"][0]["restartCount"] = json!(5);
    crashing["status"]["containerStatuses"][0]["state"] =
        json!({"waiting": {"reason": "CrashLoopBackOff"}});
    crashing["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {
        "exitCode": 1,
        "reason": "Error",
        "message": "rivulet-worker: cannot reach kafka.kafka:9092\n",
    }});
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    observed(
        &mut api,
        &moto,
        Some(sts.clone()),
        vec![pod(0, 1, true), crashing],
    )
    .await;
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Failed", "{status}");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .cloned()
        .unwrap();
    assert_eq!(degraded["status"], "True", "{degraded}");
    assert_eq!(degraded["reason"], "WorkersFailing", "{degraded}");
    assert_eq!(
        degraded["message"],
        "worker 1 keeps failing: exit code 1: rivulet-worker: cannot reach kafka.kafka:9092",
    );
    stored["status"] = status;
    call.ok(stored.clone());
    let (reasons, next) = api.events(NS, Duration::from_secs(2)).await;
    assert!(reasons.iter().any(|r| r == "WorkersFailing"), "{reasons:?}");
    assert!(next.is_none());
    task.await.unwrap().expect("the reconcile");
}

/// A new job the API server accepted but that cannot run in a cluster (its snapshots on a
/// pod's local disk): Failed, `Degraded` naming the field, a warning event, and nothing
/// created. Deleting it takes the finalizer straight off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_run_in_a_cluster_starts_nothing() {
    let (client, mut api) = apiserver::client();
    let ctx = context(client, 1);
    let mut stored = job_json();
    stored["spec"]["state"]["storage"] = json!("file:///var/lib/snapshots");
    stored["metadata"]["finalizers"] = json!([FINALIZER]);

    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    let call = api.apply(&path(JOBS, "streamjobs/clicks/status")).await;
    let status = call.body["status"].clone();
    assert_eq!(status["phase"], "Failed", "{status}");
    let degraded = &status["conditions"][0];
    assert_eq!(degraded["type"], "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
    assert!(
        degraded["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.state.storage")),
        "{degraded}"
    );
    stored["status"] = status;
    call.ok(stored.clone());
    let (reasons, next) = api.events(NS, Duration::from_secs(2)).await;
    assert_eq!(reasons, ["InvalidSpec"]);
    assert!(
        next.is_none(),
        "something was created: {:?}",
        next.map(|c| c.path)
    );
    assert_eq!(task.await.unwrap().unwrap(), Requeue::await_change());

    // Reconciled again unchanged: nothing is written.
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    assert_eq!(task.await.unwrap().unwrap(), Requeue::await_change());
    api.nothing_within(Duration::from_millis(300)).await;

    stored["metadata"]["deletionTimestamp"] = json!("2026-12-01T01:00:00Z");
    let task = tokio::spawn(reconcile(job(&stored), ctx.clone()));
    let call = api.next("PATCH", &path(JOBS, "streamjobs/clicks")).await;
    assert_eq!(call.body["metadata"]["finalizers"], json!([]));
    call.ok(stored.clone());
    assert_eq!(task.await.unwrap().unwrap(), Requeue::await_change());
}

/// The cluster as the API server would keep it through many reconciles: the test answers
/// every request from it and logs the writes, so a long flow can be asserted as the exact
/// sequence of writes the operator made.
struct Sim {
    job: Value,
    sts: Option<Value>,
    pods: Vec<Value>,
    config: Option<Value>,
    token_secret: Value,
    storage_secret: Value,
    /// `METHOD path` of every write, in order (events left out).
    writes: Vec<String>,
    events: Vec<String>,
}

impl Sim {
    /// Answers the reconcile's requests until it returns.
    async fn reconcile(&mut self, api: &mut ApiServer, ctx: &Arc<Context>) -> Requeue {
        let task = tokio::spawn(reconcile(job(&self.job), ctx.clone()));
        loop {
            let (reasons, next) = api.events(NS, Duration::from_millis(300)).await;
            self.events.extend(reasons);
            let Some(call) = next else {
                if task.is_finished() {
                    return task.await.unwrap().expect("a reconcile");
                }
                continue;
            };
            self.answer(call);
        }
    }

    fn answer(&mut self, call: apiserver::Call) {
        let route = format!("{} {}", call.method, call.path);
        if call.method != "GET" {
            self.writes.push(route.clone());
        }
        let sts_path = path(APPS, "statefulsets/clicks");
        match route.as_str() {
            r if r == format!("GET {}", path(CORE, "secrets/s3-credentials")) => {
                call.ok(self.storage_secret.clone())
            }
            r if r == format!("GET {}", path(CORE, "secrets/clicks-control-token")) => {
                call.ok(self.token_secret.clone())
            }
            r if r == format!("GET {sts_path}") => match &self.sts {
                Some(s) => call.ok(s.clone()),
                None => call.not_found("statefulsets.apps", "clicks"),
            },
            r if r == format!("GET {}", path(CORE, "pods")) => call.ok(pod_list(self.pods.clone())),
            r if r == format!("PATCH {}", path(JOBS, "streamjobs/clicks/status")) => {
                self.job["status"] = call.body["status"].clone();
                call.ok(self.job.clone());
            }
            r if r == format!("PATCH {sts_path}/scale") => {
                let replicas = call.body["spec"]["replicas"].clone();
                if let Some(s) = &mut self.sts {
                    s["spec"]["replicas"] = replicas.clone();
                }
                call.ok(json!({
                    "apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": "clicks", "namespace": NS},
                    "spec": {"replicas": replicas},
                }));
            }
            r if r == format!("PATCH {sts_path}") => {
                let mut s = call.body.clone();
                apiserver::stored(&mut s);
                self.sts = Some(s.clone());
                call.ok(s);
            }
            r if r == format!("PATCH {}", path(CORE, "configmaps/clicks")) => {
                self.config = Some(call.body.clone());
                call.applied();
            }
            r if r == format!("PATCH {}", path(JOBS, "streamjobs/clicks")) => {
                // The finalizer's merge patch.
                self.job["metadata"]["finalizers"] = call.body["metadata"]["finalizers"].clone();
                call.ok(self.job.clone());
            }
            r if r.starts_with("PATCH ") => call.applied(),
            _ => panic!("unexpected {route}: {}", call.body),
        }
    }

    fn phase(&self) -> String {
        self.job["status"]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// A savepoint's manifest in storage, as worker 0 writes it last.
fn put_savepoint(moto: &Moto, id: u64) -> String {
    let dir = format!("{:020}", id);
    let manifest = serde_json::to_value(rivulet_api::manifest::SnapshotManifest {
        format_version: rivulet_api::manifest::FORMAT_VERSION,
        kind: rivulet_api::manifest::SnapshotKind::Savepoint,
        id,
        namespace: NS.into(),
        job: "clicks".into(),
        created_at_ms: NOW_MS - 1_000,
        duration_ms: 120,
        max_parallelism: 128,
        parallelism: 2,
        state_backend: "heap".into(),
        pipeline_fingerprint: "f".into(),
        state_files: vec![],
        source_offsets: vec![],
        watermark_ms: None,
        pending_output: vec![],
        deployment: Some(1),
    })
    .unwrap();
    moto.put_object(
        "snapshots",
        &format!(
            "rivulet/{NS}/clicks/savepoints/{dir}/{}",
            rivulet_api::manifest::MANIFEST_FILE
        ),
        manifest.to_string().as_bytes(),
    )
    .unwrap();
    format!("s3://snapshots/rivulet/{NS}/clicks/savepoints/{dir}")
}

/// An upgrade under `upgradeMode: savepoint`, end to end against the simulated cluster:
/// stop-with-savepoint, the old StatefulSet scaled to zero and its pods gone, and only then
/// the new ConfigMap and StatefulSet, restoring the savepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_never_runs_two_deployments_at_once() {
    let Running {
        moto,
        worker,
        mut api,
        ctx,
        deployed: Deployed {
            job,
            sts,
            token_secret,
        },
        ..
    } = running_job().await;
    let mut sim = Sim {
        job,
        sts: Some(sts),
        pods: vec![pod(0, 1, true), pod(1, 1, true)],
        config: None,
        token_secret,
        storage_secret: storage_secret(&moto),
        writes: Vec::new(),
        events: Vec::new(),
    };
    sim.job["spec"]["pipeline"]["aggregates"] =
        json!([{"name": "n", "fn": "count"}, {"name": "total", "fn": "sum", "field": "amount"}]);
    sim.job["metadata"]["generation"] = json!(2);

    // The savepoint is asked for.
    sim.reconcile(&mut api, &ctx).await;
    assert_eq!(sim.phase(), "Upgrading");
    assert_eq!(worker.state.lock().unwrap().requested.len(), 1);

    // Worker 0 completes it and the workers stop (restarted containers stay stopped).
    let savepoint = put_savepoint(&moto, 7);
    {
        let mut w = worker.state.lock().unwrap();
        w.board[0]["state"] = json!("completed");
        w.board[0]["snapshotId"] = json!(7);
        w.board[0]["path"] = json!(savepoint.clone());
        w.status["phase"] = json!("stopped");
        w.status["stoppedWithSavepoint"] = json!(true);
    }
    for p in &mut sim.pods {
        p["status"]["conditions"][0]["status"] = json!("False");
    }
    let writes_before = sim.writes.len();
    let mut rounds = 0;
    // Until the operator has scaled the old deployment down.
    while !sim
        .writes
        .iter()
        .any(|w| w.ends_with("statefulsets/clicks/scale"))
    {
        sim.reconcile(&mut api, &ctx).await;
        rounds += 1;
        assert!(
            rounds < 10,
            "never stopped the old workers: {:?}\n{}",
            sim.writes,
            sim.job["status"]
        );
    }
    // Nothing new is applied while the old pods exist.
    assert!(
        !sim.writes[writes_before..]
            .iter()
            .any(|w| w.ends_with("configmaps/clicks") || w.ends_with("statefulsets/clicks")),
        "{:?}",
        sim.writes
    );
    sim.reconcile(&mut api, &ctx).await;
    assert!(
        !sim.writes[writes_before..]
            .iter()
            .any(|w| w.ends_with("configmaps/clicks")),
        "applied while the old pods were still there: {:?}",
        sim.writes
    );

    // The old pods are gone: the new deployment restores the savepoint.
    sim.pods.clear();
    let mut rounds = 0;
    while sim.config.is_none() {
        sim.reconcile(&mut api, &ctx).await;
        rounds += 1;
        assert!(rounds < 10, "never deployed: {:?}", sim.writes);
    }
    let config = sim.config.clone().unwrap();
    assert_eq!(config["data"]["RIVULET_DEPLOYMENT"], "2", "{config}");
    assert_eq!(config["data"]["RIVULET_RESTORE"], savepoint.as_str());
    assert!(config["data"]["job.yaml"]
        .as_str()
        .unwrap()
        .contains("name: total"));
    let sts = sim.sts.clone().unwrap();
    assert_eq!(sts["spec"]["replicas"], 2);
    assert_eq!(
        sts["spec"]["template"]["metadata"]["labels"]["rivulet.dev/deployment"],
        "2"
    );
    // The writes after the savepoint, in order: scale down, then the new objects.
    let tail: Vec<&str> = sim.writes[writes_before..]
        .iter()
        .map(String::as_str)
        .filter(|w| !w.ends_with("/status"))
        .collect();
    assert_eq!(
        tail,
        [
            format!("PATCH {}", path(APPS, "statefulsets/clicks/scale")),
            format!("PATCH {}", path(CORE, "configmaps/clicks")),
            format!("PATCH {}", path(CORE, "services/clicks")),
            format!("PATCH {}", path(POLICY, "poddisruptionbudgets/clicks")),
            format!("PATCH {}", path(APPS, "statefulsets/clicks")),
        ]
    );
    assert!(
        sim.events.iter().any(|e| e == "SavepointCompleted"),
        "{:?}",
        sim.events
    );
}

impl Sim {
    fn new(run: &Running) -> Sim {
        Sim {
            job: run.deployed.job.clone(),
            sts: Some(run.deployed.sts.clone()),
            pods: vec![pod(0, 1, true), pod(1, 1, true)],
            config: None,
            token_secret: run.deployed.token_secret.clone(),
            storage_secret: storage_secret(&run.moto),
            writes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Reconciles until `done` holds (at most ten times).
    async fn until(
        &mut self,
        api: &mut ApiServer,
        ctx: &Arc<Context>,
        what: &str,
        done: impl Fn(&Sim) -> bool,
    ) {
        for _ in 0..10 {
            if done(self) {
                return;
            }
            self.reconcile(api, ctx).await;
        }
        assert!(
            done(self),
            "{what}: not after 10 reconciles; writes {:?}\nstatus {}",
            self.writes,
            self.job["status"]
        );
    }
}

/// Worker 0 completes savepoint request `n` (1-based) as snapshot `id`; with `stopped`, the
/// workers then report the job stopped.
fn complete_savepoint(run: &Running, n: usize, id: u64, stopped: bool) -> String {
    let path = put_savepoint(&run.moto, id);
    let mut w = run.worker.state.lock().unwrap();
    let r = &mut w.board[n - 1];
    r["state"] = json!("completed");
    r["snapshotId"] = json!(id);
    r["path"] = json!(path.clone());
    if stopped {
        w.status["phase"] = json!("stopped");
        w.status["stoppedWithSavepoint"] = json!(true);
    }
    path
}

/// A changed `savepointTrigger` takes a savepoint of the running job (no stop, nothing
/// redeployed), recorded in the status' savepoint history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_trigger_takes_a_savepoint_and_records_it() {
    let mut run = running_job().await;
    let mut sim = Sim::new(&run);
    sim.job["spec"]["savepointTrigger"] = json!("2026-12-01-a");
    sim.job["metadata"]["generation"] = json!(2);
    sim.reconcile(&mut run.api, &run.ctx).await;
    assert_eq!(sim.phase(), "Savepointing");
    assert_eq!(
        run.worker.state.lock().unwrap().requested,
        vec![json!({"stop": false})]
    );
    let path = complete_savepoint(&run, 1, 5, false);
    sim.until(&mut run.api, &run.ctx, "savepoint recorded", |s| {
        s.phase() == "Running" && s.job["status"]["lastSavepoint"]["path"] == json!(path)
    })
    .await;
    let history = &sim.job["status"]["savepoints"];
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    // Nothing was stopped or redeployed.
    assert!(
        sim.writes.iter().all(|w| w.ends_with("/status")),
        "{:?}",
        sim.writes
    );
    assert!(sim.events.iter().any(|e| e == "SavepointCompleted"));
    assert_eq!(run.worker.state.lock().unwrap().requested.len(), 1);
}

/// `jobState: suspended` stops with a savepoint and leaves the StatefulSet at zero;
/// `running` again deploys a new deployment restoring that savepoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_keeps_a_savepoint_and_resume_restores_it() {
    let mut run = running_job().await;
    let mut sim = Sim::new(&run);
    sim.job["spec"]["jobState"] = json!("suspended");
    sim.job["metadata"]["generation"] = json!(2);
    sim.reconcile(&mut run.api, &run.ctx).await;
    assert_eq!(sim.phase(), "Suspending");
    assert_eq!(
        run.worker.state.lock().unwrap().requested,
        vec![json!({"stop": true})]
    );
    let savepoint = complete_savepoint(&run, 1, 6, true);
    sim.until(&mut run.api, &run.ctx, "scaled down", |s| {
        s.writes.iter().any(|w| w.ends_with("/scale"))
    })
    .await;
    sim.pods.clear();
    sim.until(&mut run.api, &run.ctx, "suspended", |s| {
        s.phase() == "Suspended"
    })
    .await;
    assert_eq!(sim.sts.as_ref().unwrap()["spec"]["replicas"], 0);
    assert!(sim.config.is_none(), "nothing is deployed while suspended");
    assert_eq!(sim.job["status"]["parallelism"], 0);

    // Resume.
    sim.job["spec"]["jobState"] = json!("running");
    sim.job["metadata"]["generation"] = json!(3);
    {
        let mut w = run.worker.state.lock().unwrap();
        w.status["phase"] = json!("running");
        w.status["stoppedWithSavepoint"] = json!(false);
        w.status["deployment"] = json!(2);
    }
    sim.until(&mut run.api, &run.ctx, "redeployed", |s| s.config.is_some())
        .await;
    let config = sim.config.clone().unwrap();
    assert_eq!(config["data"]["RIVULET_DEPLOYMENT"], "2");
    // The suspend's savepoint, the job's newest snapshot, is restored by name.
    assert_eq!(
        config["data"]["RIVULET_RESTORE"].as_str(),
        Some(savepoint.as_str()),
        "{config}"
    );
    assert_eq!(sim.sts.as_ref().unwrap()["spec"]["replicas"], 2);
    sim.pods = vec![pod(0, 2, true), pod(1, 2, true)];
    sim.until(&mut run.api, &run.ctx, "running again", |s| {
        s.phase() == "Running"
    })
    .await;
}

/// `kubectl scale sj clicks --replicas 3`: a rescale through a savepoint, the new
/// deployment at parallelism 3 restoring it (its key groups redistributed by the workers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescale_goes_through_a_savepoint_to_the_new_parallelism() {
    let mut run = running_job().await;
    let mut sim = Sim::new(&run);
    sim.job["spec"]["parallelism"] = json!(3);
    sim.job["metadata"]["generation"] = json!(2);
    sim.reconcile(&mut run.api, &run.ctx).await;
    assert_eq!(sim.phase(), "Rescaling");
    let savepoint = complete_savepoint(&run, 1, 8, true);
    sim.until(&mut run.api, &run.ctx, "scaled down", |s| {
        s.writes.iter().any(|w| w.ends_with("/scale"))
    })
    .await;
    assert!(sim.config.is_none());
    sim.pods.clear();
    sim.until(&mut run.api, &run.ctx, "redeployed", |s| s.config.is_some())
        .await;
    let config = sim.config.clone().unwrap();
    assert_eq!(config["data"]["RIVULET_PARALLELISM"], "3");
    assert_eq!(config["data"]["RIVULET_RESTORE"], savepoint.as_str());
    assert_eq!(sim.sts.as_ref().unwrap()["spec"]["replicas"], 3);
    sim.pods = (0..3).map(|i| pod(i, 2, true)).collect();
    run.worker.state.lock().unwrap().status["deployment"] = json!(2);
    sim.until(&mut run.api, &run.ctx, "running at 3", |s| {
        s.phase() == "Running" && s.job["status"]["parallelism"] == 3
    })
    .await;
}

/// The autoscaler through the reconciler: two workers busy all the time while the lag
/// grows make it scale up (within the stabilization of a shortened window), carried out as
/// the ordinary rescale (stop-with-savepoint, restore at the new parallelism); its reason
/// and inputs are in status (checked against the CRD's status schema with every patch), its
/// events are published, the decision is counted in the metrics, and the spec's
/// parallelism stays the user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_carries_out_an_autoscaler_decision_and_reports_it() {
    let clock = Arc::new(AtomicI64::new(NOW_MS));
    let mut run = running_job_with_clock(clock.clone()).await;
    let mut sim = Sim::new(&run);
    sim.job["spec"]["autoscaler"] =
        json!({"enabled": true, "metricsWindow": "10s", "stabilization": "10s"});
    sim.job["metadata"]["generation"] = json!(2);
    let partitions: Vec<Value> = (0..4)
        .map(|p| json!({"topic": "clicks", "partition": p, "backlog": "waiting"}))
        .collect();
    // Each worker reads 1000 records/s, busy all the time, and falls 2000/s further behind.
    let (mut records, mut lag) = (100u64, 5i64);
    let mut reconciles = 0;
    while sim.phase() != "Rescaling" {
        assert!(reconciles < 60, "no decision: {}", sim.job["status"]);
        reconciles += 1;
        clock.fetch_add(1_000, Ordering::Relaxed);
        records += 1_000;
        lag += 2_000;
        {
            let mut w = run.worker.state.lock().unwrap();
            w.status["recordsIn"] = json!(records);
            w.status["lag"] = json!(lag);
            w.status["busyRatio"] = json!(1.0);
            w.status["backpressureRatio"] = json!(0.0);
            w.status["partitions"] = json!(partitions);
        }
        sim.reconcile(&mut run.api, &run.ctx).await;
    }
    let a = sim.job["status"]["autoscaler"].clone();
    let d = &a["lastDecision"];
    assert_eq!(d["reason"], "ScaleUp", "{a}");
    // 2000 read + 4000 more arriving per second at 70 %: the 4 partitions' worth.
    assert_eq!(d["target"], 4, "{a}");
    assert_eq!(d["parallelism"], 2, "{a}");
    assert_eq!(d["workerCapacity"], 1000.0, "{a}");
    assert_eq!(d["arrivalRate"], 6000.0, "{a}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("scaling up from 2 workers to 4 workers"),
        "{a}"
    );
    assert_eq!(a["pendingRescale"]["to"], 4, "{a}");
    assert_eq!(a["partitions"], 4, "{a}");
    assert_eq!(sim.job["spec"]["parallelism"], 2, "the spec is the user's");
    for reason in [
        "AutoscalerWarming",
        "AutoscalerScaleUpPending",
        "AutoscalerScaleUp",
    ] {
        assert!(
            sim.events.iter().any(|e| e == reason),
            "{reason}: {:?}",
            sim.events
        );
    }
    let metrics = run.ctx.metrics.encode();
    assert!(
        metrics.contains(
            "rivulet_operator_autoscaler_decisions_total{namespace=\"analytics\",streamjob=\"clicks\",reason=\"ScaleUp\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "rivulet_operator_autoscaler_recommended_parallelism{namespace=\"analytics\",streamjob=\"clicks\"} 4"
        ),
        "{metrics}"
    );

    // The ordinary rescale: stop with a savepoint, then four workers restoring it.
    let savepoint = complete_savepoint(&run, 1, 8, true);
    clock.fetch_add(1_000, Ordering::Relaxed);
    sim.until(&mut run.api, &run.ctx, "scaled down", |s| {
        s.writes.iter().any(|w| w.ends_with("/scale"))
    })
    .await;
    sim.pods.clear();
    clock.fetch_add(1_000, Ordering::Relaxed);
    sim.until(&mut run.api, &run.ctx, "redeployed", |s| s.config.is_some())
        .await;
    let config = sim.config.clone().unwrap();
    assert_eq!(config["data"]["RIVULET_PARALLELISM"], "4");
    assert_eq!(config["data"]["RIVULET_RESTORE"], savepoint.as_str());
    sim.pods = (0..4).map(|i| pod(i, 2, true)).collect();
    {
        let mut w = run.worker.state.lock().unwrap();
        w.status["deployment"] = json!(2);
        w.status["phase"] = json!("running");
        w.status["stoppedWithSavepoint"] = json!(false);
    }
    clock.fetch_add(4_000, Ordering::Relaxed);
    sim.until(&mut run.api, &run.ctx, "running at 4", |s| {
        s.phase() == "Running" && s.job["status"]["parallelism"] == 4
    })
    .await;
    let a = &sim.job["status"]["autoscaler"];
    assert_eq!(a["rescales"], 1, "{a}");
    assert!(a["pendingRescale"].is_null(), "{a}");
    assert_eq!(a["lastRescale"]["from"], 2, "{a}");
    assert_eq!(a["lastRescale"]["to"], 4, "{a}");
    assert!(
        a["lastRescale"]["downtimeMs"].as_i64().unwrap() >= 6_000,
        "{a}"
    );
    assert!(
        sim.events.iter().any(|e| e == "AutoscalerRescaled"),
        "{:?}",
        sim.events
    );
    assert_eq!(sim.job["spec"]["parallelism"], 2);
}

/// An operator restarted at every step of an upgrade (a fresh context each time: no cached
/// token, catalog or counts) carries on from the status: one savepoint asked for, the old
/// workers stopped before anything new, one new deployment restoring that savepoint, and
/// Running on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restarted_at_each_upgrade_step_carries_on_from_the_status() {
    let mut run = running_job().await;
    let (client, port) = (run.client.clone(), run.worker.port);
    let restarted = || context(client.clone(), port);
    let mut sim = Sim::new(&run);
    sim.job["spec"]["pipeline"]["aggregates"] =
        json!([{"name": "n", "fn": "count"}, {"name": "total", "fn": "sum", "field": "amount"}]);
    sim.job["metadata"]["generation"] = json!(2);
    sim.reconcile(&mut run.api, &restarted()).await;
    assert_eq!(sim.phase(), "Upgrading");
    assert_eq!(run.worker.state.lock().unwrap().requested.len(), 1);

    // Restart 1: the savepoint completed and the workers stopped.
    let savepoint = complete_savepoint(&run, 1, 9, true);
    for p in &mut sim.pods {
        p["status"]["conditions"][0]["status"] = json!("False");
    }
    sim.until(&mut run.api, &restarted(), "old workers scaled down", |s| {
        s.writes
            .iter()
            .any(|w| w.ends_with("statefulsets/clicks/scale"))
    })
    .await;
    assert!(sim.config.is_none(), "deployed while the old pods ran");

    // Restart 2: the old pods are gone.
    sim.pods.clear();
    sim.until(&mut run.api, &restarted(), "deployed", |s| {
        s.config.is_some()
    })
    .await;
    let config = sim.config.clone().unwrap();
    assert_eq!(config["data"]["RIVULET_DEPLOYMENT"], "2", "{config}");
    assert_eq!(config["data"]["RIVULET_RESTORE"], savepoint.as_str());

    // Restart 3: the new workers come up.
    sim.pods = vec![pod(0, 2, true), pod(1, 2, true)];
    {
        let mut w = run.worker.state.lock().unwrap();
        w.status["phase"] = json!("running");
        w.status["stoppedWithSavepoint"] = json!(false);
        w.status["deployment"] = json!(2);
    }
    sim.until(&mut run.api, &restarted(), "running", |s| {
        s.phase() == "Running"
    })
    .await;
    assert_eq!(run.worker.state.lock().unwrap().requested.len(), 1);
    let applied = |kind: &str| {
        sim.writes
            .iter()
            .filter(|w| w.ends_with(&format!("{kind}/clicks")))
            .count()
    };
    assert_eq!(applied("configmaps"), 1, "{:?}", sim.writes);
    assert_eq!(applied("statefulsets"), 1, "{:?}", sim.writes);
    assert_eq!(
        sim.job["status"]["deployment"]["id"], 2,
        "{}",
        sim.job["status"]
    );
    assert_eq!(
        sim.job["status"]["lastSavepoint"]["path"],
        json!(savepoint),
        "{}",
        sim.job["status"]
    );
}

/// `upgradeMode: stateless` and `last-state` take no savepoint: the workers are stopped
/// (each takes a final checkpoint on SIGTERM), then the new spec starts with no state, or
/// from the newest checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_and_last_state_upgrades_stop_then_deploy_without_a_savepoint() {
    for (mode, restore) in [("stateless", Some("none")), ("last-state", None)] {
        let mut run = running_job().await;
        let mut sim = Sim::new(&run);
        sim.job["spec"]["upgradeMode"] = json!(mode);
        sim.job["spec"]["pipeline"]["aggregates"] = json!([{"name": "c", "fn": "count"}]);
        sim.job["metadata"]["generation"] = json!(2);
        sim.until(&mut run.api, &run.ctx, "scaled down", |s| {
            s.writes.iter().any(|w| w.ends_with("/scale"))
        })
        .await;
        assert!(
            run.worker.state.lock().unwrap().requested.is_empty(),
            "{mode}: a savepoint was asked for"
        );
        assert!(sim.config.is_none(), "{mode}");
        sim.pods.clear();
        sim.until(&mut run.api, &run.ctx, "redeployed", |s| s.config.is_some())
            .await;
        let config = sim.config.clone().unwrap();
        assert_eq!(config["data"]["RIVULET_DEPLOYMENT"], "2", "{mode}");
        assert_eq!(
            config["data"]["RIVULET_RESTORE"].as_str(),
            restore,
            "{mode}: {config}"
        );
    }
}

/// The reconciler's requests through a deploy, a rescale and a deletion need exactly the
/// permissions `rivulet_operator::rbac` lists for it (and so the chart grants): every
/// request is checked as it comes, and every permission listed is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_uses_exactly_the_permissions_it_is_granted() {
    let mut run = running_job().await;
    // From here on the operator also gives the job a NetworkPolicy (the one permission a
    // default operator does not use).
    run.ctx = Arc::new(
        Context::new(
            run.client.clone(),
            Settings {
                worker_http_port: run.worker.port,
                network_policy: Some(rivulet_operator::settings::NetworkPolicySettings {
                    operator_namespace: "rivulet-system".into(),
                    operator_labels: [("app.kubernetes.io/name".into(), "rivulet".into())].into(),
                    scrape_namespaces: vec![],
                }),
                ..Settings::default()
            },
            Arc::new(Metrics::new()),
        )
        .with_clock(|| NOW_MS),
    );
    let mut sim = Sim::new(&run);
    sim.job["spec"]["parallelism"] = json!(3);
    sim.job["metadata"]["generation"] = json!(2);
    sim.reconcile(&mut run.api, &run.ctx).await;
    complete_savepoint(&run, 1, 8, true);
    sim.until(&mut run.api, &run.ctx, "scaled down", |s| {
        s.writes.iter().any(|w| w.ends_with("/scale"))
    })
    .await;
    sim.pods.clear();
    sim.until(&mut run.api, &run.ctx, "redeployed", |s| s.config.is_some())
        .await;
    // The NetworkPolicy goes with the Service, before any worker starts.
    let applied: Vec<&str> = sim
        .writes
        .iter()
        .filter_map(|w| w.strip_prefix("PATCH "))
        .filter(|w| !w.contains("/streamjobs/") && !w.ends_with("/scale"))
        .collect();
    assert_eq!(
        applied,
        [
            path(CORE, "configmaps/clicks"),
            path(CORE, "services/clicks"),
            path("/apis/networking.k8s.io/v1", "networkpolicies/clicks"),
            path(POLICY, "poddisruptionbudgets/clicks"),
            path(APPS, "statefulsets/clicks"),
        ]
    );
    sim.job["metadata"]["deletionTimestamp"] = json!("2026-12-01T01:00:00Z");
    sim.until(&mut run.api, &run.ctx, "finalizer removed", |s| {
        s.job["metadata"]["finalizers"] == json!([])
    })
    .await;
    let granted = rbac::granted(rivulet_operator::rbac::User::Reconciler);
    let unused: Vec<_> = granted.difference(&run.api.used).collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
}
