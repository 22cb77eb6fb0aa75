//! The workers' HTTP API as the operator calls it: each worker's `/status` (readiness is the
//! pod's Ready condition, from the `/readyz` probe), and worker 0's savepoint board
//! (`GET /savepoints`, `POST /savepoints`) with the job's bearer token. Every call is bounded by a short timeout: a worker that does not answer is
//! observed as not ready, never waited on.

use std::time::Duration;

use rivulet_api::status::{SavepointStatus, WorkerStatus};

/// How long one call to a worker may take.
const TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum WorkerApiError {
    #[error("worker at {base}: {source}")]
    Http {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("worker at {base} answered {status} to {what}: {body}")]
    Refused {
        base: String,
        what: &'static str,
        status: u16,
        body: String,
    },
}

/// A client of the workers' HTTP API.
#[derive(Clone, Debug)]
pub struct WorkerApi {
    http: reqwest::Client,
}

impl Default for WorkerApi {
    fn default() -> Self {
        WorkerApi::new()
    }
}

impl WorkerApi {
    pub fn new() -> WorkerApi {
        WorkerApi {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// `GET /status`, or `None` when the worker does not answer with one.
    pub async fn status(&self, base: &str) -> Option<WorkerStatus> {
        let r = self.http.get(format!("{base}/status")).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        serde_json::from_slice(&r.bytes().await.ok()?).ok()
    }

    /// Worker 0's savepoint requests, oldest first.
    pub async fn savepoints(
        &self,
        base: &str,
        token: &str,
    ) -> Result<Vec<SavepointStatus>, WorkerApiError> {
        let http = |source| WorkerApiError::Http {
            base: base.to_string(),
            source,
        };
        let r = self
            .http
            .get(format!("{base}/savepoints"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(http)?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(http)?;
        if status != 200 {
            return Err(WorkerApiError::Refused {
                base: base.to_string(),
                what: "GET /savepoints",
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| WorkerApiError::Refused {
            base: base.to_string(),
            what: "GET /savepoints",
            status,
            body: format!("not a list of savepoint requests: {e}"),
        })
    }

    /// Asks worker 0 for a savepoint (with `stop`, the job stops once it completes);
    /// returns the request's id.
    pub async fn request_savepoint(
        &self,
        base: &str,
        token: &str,
        stop: bool,
    ) -> Result<u64, WorkerApiError> {
        let http = |source| WorkerApiError::Http {
            base: base.to_string(),
            source,
        };
        let r = self
            .http
            .post(format!("{base}/savepoints"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "stop": stop }).to_string())
            .send()
            .await
            .map_err(http)?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(http)?;
        let refused = |body: String| WorkerApiError::Refused {
            base: base.to_string(),
            what: "POST /savepoints",
            status,
            body,
        };
        if status != 202 {
            return Err(refused(String::from_utf8_lossy(&body).into_owned()));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| refused(e.to_string()))?;
        v["id"]
            .as_u64()
            .ok_or_else(|| refused(format!("no request id in {v}")))
    }
}
