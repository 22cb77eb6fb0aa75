//! Leader election: two operator instances (`rivulet_operator::run::run`) share one API
//! server. Only the one holding the Lease reconciles (writes anything but the Lease); when
//! it dies without releasing, the other takes the Lease once it expires and carries on.
//!
//! The API server here is a small fake that keeps a Lease with server-side-apply ownership
//! of `spec.holderIdentity` (an apply by another field manager that changes it is a 409
//! conflict, as the real API server answers), one StreamJob, and answers everything else as
//! an empty cluster would; every request is logged with the instance that sent it.

#[path = "common/rbac.rs"]
mod rbac;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use rivulet_operator::metrics::Metrics;
use rivulet_operator::run::{run, Election, RunOptions};
use rivulet_operator::Settings;
use rivulet_tests::Moto;
use serde_json::{json, Map, Value};

const NS: &str = "ops";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/rivulet-operator";

#[derive(Default)]
struct Cluster {
    lease: Option<Map<String, Value>>,
    /// The field manager that owns `spec.holderIdentity`.
    holder_owner: Option<String>,
    version: u64,
    /// (instance, method, path, when) of every request that is not about the Lease.
    log: Vec<(String, String, String, Instant)>,
    storage_secret: Value,
    /// Instances whose requests no longer reach the server (their process is gone).
    dead: Vec<String>,
    /// Instances whose Lease requests fail (503) while the rest of theirs still work.
    lease_cut: Vec<String>,
    /// Every access the instances' requests needed.
    used: BTreeSet<rbac::Access>,
    /// Requests the operator's RBAC would refuse (answered 403).
    forbidden: Vec<String>,
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap_or_default()))
        .expect("a response")
}

fn not_found() -> Response<Body> {
    respond(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn job() -> Value {
    json!({
        "apiVersion": "rivulet.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": "clicks", "namespace": NS, "uid": "u-1", "resourceVersion": "1",
                     "generation": 1, "finalizers": ["rivulet.dev/finalizer"]},
        "spec": {
            "parallelism": 1,
            "pipeline": {
                "source": {"bootstrapServers": "kafka:9092", "topics": ["clicks"]},
                "time": {"type": "processing"},
                "key": ["user"],
                "window": {"type": "tumbling", "size": "10s"},
                "aggregates": [{"name": "n", "fn": "count"}],
                "sink": {"topic": "out"},
            },
            "state": {"storage": "s3://snapshots/rivulet"},
            "credentials": {"storage": {"secretName": "s3"}},
        },
    })
}

impl Cluster {
    fn lease_object(&self) -> Value {
        let mut spec = self.lease.clone().unwrap_or_default();
        spec.retain(|_, v| !v.is_null());
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "rivulet-operator", "namespace": NS,
                         "resourceVersion": self.version.to_string()},
            "spec": spec,
        })
    }

    fn lease(
        &mut self,
        method: &str,
        manager: Option<&str>,
        apply: bool,
        body: &Value,
    ) -> Response<Body> {
        match method {
            "GET" => match self.lease {
                Some(_) => respond(200, &self.lease_object()),
                None => not_found(),
            },
            "POST" => {
                if self.lease.is_some() {
                    return respond(
                        409,
                        &json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "reason": "AlreadyExists", "code": 409}),
                    );
                }
                self.lease = Some(body["spec"].as_object().cloned().unwrap_or_default());
                self.version += 1;
                respond(201, &self.lease_object())
            }
            "PATCH" => {
                let spec = body["spec"].as_object().cloned().unwrap_or_default();
                let current = self.lease.get_or_insert_with(Map::new);
                if let Some(new_holder) = spec.get("holderIdentity") {
                    let held = current
                        .get("holderIdentity")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let owned_by_other = self
                        .holder_owner
                        .as_deref()
                        .is_some_and(|o| Some(o) != manager);
                    if apply && owned_by_other && !held.is_null() && held != *new_holder {
                        return respond(
                            409,
                            &json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "reason": "Conflict", "code": 409,
                            "message": "Apply failed with 1 conflict: spec.holderIdentity"}),
                        );
                    }
                    self.holder_owner = if new_holder.is_null() {
                        None
                    } else {
                        manager.map(str::to_string)
                    };
                }
                for (k, v) in spec {
                    current.insert(k, v);
                }
                self.version += 1;
                respond(200, &self.lease_object())
            }
            _ => respond(405, &json!({})),
        }
    }
}

/// A client for `instance` whose requests all reach `cluster`.
fn client(cluster: Arc<Mutex<Cluster>>, instance: &str) -> Client {
    let instance = instance.to_string();
    let service = tower::service_fn(move |req: Request<Body>| {
        let cluster = cluster.clone();
        let instance = instance.clone();
        async move {
            if cluster.lock().unwrap().dead.contains(&instance) {
                return Err(kube::Error::Service(
                    format!("{instance} is gone: connection refused").into(),
                ));
            }
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let method = parts.method.to_string();
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or("").to_string();
            let manager = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "fieldManager")
                .map(|(_, v)| v.into_owned());
            let apply = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch"));
            let watch = query.contains("watch=true");
            {
                let mut c = cluster.lock().unwrap();
                let access = rbac::needs(&method, &path, watch, apply);
                let refused: Vec<_> = access
                    .iter()
                    .filter(|(g, r, v)| !rivulet_operator::rbac::allowed(g, r, v))
                    .collect();
                if !refused.is_empty() {
                    c.forbidden.push(format!("{method} {path}: {refused:?}"));
                    return Ok(respond(
                        403,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "Forbidden", "code": 403}),
                    ));
                }
                c.used.extend(access);
            }
            if path == LEASE || path == "/apis/coordination.k8s.io/v1/namespaces/ops/leases" {
                let mut c = cluster.lock().unwrap();
                if c.lease_cut.contains(&instance) {
                    return Ok(respond(
                        503,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "ServiceUnavailable", "code": 503,
                                "message": "the server is currently unable to handle the request"}),
                    ));
                }
                return Ok::<_, kube::Error>(c.lease(&method, manager.as_deref(), apply, &body));
            }
            if watch {
                // Nothing changes: hold the watch open a while, then end it.
                tokio::time::sleep(Duration::from_secs(20)).await;
                return Ok(Response::builder()
                    .status(200)
                    .body(Body::from(Vec::new()))
                    .unwrap());
            }
            let mut c = cluster.lock().unwrap();
            c.log.push((
                instance.clone(),
                method.clone(),
                path.clone(),
                Instant::now(),
            ));
            let response = match (method.as_str(), path.as_str()) {
                ("GET", "/apis/rivulet.dev/v1alpha1/streamjobs") => respond(
                    200,
                    &json!({"apiVersion": "rivulet.dev/v1alpha1", "kind": "StreamJobList",
                            "metadata": {"resourceVersion": "1"}, "items": [job()]}),
                ),
                ("GET", "/apis/apps/v1/statefulsets") => respond(
                    200,
                    &json!({"apiVersion": "apps/v1", "kind": "StatefulSetList",
                            "metadata": {"resourceVersion": "1"}, "items": []}),
                ),
                ("GET", p) if p.ends_with("/secrets/s3") => respond(200, &c.storage_secret),
                ("GET", p) if p.ends_with("/pods") => respond(
                    200,
                    &json!({"apiVersion": "v1", "kind": "PodList",
                            "metadata": {"resourceVersion": "1"}, "items": []}),
                ),
                ("GET", _) => not_found(),
                ("PATCH", p) if p.contains("/streamjobs/") => {
                    let mut j = job();
                    if p.ends_with("/status") {
                        j["status"] = body["status"].clone();
                    }
                    respond(200, &j)
                }
                (_, _) => {
                    let mut b = body.clone();
                    b["metadata"]["resourceVersion"] = json!("5");
                    b["metadata"]["uid"] = json!("x");
                    respond(if method == "POST" { 201 } else { 200 }, &b)
                }
            };
            Ok(response)
        }
    });
    Client::new(service, "default")
}

fn options(identity: &str) -> RunOptions {
    RunOptions {
        settings: Settings::default(),
        namespaces: Vec::new(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        election: Some(Election {
            lease_name: "rivulet-operator".into(),
            lease_namespace: NS.into(),
            identity: identity.into(),
            duration_secs: 2,
            grace_secs: 1,
        }),
    }
}

/// The instances that sent writes (anything but a GET) other than to the Lease.
fn writers(cluster: &Mutex<Cluster>) -> Vec<String> {
    let c = cluster.lock().unwrap();
    let mut w: Vec<String> = c
        .log
        .iter()
        .filter(|(_, m, _, _)| m != "GET")
        .map(|(i, _, _, _)| i.clone())
        .collect();
    w.dedup();
    w
}

fn holder(cluster: &Mutex<Cluster>) -> Option<String> {
    cluster
        .lock()
        .unwrap()
        .lease
        .as_ref()
        .and_then(|l| l.get("holderIdentity"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fake cluster, its storage Secret pointing at a real S3 server.
fn cluster() -> (Moto, Arc<Mutex<Cluster>>) {
    let moto = Moto::start().expect("start moto");
    moto.create_bucket("snapshots").unwrap();
    use base64::Engine as _;
    let data: Map<String, Value> = moto
        .s3_env()
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    let cluster = Arc::new(Mutex::new(Cluster {
        storage_secret: json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3", "namespace": NS}, "data": data}),
        ..Cluster::default()
    }));
    (moto, cluster)
}

/// Starts instance `name` of the operator.
fn start(cluster: &Arc<Mutex<Cluster>>, name: &str) -> Instance {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let task = tokio::spawn(run(
        client(cluster.clone(), name),
        options(name),
        metrics.clone(),
        stop_rx,
    ));
    (stop, metrics, task)
}

/// Tells an instance to stop and waits until it has, cleanly.
async fn stopped(
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), rivulet_operator::run::RunError>>,
) {
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the instance stops")
        .unwrap()
        .expect("the instance ran cleanly");
}

type Instance = (
    tokio::sync::watch::Sender<bool>,
    Arc<Metrics>,
    tokio::task::JoinHandle<Result<(), rivulet_operator::run::RunError>>,
);

/// A starts first, takes the Lease and reconciles; B starts and stands by.
async fn a_leads_b_stands_by(cluster: &Arc<Mutex<Cluster>>) -> (Instance, Instance) {
    let a = start(cluster, "a");
    wait("a holds the lease", Duration::from_secs(10), || {
        holder(cluster).as_deref() == Some("a")
    })
    .await;
    let b = start(cluster, "b");
    wait("a reconciles the job", Duration::from_secs(10), || {
        writers(cluster).contains(&"a".to_string())
    })
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_reconciles_and_the_other_takes_over_when_it_dies() {
    let (moto, cluster) = cluster();
    let ((_stop_a, metrics_a, a), (stop_b, metrics_b, b)) = a_leads_b_stands_by(&cluster).await;
    // Several lease periods: a keeps the Lease and is the only one that writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(holder(&cluster).as_deref(), Some("a"));
    assert_eq!(writers(&cluster), ["a"]);
    assert!(metrics_a.encode().contains("rivulet_operator_leader 1"));
    assert!(metrics_b.encode().contains("rivulet_operator_leader 0"));

    // A dies without releasing the Lease (its process is gone: nothing of it reaches the
    // server any more): B takes the Lease once it expires, and reconciles.
    cluster.lock().unwrap().dead.push("a".into());
    a.abort();
    let _ = a.await;
    let died = Instant::now();
    wait("b takes the lease", Duration::from_secs(15), || {
        holder(&cluster).as_deref() == Some("b")
    })
    .await;
    assert!(
        died.elapsed() >= Duration::from_millis(500),
        "the lease changed hands before it expired"
    );
    wait("b reconciles the job", Duration::from_secs(10), || {
        writers(&cluster).ends_with(&["b".to_string()])
    })
    .await;
    assert!(metrics_b.encode().contains("rivulet_operator_leader 1"));

    // B stops on request and releases the Lease.
    stopped(stop_b, b).await;
    assert_eq!(holder(&cluster), None, "the lease was not released");

    // Every request was one the operator's RBAC allows, and the watches and the election
    // used every permission granted for them.
    let c = cluster.lock().unwrap();
    assert!(c.forbidden.is_empty(), "{:#?}", c.forbidden);
    let granted = rbac::granted(rivulet_operator::rbac::User::Runner);
    let unused: Vec<_> = granted.difference(&c.used).collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
    drop(moto);
}

/// A leader that can still reach everything but its Lease (its renewals fail) stops acting
/// before the Lease expires, so the instance that takes it over is never a second leader;
/// once its Lease requests work again it stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_renewals_fail_steps_down_before_another_takes_over() {
    let (moto, cluster) = cluster();
    let ((_stop_a, metrics_a, a), (stop_b, metrics_b, b)) = a_leads_b_stands_by(&cluster).await;

    cluster.lock().unwrap().lease_cut.push("a".into());
    wait("b takes the lease", Duration::from_secs(15), || {
        holder(&cluster).as_deref() == Some("b")
    })
    .await;
    let taken = Instant::now();
    assert!(
        metrics_a.encode().contains("rivulet_operator_leader 0"),
        "a still leads after b took the lease"
    );
    wait("b reconciles the job", Duration::from_secs(10), || {
        writers(&cluster).ends_with(&["b".to_string()])
    })
    .await;
    // A stopped its controllers before b took over: nothing of a's reaches the cluster
    // after that (its reconciles requeue every few seconds while it leads).
    cluster.lock().unwrap().lease_cut.clear();
    tokio::time::sleep(Duration::from_secs(6)).await;
    {
        let c = cluster.lock().unwrap();
        let late: Vec<_> = c
            .log
            .iter()
            .filter(|(i, _, _, at)| i == "a" && *at > taken)
            .map(|(_, m, p, _)| format!("{m} {p}"))
            .collect();
        assert!(late.is_empty(), "a acted after losing the lease: {late:?}");
    }
    assert_eq!(holder(&cluster).as_deref(), Some("b"));
    assert!(metrics_a.encode().contains("rivulet_operator_leader 0"));
    assert!(metrics_b.encode().contains("rivulet_operator_leader 1"));
    stopped(stop_b, b).await;
    a.abort();
    drop(moto);
}
