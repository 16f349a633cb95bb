//! `GET /` (the Riak-style resource map) and `GET /stats` (an app's usage and quota; an
//! operator sees every app and the server's counters).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Response, StatusCode};

use crate::http::{json, Api, Body, Caller};

/// The server's version, reported where Riak reports `riak_kv_version`.
pub const VERSION: &str = concat!("berth-blob-server ", env!("CARGO_PKG_VERSION"));

/// `GET /`: where each resource lives (Riak clients look paths up here).
pub fn resources() -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "riak_kv_wm_buckets": "/buckets",
            "riak_kv_wm_ping": "/ping",
            "riak_kv_wm_stats": "/stats",
            "berth_blobs": "/blobs",
            "berth_sign": "/sign",
        }),
    )
}

fn app_stats(api: &Api, app: &str) -> serde_json::Value {
    let u = api.store.usage(app);
    serde_json::json!({
        "app": app,
        "bytes_used": u.used,
        "bytes_reserved": u.reserved,
        "quota_bytes": u.limit,
        "bytes_free": u.limit.saturating_sub(u.used + u.reserved),
        "max_object_bytes": api.max_object(app),
    })
}

/// `GET /stats`.
pub fn stats(api: &Arc<Api>, caller: &Caller) -> Response<Body> {
    match caller {
        Caller::Operator { app: None } => {
            let apps: Vec<_> = match api.tenant_set() {
                Some(set) => set
                    .iter()
                    .map(|t| app_stats(api, t.name.as_str()))
                    .collect(),
                None => vec![app_stats(api, crate::http::DEV_APP)],
            };
            let c = &api.counters;
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            let cache = api.store.cache_stats().unwrap_or_default();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "riak_kv_version": VERSION,
                    "apps": apps,
                    "requests": load(&c.requests),
                    "bytes_in": load(&c.bytes_in),
                    "bytes_out": load(&c.bytes_out),
                    "responses_2xx": load(&c.status_2xx),
                    "responses_3xx": load(&c.status_3xx),
                    "responses_4xx": load(&c.status_4xx),
                    "responses_5xx": load(&c.status_5xx),
                    "refused_too_many_requests": load(&c.refused_too_many),
                    "corrupt_reads": load(&c.corrupt_reads),
                    "commit_batches": api.store.commit_batches(),
                    "read_cache": {
                        "bytes": cache.bytes,
                        "entries": cache.entries,
                        "hits": cache.hits,
                        "misses": cache.misses,
                        "damaged": cache.damaged,
                    },
                }),
            )
        }
        _ => {
            let app = caller.app().unwrap_or(crate::http::DEV_APP);
            let mut v = app_stats(api, app);
            v["riak_kv_version"] = serde_json::Value::String(VERSION.into());
            json(StatusCode::OK, &v)
        }
    }
}
