//! One app's page: status, versions, releases, resource use over time, events and config.

use std::fmt::Write as _;

use berth_api::v1 as api;
use berth_common::config::ByteSize;

use super::apps::{error_rate, health_text, rate, totals};
use super::{esc, flash_html, layout, q, section, Nav};
use crate::cli::control::when;
use crate::cli::deploy::human_bytes;
use crate::daemon::dashboard::usage::Sample;
use crate::daemon::dashboard::AppView;

pub fn app_page(nav: &Nav, view: &AppView, flash: Option<&str>) -> String {
    let app = esc(&view.app.name);
    let mut body = format!(
        "<h1>{app}</h1>\n{}<p class=\"actions\"><a class=\"button\" href=\"/apps/{app}/logs\">Logs</a> \
         <a class=\"button secondary\" href=\"/events?app={}\">Event history</a></p>\n",
        flash_html(flash),
        q(&view.app.name),
    );
    let titles = [
        ("status", "Status"),
        ("versions", "Versions"),
        ("releases", "Releases"),
        ("usage", "Usage against quota"),
        ("events", "Recent events"),
        ("config", "Config"),
    ];
    for (id, html) in app_fragments(nav, view) {
        let heading = titles
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, t)| *t)
            .unwrap_or(id);
        body.push_str(&section(id, heading, &html));
    }
    layout(
        Some(nav),
        &view.app.name,
        Some(&format!("/apps/{}/live", view.app.name)),
        &body,
    )
}

/// The live sections of the app page, by id.
pub fn app_fragments(_nav: &Nav, view: &AppView) -> Vec<(&'static str, String)> {
    vec![
        ("status", status_html(view)),
        ("versions", versions_html(view)),
        ("releases", releases_html(view)),
        ("usage", usage_html(view)),
        ("events", events_table(&view.events, false)),
        ("config", config_html(view)),
    ]
}

pub(super) fn status_html(view: &AppView) -> String {
    let s = &view.status;
    let (health, class) = health_text(s);
    let mut h = String::from("<dl class=\"facts\">\n");
    let live = s
        .live
        .as_ref()
        .map(|l| format!("{} (release {})", esc(&l.version), esc(&l.id)))
        .unwrap_or_else(|| "nothing is live yet".into());
    let t = totals(s);
    let _ = write!(
        h,
        "<div><dt>Live version</dt><dd id=\"live-version\">{live}</dd></div>\n\
         <div><dt>Health</dt><dd><span class=\"badge {class}\">{health}</span></dd></div>\n\
         <div><dt>Processes</dt><dd>{} (scale {})</dd></div>\n\
         <div><dt>Memory</dt><dd>{}</dd></div>\n\
         <div><dt>Restarts</dt><dd>{}</dd></div>\n\
         <div><dt>Requests</dt><dd>{}</dd></div>\n\
         <div><dt>Errors (5xx)</dt><dd>{}</dd></div>\n",
        s.instances.len(),
        s.scale,
        human_bytes(t.memory),
        t.restarts,
        rate(&view.usage),
        error_rate(&view.usage),
    );
    if !s.activity.is_empty() {
        let _ = writeln!(
            h,
            "<div><dt>In progress</dt><dd>{}</dd></div>",
            esc(&s.activity)
        );
    }
    if !s.urls.is_empty() {
        let links: Vec<String> = s
            .urls
            .iter()
            .map(|u| format!("<a href=\"{0}\">{0}</a>", esc(u)))
            .collect();
        let _ = writeln!(h, "<div><dt>URLs</dt><dd>{}</dd></div>", links.join(" "));
    }
    h.push_str("</dl>\n");
    if s.instances.is_empty() {
        return h;
    }
    h.push_str(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Instances\"><table>\n\
         <caption>Instances</caption>\n<thead><tr><th scope=\"col\">Instance</th>\
         <th scope=\"col\">Role</th><th scope=\"col\">State</th><th scope=\"col\">Health</th>\
         <th scope=\"col\">PID</th><th scope=\"col\">Memory</th><th scope=\"col\">Restarts</th>\
         <th scope=\"col\">Started</th><th scope=\"col\">Last exit</th></tr></thead>\n<tbody>\n",
    );
    for i in &s.instances {
        let class = match i.health.as_str() {
            "healthy" => "good",
            "unhealthy" => "bad",
            _ => "muted",
        };
        let _ = writeln!(
            h,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td><span class=\"badge {class}\">{}</span></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&i.id),
            esc(&i.role),
            esc(&i.state),
            esc(&i.health),
            i.pid,
            human_bytes(i.memory_bytes),
            i.restarts,
            if i.started_ms > 0 { when(i.started_ms) } else { "–".into() },
            dash(&i.last_exit),
        );
    }
    h.push_str("</tbody></table></div>\n");
    h
}

pub(super) fn dash(s: &str) -> String {
    if s.is_empty() {
        "–".into()
    } else {
        esc(s)
    }
}

pub(super) fn state_class(state: &str) -> &'static str {
    match state {
        "live" => "good",
        "failed" => "bad",
        "warm" | "ready" => "warn",
        _ => "muted",
    }
}

pub(super) fn versions_html(view: &AppView) -> String {
    if view.versions.is_empty() {
        return "<p>No versions yet: <code>berth deploy</code> uploads the first.</p>\n".into();
    }
    let app = &view.app.name;
    let mut h = String::from(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Versions\"><table>\n\
         <caption>Newest first, by semantic version</caption>\n<thead><tr>\
         <th scope=\"col\">Version</th><th scope=\"col\">State</th><th scope=\"col\">Deployed by</th>\
         <th scope=\"col\">When</th><th scope=\"col\">Why it failed</th><th scope=\"col\">Action</th>\
         </tr></thead>\n<tbody>\n",
    );
    for v in &view.versions {
        // A failed version is promoted, if at all, with `berth promote` after reading why.
        let action = if matches!(v.state.as_str(), "live" | "warm" | "failed") {
            String::new()
        } else {
            format!(
                "<a class=\"button small\" href=\"/apps/{}/promote?target={}\" \
                 aria-label=\"Promote {} to live\">Promote</a>",
                esc(app),
                q(&v.version),
                esc(&v.version)
            )
        };
        let _ = writeln!(
            h,
            "<tr data-version=\"{0}\"><th scope=\"row\">{0}</th><td><span class=\"badge {1}\">{2}</span></td>\
             <td>{3}</td><td>{4}</td><td>{5}</td><td>{action}</td></tr>",
            esc(&v.version),
            state_class(&v.state),
            esc(&v.state),
            dash(&v.actor),
            when(v.created_ms),
            dash(&v.error),
        );
    }
    h.push_str("</tbody></table></div>\n");
    h
}

pub(super) fn releases_html(view: &AppView) -> String {
    if view.releases.is_empty() {
        return "<p>No releases yet.</p>\n".into();
    }
    let app = &view.app.name;
    let mut h = String::from(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Releases\"><table>\n\
         <caption>Newest first; rolling back makes a new release of an earlier one's code and config</caption>\n\
         <thead><tr><th scope=\"col\">Release</th><th scope=\"col\">Version</th><th scope=\"col\">State</th>\
         <th scope=\"col\">By</th><th scope=\"col\">When</th><th scope=\"col\">What</th>\
         <th scope=\"col\">Action</th></tr></thead>\n<tbody>\n",
    );
    for r in &view.releases {
        let action = if r.state == "live" || r.state == "failed" {
            String::new()
        } else {
            format!(
                "<a class=\"button small\" href=\"/apps/{}/rollback?release={}\" \
                 aria-label=\"Roll back to release {}\">Roll back to this</a>",
                esc(app),
                q(&r.id),
                esc(&r.id)
            )
        };
        let _ = writeln!(
            h,
            "<tr data-release=\"{0}\"><th scope=\"row\">{0}</th><td>{1}</td>\
             <td><span class=\"badge {2}\">{3}</span></td><td>{4}</td><td>{5}</td><td>{6}</td><td>{action}</td></tr>",
            esc(&r.id),
            esc(&r.version),
            state_class(&r.state),
            esc(&r.state),
            dash(&r.actor),
            when(r.created_ms),
            esc(&r.description),
        );
    }
    h.push_str("</tbody></table></div>\n");
    h
}

/// One resource: its use now, its quota, and its history.
pub(super) struct Resource {
    pub(super) id: &'static str,
    pub(super) label: &'static str,
    pub(super) limit_key: &'static str,
    pub(super) pick: fn(&Sample) -> Option<u64>,
}

pub(super) const RESOURCES: [Resource; 4] = [
    Resource {
        id: "cache",
        label: "Cache memory",
        limit_key: "cache_bytes",
        pick: |s| s.cache,
    },
    Resource {
        id: "blobs",
        label: "Blob storage",
        limit_key: "blob_bytes",
        pick: |s| s.blob,
    },
    Resource {
        id: "database",
        label: "Database size",
        limit_key: "db_bytes",
        pick: |s| s.db,
    },
    Resource {
        id: "logs",
        label: "Log volume",
        limit_key: "log_bytes",
        pick: |s| s.logs,
    },
];

pub(super) fn limit_of(view: &AppView, key: &str) -> Option<u64> {
    view.app
        .limits
        .get(key)
        .and_then(|v| v.parse::<ByteSize>().ok())
        .map(|b| b.0)
        .filter(|b| *b > 0)
}

pub(super) fn usage_html(view: &AppView) -> String {
    let u = &view.usage;
    let mut h = String::new();
    if u.samples.is_empty() {
        h.push_str("<p class=\"muted\">Not sampled yet: usage is read from the services every few seconds.</p>\n");
    }
    h.push_str("<ul class=\"usage\">\n");
    for r in &RESOURCES {
        let quota = limit_of(view, r.limit_key);
        let now = u.last().and_then(|s| (r.pick)(s));
        let problem = u.errors.iter().find(|(k, _)| *k == r.id).map(|(_, e)| e);
        let text = match (now, quota) {
            (Some(n), Some(qb)) => format!(
                "{} of {} ({:.1}%)",
                human_bytes(n),
                human_bytes(qb),
                n as f64 * 100.0 / qb as f64
            ),
            (Some(n), None) => format!("{} (no quota)", human_bytes(n)),
            (None, _) => "not measured".into(),
        };
        let _ = writeln!(
            h,
            "<li data-resource=\"{0}\"><div class=\"usage-head\"><span id=\"u-{0}\">{1}</span> \
             <span class=\"usage-value\">{2}</span></div>",
            r.id,
            r.label,
            esc(&text)
        );
        if let (Some(n), Some(qb)) = (now, quota) {
            let _ = writeln!(
                h,
                "<meter aria-labelledby=\"u-{}\" min=\"0\" max=\"{qb}\" low=\"{}\" high=\"{}\" optimum=\"0\" value=\"{}\">{:.1}%</meter>",
                r.id,
                qb / 10 * 7,
                qb / 10 * 9,
                n.min(qb),
                n as f64 * 100.0 / qb as f64
            );
        }
        if let Some(p) = problem {
            let _ = writeln!(h, "<p class=\"help\">{}</p>", esc(p));
        }
        let points: Vec<(i64, f64)> = u
            .samples
            .iter()
            .filter_map(|s| (r.pick)(s).map(|v| (s.at_ms, v as f64)))
            .collect();
        h.push_str(&chart(
            r.label,
            &points,
            quota.map(|q| q as f64),
            human_bytes_f,
        ));
        h.push_str("</li>\n");
    }
    // Requests per second, from the router's counters.
    let rates: Vec<(i64, f64)> = u
        .samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (w[0], w[1]);
            let (ra, rb) = (a.requests?, b.requests?);
            let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
            (secs > 0.0).then(|| (b.at_ms, if rb >= ra { rb - ra } else { rb } / secs))
        })
        .collect();
    let _ = writeln!(
        h,
        "<li data-resource=\"requests\"><div class=\"usage-head\"><span>Requests</span> \
         <span class=\"usage-value\">{} · {} errors</span></div>",
        rate(u),
        error_rate(u)
    );
    h.push_str(&chart("Requests per second", &rates, None, |v| {
        format!("{v:.1}/s")
    }));
    h.push_str("</li>\n</ul>\n");
    h
}

pub(super) fn human_bytes_f(v: f64) -> String {
    human_bytes(v.max(0.0) as u64)
}

/// A small line chart of `points` (time, value) as inline SVG, with a text summary for
/// screen readers; against `max` when given (a quota), else the largest value.
pub(super) fn chart(
    label: &str,
    points: &[(i64, f64)],
    max: Option<f64>,
    fmt: fn(f64) -> String,
) -> String {
    const W: f64 = 300.0;
    const H: f64 = 60.0;
    if points.len() < 2 {
        return String::new();
    }
    let t0 = points[0].0 as f64;
    let t1 = points[points.len() - 1].0 as f64;
    let span = (t1 - t0).max(1.0);
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = max.unwrap_or(peak).max(peak).max(1e-9);
    let coords: Vec<String> = points
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                (*t as f64 - t0) / span * W,
                H - (v / top * (H - 4.0)) - 2.0
            )
        })
        .collect();
    let minutes = ((t1 - t0) / 60_000.0).round().max(1.0);
    let summary = format!(
        "{label} over the last {minutes:.0} min: now {}, peak {}{}",
        fmt(points[points.len() - 1].1),
        fmt(peak),
        max.map(|m| format!(", quota {}", fmt(m)))
            .unwrap_or_default()
    );
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"{0}\"><title>{0}</title><polyline points=\"{1}\" /></svg>\n",
        esc(&summary),
        coords.join(" ")
    )
}

pub fn events_table(events: &[api::Event], with_app: bool) -> String {
    if events.is_empty() {
        return "<p>No events.</p>\n".into();
    }
    let mut h = String::from(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Events\"><table>\n\
         <thead><tr><th scope=\"col\">When</th>",
    );
    if with_app {
        h.push_str("<th scope=\"col\">App</th>");
    }
    h.push_str(
        "<th scope=\"col\">Who</th><th scope=\"col\">What</th><th scope=\"col\">Detail</th></tr></thead>\n<tbody>\n",
    );
    for e in events {
        let class = if e.action.contains("fail") || e.action.contains("unhealthy") {
            " class=\"bad-row\""
        } else if e.action.contains("rollback") {
            " class=\"warn-row\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{class} data-seq=\"{}\"><td>{}</td>",
            e.seq,
            when(e.at_ms)
        );
        if with_app {
            let _ = write!(
                h,
                "<td>{}</td>",
                if e.app.is_empty() {
                    "–".into()
                } else {
                    format!("<a href=\"/apps/{0}\">{0}</a>", esc(&e.app))
                }
            );
        }
        let _ = writeln!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.actor),
            esc(&e.action),
            esc(&e.detail)
        );
    }
    h.push_str("</tbody></table></div>\n");
    h
}

pub(super) fn config_html(view: &AppView) -> String {
    if view.config.is_empty() {
        return "<p>No config values. <code>berth config set</code> adds them.</p>\n".into();
    }
    let mut h = String::from("<dl class=\"config\">\n");
    for c in &view.config {
        if c.secret {
            let _ = writeln!(
                h,
                "<div><dt>{}</dt><dd class=\"muted\">secret (its value is never shown)</dd></div>",
                esc(&c.key)
            );
        } else {
            let _ = writeln!(
                h,
                "<div><dt>{}</dt><dd><code>{}</code></dd></div>",
                esc(&c.key),
                esc(&c.value)
            );
        }
    }
    h.push_str("</dl>\n");
    h
}
