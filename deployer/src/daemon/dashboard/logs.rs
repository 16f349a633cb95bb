//! Logs: the page (the last events, read from the collector) and the live tail, streamed
//! through from the collector's `/tail` with the user's own token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_api::v1 as api;
use berth_api::v1::apps_server::Apps;
use serde::Deserialize;

use super::auth::{ApiWho, PageWho};
use super::{grpc, http_status, json_error, page_error, pages, Dash};

#[derive(Debug, Deserialize, Default)]
pub(super) struct LogQuery {
    #[serde(default)]
    level: String,
    #[serde(default)]
    grep: String,
    #[serde(default)]
    cursor: Option<u64>,
}

impl LogQuery {
    fn filters(&self) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut q = String::new();
        if !self.level.is_empty() {
            q.push_str(&format!("&level={}", enc(&self.level)));
        }
        if !self.grep.is_empty() {
            q.push_str(&format!("&grep={}", enc(&self.grep)));
        }
        q
    }
}

/// What the log page shows at first.
#[derive(Debug, Default)]
pub struct LogPage {
    pub events: Vec<serde_json::Value>,
    pub last_seq: u64,
    pub problem: Option<String>,
}

pub(super) async fn logs_page(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    PageWho(who): PageWho,
    Query(q): Query<LogQuery>,
) -> Response {
    if let Err(s) = Apps::get_app(
        &dash.control,
        grpc(&who, api::GetAppRequest { name: app.clone() }),
    )
    .await
    {
        return page_error(Some(&who), &s);
    }
    let url = format!("/v1/apps/{app}/events?order=desc&limit=100{}", q.filters());
    let mut page = LogPage::default();
    match super::client::get_text(
        &dash.cfg.dashboard.logs_url,
        &url,
        Some(&who.token),
        Duration::from_secs(5),
    )
    .await
    {
        Ok((200, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                page.last_seq = v["last_seq"].as_u64().unwrap_or(0);
                let mut events = v["events"].as_array().cloned().unwrap_or_default();
                events.reverse();
                page.events = events;
            }
            Err(e) => page.problem = Some(format!("the log collector's answer is not JSON: {e}")),
        },
        Ok((status, body)) => {
            page.problem = Some(format!(
                "the log collector answered {status}: {}",
                body.trim()
            ))
        }
        Err(e) => page.problem = Some(format!("the log collector cannot be reached: {e}")),
    }
    axum::response::Html(pages::logs_page(
        &pages::Nav::of(&who),
        &app,
        &q.level,
        &q.grep,
        &page,
    ))
    .into_response()
}

pub(super) async fn logs_stream(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    ApiWho(who): ApiWho,
    headers: HeaderMap,
    Query(q): Query<LogQuery>,
) -> Response {
    if let Err(s) = Apps::get_app(
        &dash.control,
        grpc(&who, api::GetAppRequest { name: app.clone() }),
    )
    .await
    {
        return json_error(http_status(&s), s.message());
    }
    // EventSource resumes with Last-Event-ID: the collector then sends what came after it.
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut url = format!(
        "/v1/apps/{app}/tail?{}",
        q.filters().trim_start_matches('&')
    );
    if let Some(c) = last_id.or(q.cursor) {
        url.push_str(&format!("&cursor={c}"));
    }
    match super::client::get(
        &dash.cfg.dashboard.logs_url,
        &url,
        Some(&who.token),
        &[("accept", "text/event-stream")],
        Duration::from_secs(10),
    )
    .await
    {
        Ok(resp) => {
            let status = resp.status();
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("text/plain"));
            let mut out = Response::new(Body::new(resp.into_body()));
            *out.status_mut() = status;
            out.headers_mut().insert(header::CONTENT_TYPE, content_type);
            out.headers_mut()
                .insert("x-accel-buffering", HeaderValue::from_static("no"));
            out
        }
        Err(e) => json_error(
            StatusCode::BAD_GATEWAY,
            &format!("the log collector cannot be reached: {e}"),
        ),
    }
}
