//! The admin listener's own endpoint besides berth-common's `/healthz`, `/readyz` and
//! `/metrics`: `DELETE /v1/apps/{app}/data`, which berthd calls when an app is destroyed to
//! remove everything the app stored (docs/ops/blob-server.md, "Admin endpoints").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::delete;
use axum::Router;
use berth_common::admin::{json_error, json_response, require_operator};
use berth_common::tenants::{AppName, Operators};

use crate::http::DEV_APP;
use crate::store::{blocking, Store};

/// What the purge endpoint needs.
#[derive(Clone)]
pub struct PurgeState {
    /// The store to purge from.
    pub store: Store,
    /// Tokens allowed to purge (the config's `operator_tokens` and those that come with the
    /// tenants); when none, purging is off.
    pub operators: Arc<Operators>,
    /// The server runs without tenants: the development namespace may be purged too.
    pub dev: bool,
    /// Purges completed (for `/metrics`).
    pub purges: Arc<AtomicU64>,
}

/// The admin routes of the blob server beyond berth-common's: merge with
/// `berth_common::admin::routes` and serve with `berth_common::admin::serve_app`.
pub fn routes(state: PurgeState) -> Router {
    Router::new()
        .route("/v1/apps/:app/data", delete(purge))
        .with_state(state)
}

async fn purge(
    State(s): State<PurgeState>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = require_operator(&headers, &s.operators, "purging") {
        return refusal;
    }
    if AppName::parse(&app).is_err() && !(s.dev && app == DEV_APP) {
        return json_error(StatusCode::BAD_REQUEST, "invalid app name");
    }
    let store = s.store.clone();
    let name = app.clone();
    match blocking(move || store.purge_app(&name)).await {
        Ok(r) => {
            s.purges.fetch_add(1, Ordering::Relaxed);
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "app": app,
                    "purged": true,
                    "objects": r.objects(),
                    "bytes": r.bytes,
                    "keys": r.keys,
                    "blobs": r.blobs,
                }),
            )
        }
        Err(e) => {
            tracing::error!(app, error = %e, "purge failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("purge interrupted, retry it: {e}"),
            )
        }
    }
}
