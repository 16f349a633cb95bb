//! Listings: `GET /buckets` and `GET /buckets/{bucket}/keys`, paginated with `max_results` and
//! an opaque `continuation`, or streamed whole with `keys=stream` (one JSON object per page,
//! as Riak streams them), never holding more than one page in memory.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::http::parse::param;
use crate::http::{json, quick, Api, ApiError, Body};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Page size and start of a paginated listing.
struct Page {
    limit: usize,
    after: Option<String>,
}

fn page(api: &Api, query: &[(String, String)]) -> Result<Page, ApiError> {
    let max = api.limits.max_list_page;
    let limit = match param(query, "max_results") {
        None => max,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    &format!("max_results must be between 1 and {max}"),
                ))
            }
        },
    };
    let after = match param(query, "continuation") {
        None | Some("") => None,
        Some(c) => {
            let raw = B64.decode(c).map_err(|_| {
                ApiError::bad_request("invalid_query", "invalid continuation token")
            })?;
            Some(String::from_utf8(raw).map_err(|_| {
                ApiError::bad_request("invalid_query", "invalid continuation token")
            })?)
        }
    };
    Ok(Page { limit, after })
}

/// One page as `{"<field>": [...], "continuation": "…"}` (the token only when more follow).
fn page_reply(field: &str, mut names: Vec<String>, limit: usize) -> Response<Body> {
    let more = names.len() > limit;
    names.truncate(limit);
    let mut v = serde_json::json!({ field: names });
    if more {
        if let Some(last) = names.last() {
            v["continuation"] = serde_json::Value::String(B64.encode(last.as_bytes()));
        }
    }
    json(StatusCode::OK, &v)
}

/// `GET /buckets[?buckets=true]`: the app's buckets (those holding at least one key).
pub async fn buckets(
    api: &Arc<Api>,
    app: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let p = page(api, query)?;
    let (store, a) = (api.store.clone(), app.to_string());
    let names = quick(move || store.list_buckets(&a, p.after.as_deref(), p.limit + 1)).await?;
    Ok(page_reply("buckets", names, p.limit))
}

/// `GET /buckets/{bucket}/keys?keys=true|stream`.
pub async fn keys(
    api: &Arc<Api>,
    app: &str,
    bucket: &str,
    query: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    match param(query, "keys") {
        None | Some("true") => {
            let p = page(api, query)?;
            let (store, a, b) = (api.store.clone(), app.to_string(), bucket.to_string());
            let names =
                quick(move || store.list_keys(&a, &b, p.after.as_deref(), p.limit + 1)).await?;
            Ok(page_reply("keys", names, p.limit))
        }
        Some("stream") => Ok(stream_keys(api, app, bucket)),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "keys must be true or stream",
        )),
    }
}

/// Streams every key of the bucket: a chunked body of `{"keys":[…]}` objects, one per page.
fn stream_keys(api: &Arc<Api>, app: &str, bucket: &str) -> Response<Body> {
    let state = (
        api.store.clone(),
        app.to_string(),
        bucket.to_string(),
        api.limits.max_list_page,
    );
    let stream = futures_util::stream::unfold(
        (Some(None::<String>), state),
        |(after, (store, app, bucket, limit))| async move {
            let after = after?;
            let (s, a, b, from) = (store.clone(), app.clone(), bucket.clone(), after.clone());
            match crate::http::quick(move || s.list_keys(&a, &b, from.as_deref(), limit)).await {
                Ok(names) => {
                    let next = if names.len() < limit {
                        None
                    } else {
                        names.last().cloned().map(Some)
                    };
                    let chunk = serde_json::json!({ "keys": names }).to_string();
                    Some((
                        Ok::<Bytes, std::io::Error>(Bytes::from(chunk)),
                        (next, (store, app, bucket, limit)),
                    ))
                }
                Err(e) => {
                    tracing::error!(error = %e, "key listing failed mid-stream");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (None, (store, app, bucket, limit)),
                    ))
                }
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
