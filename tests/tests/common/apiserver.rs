//! A Kubernetes API server the test plays by hand: the operator's client sends every request
//! here, the test takes them one by one, asserts each one's method, path, query and body in
//! order, and answers with realistic objects (what the API server would return). A request
//! the test does not expect fails the test; so does one that never comes.
//!
//! Every status the operator writes is checked against the CRD's status schema, strictly
//! (an unknown field fails the test), as the API server would check it.
//!
//! And a worker's HTTP API on loopback that answers as worker 0 does (`/status`,
//! `/savepoints` with its bearer token), so the operator's token and savepoint polling go
//! over real HTTP.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// How long the test waits for the operator's next request.
const NEXT_REQUEST: Duration = Duration::from_secs(10);

type Exchange = (Request<Bytes>, oneshot::Sender<Response<Body>>);

/// The test's side of the API server.
pub struct ApiServer {
    requests: mpsc::UnboundedReceiver<Exchange>,
    /// Every access the operator's requests needed (each one checked against its RBAC).
    pub used: std::collections::BTreeSet<crate::rbac::Access>,
}

/// A client whose every request reaches the returned [`ApiServer`].
pub fn client() -> (Client, ApiServer) {
    let (tx, rx) = mpsc::unbounded_channel::<Exchange>();
    let service = tower::service_fn(move |req: Request<Body>| {
        let tx = tx.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            let (answer, answered) = oneshot::channel();
            tx.send((Request::from_parts(parts, bytes), answer))
                .map_err(|_| kube::Error::Service("the test's API server is gone".into()))?;
            answered
                .await
                .map_err(|_| kube::Error::Service("the test did not answer".into()))
        }
    });
    (
        Client::new(service, "default"),
        ApiServer {
            requests: rx,
            used: Default::default(),
        },
    )
}

/// One request the test has taken and not answered yet.
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    answer: oneshot::Sender<Response<Body>>,
}

impl Call {
    /// Answers with `status` and the JSON `body`.
    pub fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
            .expect("a response");
        let _ = self.answer.send(response);
    }

    /// Answers 200 with `body`.
    pub fn ok(self, body: Value) {
        self.respond(200, body);
    }

    /// Answers 404 with the API server's Status for `kind` `name`.
    pub fn not_found(self, kind: &str, name: &str) {
        self.respond(
            404,
            status_body(404, "NotFound", &format!("{kind} \"{name}\" not found")),
        );
    }

    /// Answers the apply of an object with the object as stored (the body plus metadata
    /// the server fills in).
    pub fn applied(self) {
        let mut object = self.body.clone();
        stored(&mut object);
        self.ok(object);
    }
}

/// An API server `Status` body.
pub fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// Fills in what the API server adds to a stored object.
pub fn stored(object: &mut Value) {
    let meta = &mut object["metadata"];
    if meta["uid"].is_null() {
        meta["uid"] = json!("00000000-0000-4000-8000-00000000beef");
    }
    meta["resourceVersion"] = json!("100");
    if meta["creationTimestamp"].is_null() {
        meta["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
    }
}

impl ApiServer {
    /// Takes the next request; fails unless it is `method` on `path` (query left to the
    /// caller).
    pub async fn next(&mut self, method: &str, path: &str) -> Call {
        let (req, answer) = match tokio::time::timeout(NEXT_REQUEST, self.requests.recv()).await {
            Ok(Some(x)) => x,
            Ok(None) => panic!("expected {method} {path}: the client is gone"),
            Err(_) => panic!("expected {method} {path}: no request within {NEXT_REQUEST:?}"),
        };
        self.permitted(&req);
        let call_method = req.method().to_string();
        let call_path = req.uri().path().to_string();
        let query = query_of(req.uri());
        let body = if req.body().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(req.body())
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(req.body()).into_owned()))
        };
        assert_eq!(
            (call_method.as_str(), call_path.as_str()),
            (method, path),
            "unexpected request (query {query:?}, body {body})"
        );
        check_status_write(&call_method, &call_path, &body);
        Call {
            method: call_method,
            path: call_path,
            query,
            body,
            answer,
        }
    }

    /// Takes the next request, a server-side apply by the operator's field manager.
    pub async fn apply(&mut self, path: &str) -> Call {
        let call = self.next("PATCH", path).await;
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some("rivulet-operator"),
            "{path}: {:?}",
            call.query
        );
        assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
        call
    }

    /// Answers every event the operator publishes now (new ones, and repeats that patch an
    /// event's series), returning their reasons; stops at
    /// the first request that is not an event (returned too, unanswered), or when none comes
    /// within `quiet`.
    pub async fn events(
        &mut self,
        namespace: &str,
        quiet: Duration,
    ) -> (Vec<String>, Option<Call>) {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let mut reasons = Vec::new();
        loop {
            let (req, answer) = match tokio::time::timeout(quiet, self.requests.recv()).await {
                Ok(Some(x)) => x,
                _ => return (reasons, None),
            };
            self.permitted(&req);
            let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
            // A new event, or a repeat of one (its series is patched).
            let event = (req.method() == "POST" && req.uri().path() == path)
                || (req.method() == "PATCH" && req.uri().path().starts_with(&format!("{path}/")));
            if event {
                reasons.push(body["reason"].as_str().unwrap_or_default().to_string());
                let mut stored_event = body.clone();
                stored(&mut stored_event);
                let _ = answer.send(
                    Response::builder()
                        .status(201)
                        .body(Body::from(serde_json::to_vec(&stored_event).unwrap()))
                        .unwrap(),
                );
                continue;
            }
            let query = query_of(req.uri());
            check_status_write(req.method().as_str(), req.uri().path(), &body);
            return (
                reasons,
                Some(Call {
                    method: req.method().to_string(),
                    path: req.uri().path().to_string(),
                    query,
                    body,
                    answer,
                }),
            );
        }
    }

    /// Fails the test unless the operator's RBAC allows `req`; records what it needed.
    fn permitted(&mut self, req: &Request<Bytes>) {
        let apply = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/apply-patch"));
        let watch = query_of(req.uri()).get("watch").map(String::as_str) == Some("true");
        let access = crate::rbac::needs(req.method().as_str(), req.uri().path(), watch, apply);
        crate::rbac::check(&access, &format!("{} {}", req.method(), req.uri()));
        self.used.extend(access);
    }

    /// Fails if the operator sends anything within `quiet`.
    pub async fn nothing_within(&mut self, quiet: Duration) {
        if let Ok(Some((req, _))) = tokio::time::timeout(quiet, self.requests.recv()).await {
            panic!(
                "unexpected request {} {}: {}",
                req.method(),
                req.uri(),
                String::from_utf8_lossy(req.body())
            );
        }
    }
}

/// Fails the test when `body` writes a StreamJob status the CRD's schema refuses.
fn check_status_write(method: &str, path: &str, body: &Value) {
    static STATUS: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let is_status = path.starts_with("/apis/rivulet.dev/") && path.ends_with("/status");
    if method != "PATCH" || !is_status {
        return;
    }
    let validator = STATUS.get_or_init(|| {
        jsonschema::validator_for(&rivulet_api::job::strict_schema()["properties"]["status"])
            .expect("the status schema compiles")
    });
    assert_eq!(
        body["apiVersion"],
        json!(rivulet_api::job::API_VERSION),
        "{body}"
    );
    assert_eq!(body["kind"], json!(rivulet_api::job::KIND), "{body}");
    let errors: Vec<String> = validator
        .iter_errors(&body["status"])
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the status written to {path} breaks the CRD's schema: {errors:#?}\n{body:#}"
    );
}

/// A request's query parameters, decoded.
fn query_of(uri: &http::Uri) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What the fake worker 0 answers and what it was asked.
#[derive(Debug, Default)]
pub struct WorkerState {
    /// `GET /status`.
    pub status: Value,
    /// `GET /savepoints`.
    pub board: Vec<Value>,
    /// Bodies of `POST /savepoints`.
    pub requested: Vec<Value>,
    /// Requests refused for a missing or wrong token.
    pub refused: u32,
    /// The bearer token the control API requires.
    pub token: String,
}

/// A worker's HTTP API on a loopback port, answering as worker 0 does, with a bearer token.
pub struct FakeWorker {
    pub port: u16,
    pub state: Arc<Mutex<WorkerState>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeWorker {
    pub async fn start(token: &str) -> FakeWorker {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        type Shared = Arc<Mutex<WorkerState>>;
        fn authorized(headers: &HeaderMap, s: &WorkerState) -> bool {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                == Some(s.token.as_str())
        }
        let state = Arc::new(Mutex::new(WorkerState {
            token: token.to_string(),
            ..WorkerState::default()
        }));
        let shared: Shared = state.clone();
        let app = axum::Router::new()
            .route(
                "/status",
                get(|State(s): State<Shared>| async move {
                    axum::Json(s.lock().unwrap().status.clone())
                }),
            )
            .route(
                "/savepoints",
                get(|State(s): State<Shared>, headers: HeaderMap| async move {
                    let mut s = s.lock().unwrap();
                    if !authorized(&headers, &s) {
                        s.refused += 1;
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                    }
                    (StatusCode::OK, axum::Json(json!(s.board)))
                })
                .post(
                    |State(s): State<Shared>, headers: HeaderMap, body: String| async move {
                        let mut s = s.lock().unwrap();
                        if !authorized(&headers, &s) {
                            s.refused += 1;
                            return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                        }
                        let req: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        let id = s.board.len() as u64 + 1;
                        s.board.push(json!({
                            "id": id,
                            "state": "pending",
                            "stop": req["stop"].as_bool().unwrap_or(false),
                            "requestedAtMs": 0,
                        }));
                        s.requested.push(req.clone());
                        (
                            StatusCode::ACCEPTED,
                            axum::Json(json!({ "id": id, "stop": req["stop"] })),
                        )
                    },
                ),
            )
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        FakeWorker {
            port,
            state,
            stop: Some(stop),
        }
    }
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
