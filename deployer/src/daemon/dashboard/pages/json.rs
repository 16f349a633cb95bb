//! The JSON API's bodies: what the pages show, for scripts and tests.

use berth_api::v1 as api;
use serde_json::{json, Value};

use super::app::{limit_of, RESOURCES};
use super::apps::totals;
use crate::cli::control::when;
use crate::daemon::dashboard::usage::AppUsage;
use crate::daemon::dashboard::{AppRow, AppView};

pub fn event_json(e: &api::Event) -> Value {
    json!({
        "seq": e.seq, "at": when(e.at_ms), "at_ms": e.at_ms, "actor": e.actor, "app": e.app,
        "action": e.action, "detail": e.detail,
    })
}

pub(super) fn usage_json(view_limits: Option<&AppView>, u: &AppUsage) -> Value {
    let last = u.last();
    let mut resources = serde_json::Map::new();
    for r in &RESOURCES {
        let quota = view_limits.and_then(|v| limit_of(v, r.limit_key));
        resources.insert(
            r.id.into(),
            json!({
                "used": last.and_then(|s| (r.pick)(s)),
                "quota": quota,
                "history": u.samples.iter().map(|s| json!([s.at_ms, (r.pick)(s)])).collect::<Vec<_>>(),
            }),
        );
    }
    json!({
        "request_rate": u.request_rate, "error_rate": u.error_rate, "resources": resources,
        "problems": u.errors.iter().map(|(k, v)| json!({"source": k, "error": v})).collect::<Vec<_>>(),
    })
}

pub(super) fn status_json(s: &api::AppStatus) -> Value {
    let t = totals(s);
    json!({
        "live": s.live.as_ref().map(|l| json!({"release": l.id, "version": l.version})),
        "activity": s.activity,
        "scale": s.scale,
        "healthy": t.healthy,
        "instances": s.instances.iter().map(|i| json!({
            "id": i.id, "version": i.version, "role": i.role, "state": i.state,
            "health": i.health, "pid": i.pid, "memory_bytes": i.memory_bytes,
            "restarts": i.restarts, "last_exit": i.last_exit,
        })).collect::<Vec<_>>(),
        "memory_bytes": t.memory,
        "restarts": t.restarts,
        "urls": s.urls,
    })
}

pub fn row_json(r: &AppRow) -> Value {
    json!({
        "name": r.name,
        "status": status_json(&r.status),
        "request_rate": r.usage.request_rate,
        "error_rate": r.usage.error_rate,
    })
}

pub fn view_json(v: &AppView) -> Value {
    json!({
        "name": v.app.name,
        "status": status_json(&v.status),
        "versions": v.versions.iter().map(|x| json!({
            "version": x.version, "state": x.state, "actor": x.actor,
            "created": when(x.created_ms), "error": x.error,
        })).collect::<Vec<_>>(),
        "releases": v.releases.iter().map(|r| json!({
            "id": r.id, "version": r.version, "state": r.state, "actor": r.actor,
            "created": when(r.created_ms), "description": r.description,
        })).collect::<Vec<_>>(),
        "events": v.events.iter().map(event_json).collect::<Vec<_>>(),
        "config": v.config.iter().map(|c| if c.secret {
            json!({"key": c.key, "secret": true})
        } else {
            json!({"key": c.key, "value": c.value})
        }).collect::<Vec<_>>(),
        "usage": usage_json(Some(v), &v.usage),
    })
}
