//! The admin listener: `/healthz`, `/readyz` and `/metrics` as every Berth service has them
//! (berth-common's admin routes), plus the control API berthd uses: `GET /v1/routes` and
//! `PUT /v1/routes` (docs/ops/berth-router.md is the contract).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use berth_common::admin::AdminState;
use berth_common::admin::{json_error as error, json_response as json};
use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::OperatorTokens;

use crate::table::{Replaced, RouteTable, Routes, TableError};

/// What the admin listener serves.
#[derive(Clone)]
pub struct Admin {
    /// The route table.
    pub routes: Arc<Routes>,
    /// Compiles pushed tables (owns the registry, stats and config it needs).
    pub compile: Arc<dyn Fn(RouteTable) -> Result<crate::table::Table, TableError> + Send + Sync>,
    /// Writes the metrics.
    pub metrics: Arc<dyn Fn(&mut String) + Send + Sync>,
    /// `/readyz` state.
    pub ready: Arc<AtomicBool>,
    /// Tokens allowed to push and read the table.
    pub control: Arc<OperatorTokens>,
    /// Tokens allowed to read metrics and the table.
    pub operators: Arc<OperatorTokens>,
    /// Called after a table was applied (metrics).
    pub on_applied: Arc<dyn Fn(u64) + Send + Sync>,
    /// Called after a table was refused (metrics).
    pub on_refused: Arc<dyn Fn() + Send + Sync>,
}

/// Serves the admin listener until `shutdown` (open requests get a few seconds).
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: Admin,
    max_table_bytes: usize,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let common = berth_common::admin::routes(AdminState {
        metrics: admin.metrics.clone(),
        ready: admin.ready.clone(),
        // The router is fed by berthd, not a tenants follower: its configured tokens only.
        // When they are set, a control token (berthd's, which may rewrite the table) may
        // read the metrics too: berthd's dashboard shows each app's request rates from them.
        operators: Arc::new(berth_common::tenants::Operators::fixed(
            if admin.operators.is_empty() {
                OperatorTokens::default()
            } else {
                OperatorTokens::from_hex_hashes(
                    &[admin.operators.hex_hashes(), admin.control.hex_hashes()].concat(),
                )
                .unwrap_or_else(|_| (*admin.operators).clone())
            },
        )),
    });
    let app = Router::new()
        .route("/v1/routes", get(get_routes).put(put_routes))
        .layer(DefaultBodyLimit::max(max_table_bytes))
        .with_state(admin)
        .merge(common);
    berth_common::admin::serve_app(listener, app, shutdown).await
}

/// `None` when one of `lists` accepts the request's token; else the refusal.
fn authorize(headers: &HeaderMap, lists: &[&OperatorTokens], what: &str) -> Option<Response> {
    if lists.iter().all(|l| l.is_empty()) {
        return Some(error(
            StatusCode::FORBIDDEN,
            &format!("{what} is disabled: the router's config lists no control_tokens"),
        ));
    }
    match berth_common::admin::bearer_token(headers) {
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                &format!("{what} needs Authorization: Bearer <control token>"),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(r)
        }
        Some(t) if lists.iter().any(|l| l.verify(t)) => None,
        Some(_) => Some(error(StatusCode::FORBIDDEN, "token not accepted")),
    }
}

async fn get_routes(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if let Some(refusal) = authorize(&headers, &[&a.control, &a.operators], "GET /v1/routes") {
        return refusal;
    }
    let table = a.routes.load();
    match serde_json::to_value(table.source.redacted()) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn put_routes(State(a): State<Admin>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = authorize(&headers, &[&a.control], "PUT /v1/routes") {
        return refusal;
    }
    let admin = a.clone();
    let res = tokio::task::spawn_blocking(move || {
        let table: RouteTable = serde_json::from_slice(&body)?;
        let apps = table.apps.len();
        let generation = table.generation;
        let compiled = (admin.compile)(table)?;
        admin
            .routes
            .replace(compiled)
            .map(|r| (r, generation, apps))
    })
    .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match res {
        Ok((replaced, generation, apps)) => {
            let applied = replaced == Replaced::Applied;
            if applied {
                (a.on_applied)(generation);
                tracing::info!(generation, apps, "route table applied");
            }
            json(
                StatusCode::OK,
                &serde_json::json!({"generation": generation, "applied": applied, "apps": apps}),
            )
        }
        Err(e) => {
            (a.on_refused)();
            tracing::warn!(error = %e, "route table refused");
            let current = a.routes.load().source.generation;
            let status = match &e {
                TableError::Json(_) | TableError::Invalid(_) => StatusCode::BAD_REQUEST,
                TableError::Stale { .. } => StatusCode::CONFLICT,
                TableError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json(
                status,
                &serde_json::json!({"error": e.to_string(), "generation": current}),
            )
        }
    }
}
