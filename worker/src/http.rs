//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/status` (JSON), `/healthz` and
//! `/readyz` (ready once state is restored and the source is assigned), and on worker 0 the
//! control API: `POST /savepoints` (`{"stop": true}` for stop-with-savepoint),
//! `GET /savepoints/{id}` and `GET /savepoints` (every request, oldest first). When a control token is set, the control API requires it as a
//! bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::metrics::{Metrics, SharedStatus};
use crate::savepoints::SavepointBoard;

/// The control API of worker 0 (other workers answer it with 409).
#[derive(Clone)]
pub struct ControlApi {
    pub board: Arc<SavepointBoard>,
    /// Bearer token the control API requires, if any.
    pub token: Option<String>,
    pub coordinator: bool,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    control: ControlApi,
}

pub fn router(metrics: Arc<Metrics>, status: Arc<SharedStatus>, control: ControlApi) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .route("/savepoints", post(post_savepoint).get(list_savepoints))
        .route("/savepoints/{id}", get(get_savepoint))
        .with_state(AppState {
            metrics,
            status,
            control,
        })
}

fn error(code: StatusCode, message: &str) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `None` when the request may use the control API, else the response refusing it.
fn refuse(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    if let Some(token) = &s.control.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Some(error(
                StatusCode::UNAUTHORIZED,
                "the control API needs the job's bearer token",
            ));
        }
    }
    if !s.control.coordinator {
        return Some(error(
            StatusCode::CONFLICT,
            "savepoints are coordinated by worker 0; ask it",
        ));
    }
    None
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct SavepointRequest {
    stop: bool,
}

async fn post_savepoint(State(s): State<AppState>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let req: SavepointRequest = if body.trim().is_empty() {
        SavepointRequest::default()
    } else {
        match serde_json::from_str(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("body: {e} (expected {{\"stop\": true|false}})"),
                )
            }
        }
    };
    let id = s.control.board.request(req.stop, crate::runtime::now_ms());
    tracing::info!(request = id, stop = req.stop, "savepoint requested");
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "stop": req.stop })),
    )
        .into_response()
}

async fn list_savepoints(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    Json(s.control.board.all()).into_response()
}

async fn get_savepoint(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refuse(&s, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "a savepoint id is a number");
    };
    match s.control.board.answer(id) {
        Some(status) => Json(status).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such savepoint request"),
    }
}

/// Binds `addr` and serves until the runtime shuts down; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    control: ControlApi,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(metrics, status, control);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    Ok(bound)
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

async fn status_handler(State(s): State<AppState>) -> impl IntoResponse {
    Json(s.status.get())
}

async fn ready_handler(State(s): State<AppState>) -> impl IntoResponse {
    if s.status.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
