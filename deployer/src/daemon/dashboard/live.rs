//! Live parts: server-sent events of the page fragments that changed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::json;

use super::auth::{ApiWho, Who};
use super::{http_status, json_error, pages, Dash};

pub(super) type SseStream =
    Sse<std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>>;

/// Every `refresh_interval`, renders `fragments` and sends those that changed as `fragment`
/// events (`{"id", "html"}`); `signed-out` and the end when the token stops working.
pub(super) fn live<F, Fut>(dash: Arc<Dash>, who: Who, fragments: F) -> SseStream
where
    F: Fn(Arc<Dash>, Who) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<(&'static str, String)>, tonic::Status>> + Send,
{
    let interval = dash
        .cfg
        .dashboard
        .refresh_interval
        .0
        .max(Duration::from_millis(100));
    let fragments = Arc::new(fragments);
    let stream = futures_util::stream::unfold(
        (HashMap::<&'static str, String>::new(), true, false),
        move |(mut last, first, done)| {
            let dash = dash.clone();
            let who = who.clone();
            let fragments = fragments.clone();
            async move {
                if done {
                    return None;
                }
                if !first {
                    tokio::time::sleep(interval).await;
                }
                // The token may have been revoked since the stream began.
                if dash.control.caller_of_token(&who.token).is_err() {
                    dash.sessions.remove_token(&who.token);
                    let ev = SseEvent::default().event("signed-out").data("{}");
                    return Some((vec![Ok(ev)], (last, false, true)));
                }
                let mut out = Vec::new();
                match fragments(dash.clone(), who.clone()).await {
                    Ok(frags) => {
                        for (id, html) in frags {
                            if last.get(id) != Some(&html) {
                                let data = json!({ "id": id, "html": html }).to_string();
                                out.push(Ok(SseEvent::default().event("fragment").data(data)));
                                last.insert(id, html);
                            }
                        }
                    }
                    Err(s) => {
                        let data = json!({ "error": s.message() }).to_string();
                        out.push(Ok(SseEvent::default().event("problem").data(data)));
                    }
                }
                Some((out, (last, false, false)))
            }
        },
    )
    .flat_map(futures_util::stream::iter);
    Sse::new(Box::pin(stream) as std::pin::Pin<Box<dyn Stream<Item = _> + Send>>)
        .keep_alive(KeepAlive::default())
}

pub(super) async fn apps_live(State(dash): State<Arc<Dash>>, ApiWho(who): ApiWho) -> Response {
    live(dash, who, |dash, who| async move {
        let rows = dash.app_rows(&who).await?;
        Ok(vec![("apps", pages::apps_table(&rows))])
    })
    .into_response()
}

pub(super) async fn app_live(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    ApiWho(who): ApiWho,
) -> Response {
    // Refused at once (not as an event) when the token may not see the app.
    if let Err(s) = dash.app_view(&who, &app).await {
        return json_error(http_status(&s), s.message());
    }
    live(dash, who, move |dash, who| {
        let app = app.clone();
        async move {
            let view = dash.app_view(&who, &app).await?;
            Ok(pages::app_fragments(&pages::Nav::of(&who), &view))
        }
    })
    .into_response()
}
