//! The admin listener: `/healthz`, `/readyz` and `/metrics` as every Berth service has them
//! (berth-common's metrics writer and token check), plus the control API berthd uses:
//! `GET /v1/routes` and `PUT /v1/routes` (docs/ops/berth-router.md is the contract).
//!
//! berth-common's `admin::serve` has a fixed set of routes, so the router serves the same
//! three on its own axum router beside the control API.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_common::admin::METRICS_CONTENT_TYPE;
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
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/routes", get(get_routes).put(put_routes))
        .layer(DefaultBodyLimit::max(max_table_bytes))
        .with_state(admin);
    let mut graceful = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { graceful.recv().await });
    let mut deadline = shutdown;
    tokio::select! {
        res = server => res,
        _ = async { deadline.recv().await; tokio::time::sleep(Duration::from_secs(5)).await } => Ok(()),
    }
}

async fn readyz(State(a): State<Admin>) -> Response {
    if a.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, msg: &str) -> Response {
    json(status, &serde_json::json!({ "error": msg }))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `None` when one of `lists` accepts the request's token; else the refusal.
fn authorize(headers: &HeaderMap, lists: &[&OperatorTokens], what: &str) -> Option<Response> {
    if lists.iter().all(|l| l.is_empty()) {
        return Some(error(
            StatusCode::FORBIDDEN,
            &format!("{what} is disabled: the router's config lists no control_tokens"),
        ));
    }
    match bearer(headers) {
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

async fn metrics(State(a): State<Admin>, headers: HeaderMap) -> Response {
    if !a.operators.is_empty() {
        if let Some(refusal) = authorize(&headers, &[&a.operators], "/metrics") {
            return refusal;
        }
    }
    let mut body = String::new();
    (a.metrics)(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
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
