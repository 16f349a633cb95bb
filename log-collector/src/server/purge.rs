//! The admin listener's own endpoint besides berth-common's `/healthz`, `/readyz` and
//! `/metrics`: `DELETE /v1/apps/{app}/data`, which berthd calls when an app is destroyed to
//! remove the app's stored events (docs/ops/log-collector.md, "Admin endpoints").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::delete;
use axum::Router;
use berth_common::admin::{json_error, json_response, require_operator};
use berth_common::tenants::AppName;

use super::Shared;

/// Purges completed since start (for `/metrics`).
pub static PURGES: AtomicU64 = AtomicU64::new(0);

/// The log collector's admin routes beyond berth-common's.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/apps/:app/data", delete(purge))
        .with_state(shared)
}

async fn purge(
    State(s): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = require_operator(&headers, &s.operators, "purging") {
        return refusal;
    }
    // Events without tenants are stored under the default app name, which is valid too.
    if AppName::parse(&app).is_err() {
        return json_error(StatusCode::BAD_REQUEST, "invalid app name");
    }
    let store = s.store.clone();
    let name = app.clone();
    match tokio::task::spawn_blocking(move || store.purge(&name)).await {
        Ok(Ok(r)) => {
            PURGES.fetch_add(1, Ordering::Relaxed);
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "app": app,
                    "purged": true,
                    "segments": r.segments,
                    "objects": r.segments,
                    "bytes": r.bytes,
                }),
            )
        }
        Ok(Err(e)) => {
            tracing::error!(app, error = %e, "purge failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("purge interrupted, retry it: {e}"),
            )
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
