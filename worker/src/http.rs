//! The worker's HTTP endpoints: `/metrics` (Prometheus), `/status` (JSON), `/healthz` and
//! `/readyz` (ready once state is restored and the source is assigned).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::{Metrics, SharedStatus};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
}

pub fn router(metrics: Arc<Metrics>, status: Arc<SharedStatus>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, status })
}

/// Binds `addr` and serves until the runtime shuts down; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(metrics, status);
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
