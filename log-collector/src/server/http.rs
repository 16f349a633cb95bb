//! The HTTP read API: `GET /v1/apps/{app}/events` (query, paginated by cursor),
//! `GET /v1/apps/{app}/tail` (server-sent events from a cursor), `GET /v1/apps` (operators).
//! `Authorization: Bearer <token>`: an app token reads its own app, an operator token any.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_common::config::HumanDuration;
use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::AppName;
use tokio::sync::watch;

use super::Shared;
use crate::protocol::parse_level;
use crate::protocol::time::{now_nanos, parse_rfc3339};
use crate::store::read::{self, Filter, Found, Order, Query};
use crate::store::AppShared;

/// Events a tail reads per store round trip.
const TAIL_CHUNK: usize = 500;
/// How long open HTTP connections (tails) get after shutdown.
const DRAIN: Duration = Duration::from_secs(3);

/// Serves the API until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/apps", get(list_apps))
        .route("/v1/apps/:app/events", get(events))
        .route("/v1/apps/:app/tail", get(tail))
        .with_state(shared);
    let mut graceful = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { graceful.recv().await });
    let mut deadline = shutdown;
    tokio::select! {
        res = server => res,
        _ = async { deadline.recv().await; tokio::time::sleep(DRAIN).await } => Ok(()),
    }
}

#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.1 }).to_string();
        (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

fn open_reads(s: &Shared) -> bool {
    s.tenants.is_none() && s.operators.is_empty()
}

/// Whether the request may read `app` (a valid app name).
fn authorize(s: &Shared, headers: &HeaderMap, app: &str) -> Result<(), ApiError> {
    if open_reads(s) {
        return Ok(());
    }
    let Some(token) = bearer(headers) else {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "authentication required: Authorization: Bearer <app or operator token>".into(),
        ));
    };
    if s.operators.verify(token) {
        return Ok(());
    }
    if let Some(t) = &s.tenants {
        if t.current().authenticate(app, token).is_some() {
            return Ok(());
        }
    }
    // The same answer whether or not the app exists.
    Err(ApiError(
        StatusCode::FORBIDDEN,
        "this token may not read this app's logs".into(),
    ))
}

fn app_name(app: &str) -> Result<String, ApiError> {
    AppName::parse(app)
        .map(|n| n.as_str().to_owned())
        .map_err(|_| bad("invalid app name"))
}

/// Query parameters.
#[derive(Debug, Default)]
struct Params {
    filter: Filter,
    order: Order,
    cursor: Option<u64>,
    limit: Option<usize>,
}

/// A time: RFC 3339, Unix seconds, or a duration meaning that long ago (`10m`).
fn parse_time(s: &str, now: i64) -> Option<i64> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some(crate::protocol::time::secs_to_nanos(secs));
    }
    let d: HumanDuration = s.parse().ok()?;
    Some(now.saturating_sub(i64::try_from(d.0.as_nanos()).unwrap_or(i64::MAX)))
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_params(q: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    let now = now_nanos();
    for pair in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(v);
        match k {
            "since" => {
                p.filter.since =
                    Some(parse_time(&v, now).ok_or_else(|| bad(format!("bad since: {v:?}")))?)
            }
            "until" => {
                p.filter.until =
                    Some(parse_time(&v, now).ok_or_else(|| bad(format!("bad until: {v:?}")))?)
            }
            "level" => {
                p.filter.max_severity =
                    Some(parse_level(&v).ok_or_else(|| bad(format!("unknown level {v:?}")))?)
            }
            "logger" if !v.is_empty() => p.filter.logger = Some(v),
            "grep" | "q" if !v.is_empty() => p.filter.grep = Some(v),
            "order" => {
                p.order = match v.as_str() {
                    "asc" | "oldest" => Order::Asc,
                    "desc" | "newest" => Order::Desc,
                    _ => return Err(bad("order must be asc or desc")),
                }
            }
            "cursor" => p.cursor = Some(v.parse().map_err(|_| bad("cursor must be a number"))?),
            "limit" => p.limit = Some(v.parse().map_err(|_| bad("limit must be a number"))?),
            _ => return Err(bad(format!("unknown parameter {k:?}"))),
        }
    }
    Ok(p)
}

async fn list_apps(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !open_reads(&s) && !bearer(&headers).is_some_and(|t| s.operators.verify(t)) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "listing apps needs an operator token".into(),
        ));
    }
    let apps: Vec<_> = s
        .store
        .apps()
        .into_iter()
        .map(|(name, a)| {
            serde_json::json!({
                "app": name,
                "last_seq": *a.durable.borrow(),
                "disk_bytes": a.disk_bytes.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    Ok(json_response(
        serde_json::json!({ "apps": apps }).to_string().into_bytes(),
    ))
}

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn events(
    State(s): State<Arc<Shared>>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = app_name(&app)?;
    authorize(&s, &headers, &app)?;
    let p = parse_params(q.as_deref())?;
    let limit = p.limit.unwrap_or(100).clamp(1, s.cfg.max_page_events);
    let query = Query {
        filter: p.filter,
        order: p.order,
        cursor: p.cursor,
        limit,
        max_scan_bytes: s.cfg.max_scan_bytes.0,
    };
    let shared = s.store.app(&app);
    let last_seq = *shared.durable.borrow();
    let page = tokio::task::spawn_blocking(move || read::query(&shared, &query))
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "query failed".into()))?
        .map_err(|e| {
            tracing::error!(app, error = %e, "query failed");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, "query failed".into())
        })?;
    let mut body = Vec::with_capacity(page.events.iter().map(|e| e.payload.len() + 64).sum());
    body.extend_from_slice(b"{\"app\":");
    body.extend_from_slice(serde_json::to_string(&app).unwrap_or_default().as_bytes());
    body.extend_from_slice(b",\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.to_json());
    }
    body.extend_from_slice(b"],\"cursor\":");
    match page.cursor {
        Some(c) => body.extend_from_slice(c.to_string().as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(format!(",\"more\":{},\"last_seq\":{last_seq}}}", page.more).as_bytes());
    Ok(json_response(body))
}

struct TailState {
    app: Arc<AppShared>,
    rx: watch::Receiver<u64>,
    cursor: u64,
    filter: Filter,
    pending: VecDeque<Found>,
    shutdown: ShutdownSignal,
}

async fn tail(
    State(s): State<Arc<Shared>>,
    Path(app): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let app = app_name(&app)?;
    authorize(&s, &headers, &app)?;
    let p = parse_params(q.as_deref())?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let shared = s.store.app(&app);
    let rx = shared.durable.subscribe();
    let cursor = last_event_id
        .or(p.cursor)
        .unwrap_or_else(|| *shared.durable.borrow());
    let st = TailState {
        app: shared,
        rx,
        cursor,
        filter: p.filter,
        pending: VecDeque::new(),
        shutdown: s.shutdown_signal(),
    };
    let stream = futures_util::stream::unfold(st, next_tail_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn next_tail_event(mut st: TailState) -> Option<(Result<SseEvent, Infallible>, TailState)> {
    loop {
        if let Some(f) = st.pending.pop_front() {
            let data = String::from_utf8_lossy(&f.to_json()).into_owned();
            let ev = SseEvent::default()
                .id(f.seq.to_string())
                .event("log")
                .data(data);
            return Some((Ok(ev), st));
        }
        let durable = *st.rx.borrow_and_update();
        // The app was purged: its log is gone, and so is this tail.
        if st.app.is_purged() {
            return None;
        }
        if durable > st.cursor {
            let query = Query {
                filter: st.filter.clone(),
                order: Order::Asc,
                cursor: Some(st.cursor),
                limit: TAIL_CHUNK,
                max_scan_bytes: 8 << 20,
            };
            let app = st.app.clone();
            let page = tokio::task::spawn_blocking(move || read::query(&app, &query))
                .await
                .ok()?
                .ok()?;
            let next = page.cursor.unwrap_or(durable);
            // Nothing examined means the events before `durable` are gone (retention):
            // continue after them rather than spin.
            st.cursor = if next > st.cursor { next } else { durable };
            st.pending.extend(page.events);
            continue;
        }
        tokio::select! {
            r = st.rx.changed() => if r.is_err() { return None },
            _ = st.shutdown.recv() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        let p = parse_params(Some(
            "since=10m&level=error&logger=app.db&grep=time%20out&order=desc&cursor=5&limit=7",
        ))
        .unwrap();
        let now = now_nanos();
        let since = p.filter.since.unwrap();
        assert!(since < now - 590_000_000_000 && since > now - 610_000_000_000);
        assert_eq!(p.filter.max_severity, Some(3));
        assert_eq!(p.filter.grep.as_deref(), Some("time out"));
        assert_eq!(p.order, Order::Desc);
        assert_eq!((p.cursor, p.limit), (Some(5), Some(7)));
        let p = parse_params(Some("since=2026-01-01T00:00:00Z&until=1700000000")).unwrap();
        assert_eq!(p.filter.until, Some(1_700_000_000_000_000_000));
        assert!(parse_params(Some("bogus=1")).is_err());
        assert!(parse_params(Some("level=loud")).is_err());
    }
}
