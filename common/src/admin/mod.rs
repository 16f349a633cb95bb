//! The admin HTTP endpoint every service runs on its own (loopback) port: `/healthz`,
//! `/readyz`, and `/metrics` behind an operator token.

mod metrics;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub use metrics::{MetricKind, MetricsWriter};

use crate::shutdown::ShutdownSignal;
use crate::tenants::Operators;

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// How long admin connections may take to finish after shutdown before `serve` returns anyway.
const ADMIN_DRAIN: Duration = Duration::from_secs(5);

/// What the admin endpoint reports.
#[derive(Clone)]
pub struct AdminState {
    /// Appends the service's metrics in the text exposition format (see [`MetricsWriter`]).
    pub metrics: Arc<dyn Fn(&mut String) + Send + Sync>,
    /// `/readyz` answers 200 while true, 503 while false (starting up, draining).
    pub ready: Arc<AtomicBool>,
    /// Tokens accepted for `/metrics`; when empty, `/metrics` is open (loopback-only setups).
    pub operators: Arc<Operators>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .field("operators", &self.operators.len())
            .finish_non_exhaustive()
    }
}

/// Serves the admin endpoint on `listener` until `shutdown`, then lets open requests finish
/// (for at most a few seconds) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: ShutdownSignal,
) -> io::Result<()> {
    serve_app(listener, routes(state), shutdown).await
}

/// `/healthz`, `/readyz` and `/metrics` over `state`, for a service that serves more on its
/// admin listener: merge its own routes in and pass the result to [`serve_app`].
pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (for at most a
/// few seconds: a stuck client must not hold the process up) and returns.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: ShutdownSignal,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "admin endpoint listening");
    }
    let mut graceful = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { graceful.recv().await });
    let mut deadline = shutdown;
    // hyper's graceful shutdown waits for every open connection.
    tokio::select! {
        res = server => res,
        _ = async { deadline.recv().await; tokio::time::sleep(ADMIN_DRAIN).await } => {
            tracing::warn!("admin connections still open after the drain timeout, closing");
            Ok(())
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !state.operators.is_empty() {
        match bearer_token(&headers) {
            None => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
                    "operator token required\n",
                )
                    .into_response();
            }
            Some(token) if !state.operators.verify(token) => {
                return (StatusCode::FORBIDDEN, "operator token not accepted\n").into_response();
            }
            Some(_) => {}
        }
    }
    let mut body = String::new();
    (state.metrics)(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON answer (one line, `application/json`) for admin endpoints.
pub fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
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

/// `{"error": msg}` with `status`.
pub fn json_error(status: StatusCode, msg: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": msg }))
}

/// For admin actions that change data (e.g. a purge): `None` when the request carries one
/// of `operators`; else the refusal: 401 without a token, 403 with another, and 403 when no
/// operator token is configured at all (`what` says which action is then disabled).
pub fn require_operator(
    headers: &HeaderMap,
    operators: &Operators,
    what: &str,
) -> Option<Response> {
    if operators.is_empty() {
        return Some(json_error(
            StatusCode::FORBIDDEN,
            &format!("{what} is disabled: the config lists no operator_tokens"),
        ));
    }
    match bearer_token(headers) {
        None => {
            let mut r = json_error(
                StatusCode::UNAUTHORIZED,
                "operator token required: Authorization: Bearer <operator token>",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(r)
        }
        Some(t) if operators.verify(t) => None,
        Some(_) => Some(json_error(
            StatusCode::FORBIDDEN,
            "operator token not accepted",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic YTpi")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
