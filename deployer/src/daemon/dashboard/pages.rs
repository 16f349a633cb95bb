//! The dashboard's HTML: whole pages, and the fragments the live streams send again when
//! they change. Every text from outside (names, messages, log lines) goes through [`esc`].

use std::fmt::Write as _;

use axum::http::StatusCode;
use berth_api::v1 as api;
use berth_common::config::ByteSize;
use serde_json::{json, Value};

use super::auth::Who;
use super::logs::LogPage;
use super::usage::{AppUsage, Sample};
use super::{AppRow, AppView};
use crate::cli::control::when;
use crate::cli::deploy::human_bytes;

/// HTML-escapes `s` (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The signed-in user, as the header shows them.
#[derive(Debug, Clone)]
pub struct Nav {
    pub label: String,
    pub own_app: Option<String>,
    pub csrf: String,
    pub session: bool,
}

impl Nav {
    pub fn of(who: &Who) -> Nav {
        Nav {
            label: who.label(),
            own_app: who.own_app().map(String::from),
            csrf: who.csrf.clone(),
            session: who.session.is_some(),
        }
    }
}

/// A whole page. `live`: the stream that keeps its `data-fragment` sections current.
fn layout(nav: Option<&Nav>, title: &str, live: Option<&str>, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 2048);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · Berth</title>\n<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\n\
         <script src=\"/assets/dashboard.js\" defer></script>\n</head>\n<body>\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n<header class=\"top\">\n\
         <a class=\"brand\" href=\"/\">Berth</a>\n",
        esc(title)
    );
    if let Some(nav) = nav {
        let home = match &nav.own_app {
            Some(app) => format!("<li><a href=\"/apps/{0}\">{0}</a></li>", esc(app)),
            None => "<li><a href=\"/\">Apps</a></li>".into(),
        };
        let _ = write!(
            h,
            "<nav aria-label=\"Main\"><ul>{home}<li><a href=\"/events\">Events</a></li></ul></nav>\n\
             <div class=\"who\"><span>Signed in as {}</span>",
            esc(&nav.label)
        );
        if nav.session {
            let _ = write!(
                h,
                "<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" \
                 value=\"{}\"><button type=\"submit\" class=\"link\">Sign out</button></form>",
                esc(&nav.csrf)
            );
        }
        h.push_str("</div>\n");
    }
    h.push_str("</header>\n<main id=\"main\"");
    if let Some(url) = live {
        let _ = write!(h, " data-live=\"{}\"", esc(url));
    }
    h.push_str(">\n");
    h.push_str(body);
    h.push_str("\n</main>\n</body>\n</html>\n");
    h
}

fn flash_html(flash: Option<&str>) -> String {
    match flash {
        Some(m) if m.contains("failed") => {
            format!("<p class=\"flash bad\" role=\"alert\">{}</p>\n", esc(m))
        }
        Some(m) => format!("<p class=\"flash good\" role=\"status\">{}</p>\n", esc(m)),
        None => String::new(),
    }
}

/// A live section: `id` is the fragment's name in the stream.
fn section(id: &str, heading: &str, inner: &str) -> String {
    format!(
        "<section aria-labelledby=\"h-{id}\">\n<h2 id=\"h-{id}\">{heading}</h2>\n\
         <div id=\"{id}\" data-fragment>\n{inner}</div>\n</section>\n"
    )
}

// ---------------------------------------------------------------------------------------

pub fn login_page(problem: Option<&str>, next: &str) -> String {
    let problem = problem
        .map(|p| {
            format!(
                "<p class=\"flash bad\" role=\"alert\" id=\"login-problem\">{}</p>\n",
                esc(p)
            )
        })
        .unwrap_or_default();
    let described = if problem.is_empty() {
        "token-help"
    } else {
        "login-problem token-help"
    };
    layout(
        None,
        "Sign in",
        None,
        &format!(
            "<h1>Sign in</h1>\n{problem}<form method=\"post\" action=\"/login\" class=\"card narrow\">\n\
             <label for=\"token\">Token</label>\n\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
             required aria-describedby=\"{described}\" autofocus>\n\
             <p id=\"token-help\" class=\"help\">An operator token (it sees every app), or an app's \
             token (it sees that app). It stays on the server; this browser keeps only a \
             session cookie.</p>\n\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
             <button type=\"submit\">Sign in</button>\n</form>",
            esc(next)
        ),
    )
}

pub fn error_page(nav: Option<&Nav>, status: StatusCode, message: &str) -> String {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        nav,
        title,
        None,
        &format!(
            "<h1>{}</h1>\n<p class=\"flash bad\" role=\"alert\">{}</p>\n<p><a href=\"/\">Back to the start</a></p>",
            esc(title),
            esc(message)
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Apps.

pub fn apps_page(nav: &Nav, rows: &[AppRow], flash: Option<&str>) -> String {
    layout(
        Some(nav),
        "Apps",
        Some("/live"),
        &format!(
            "<h1>Apps</h1>\n{}{}",
            flash_html(flash),
            section("apps", "Every app", &apps_table(rows))
        ),
    )
}

struct Totals {
    healthy: usize,
    instances: usize,
    memory: u64,
    restarts: u32,
}

fn totals(s: &api::AppStatus) -> Totals {
    let live: Vec<&api::Instance> = s.instances.iter().filter(|i| i.role == "live").collect();
    Totals {
        healthy: live.iter().filter(|i| i.health == "healthy").count(),
        instances: live.len(),
        memory: s.instances.iter().map(|i| i.memory_bytes).sum(),
        restarts: s.instances.iter().map(|i| i.restarts).sum(),
    }
}

fn health_text(s: &api::AppStatus) -> (String, &'static str) {
    let t = totals(s);
    if s.live.is_none() {
        return ("not deployed".into(), "muted");
    }
    if t.instances == 0 {
        return ("no instance running".into(), "bad");
    }
    let class = if t.healthy == t.instances {
        "good"
    } else if t.healthy == 0 {
        "bad"
    } else {
        "warn"
    };
    (format!("{} of {} healthy", t.healthy, t.instances), class)
}

fn rate(u: &AppUsage) -> String {
    u.request_rate
        .map(|r| format!("{r:.1}/s"))
        .unwrap_or_else(|| "–".into())
}

fn error_rate(u: &AppUsage) -> String {
    u.error_rate
        .map(|r| format!("{:.1}%", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

pub fn apps_table(rows: &[AppRow]) -> String {
    if rows.is_empty() {
        return "<p>No apps yet: <code>berth apps create NAME</code> makes one.</p>\n".into();
    }
    let mut h = String::from(
        "<div class=\"scroll\" tabindex=\"0\" role=\"region\" aria-label=\"Apps table\"><table>\n\
         <thead><tr><th scope=\"col\">App</th><th scope=\"col\">Live version</th>\
         <th scope=\"col\">Health</th><th scope=\"col\">Processes</th><th scope=\"col\">Memory</th>\
         <th scope=\"col\">Restarts</th><th scope=\"col\">Requests</th><th scope=\"col\">Errors</th>\
         </tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let t = totals(&r.status);
        let (health, class) = health_text(&r.status);
        let live = r
            .status
            .live
            .as_ref()
            .map(|l| {
                format!(
                    "{} <span class=\"muted\">({})</span>",
                    esc(&l.version),
                    esc(&l.id)
                )
            })
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            h,
            "<tr data-app=\"{0}\"><th scope=\"row\"><a href=\"/apps/{0}\">{0}</a></th><td>{live}</td>\
             <td><span class=\"badge {class}\">{health}</span></td><td>{1}</td><td>{2}</td>\
             <td>{3}</td><td>{4}</td><td>{5}</td></tr>",
            esc(&r.name),
            r.status.instances.len(),
            human_bytes(t.memory),
            t.restarts,
            rate(&r.usage),
            error_rate(&r.usage),
        );
    }
    h.push_str("</tbody></table></div>\n");
    h
}

// ---------------------------------------------------------------------------------------
// One app.

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

fn status_html(view: &AppView) -> String {
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

fn dash(s: &str) -> String {
    if s.is_empty() {
        "–".into()
    } else {
        esc(s)
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "live" => "good",
        "failed" => "bad",
        "warm" | "ready" => "warn",
        _ => "muted",
    }
}

fn versions_html(view: &AppView) -> String {
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

fn releases_html(view: &AppView) -> String {
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
struct Resource {
    id: &'static str,
    label: &'static str,
    limit_key: &'static str,
    pick: fn(&Sample) -> Option<u64>,
}

const RESOURCES: [Resource; 4] = [
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

fn limit_of(view: &AppView, key: &str) -> Option<u64> {
    view.app
        .limits
        .get(key)
        .and_then(|v| v.parse::<ByteSize>().ok())
        .map(|b| b.0)
        .filter(|b| *b > 0)
}

fn usage_html(view: &AppView) -> String {
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

fn human_bytes_f(v: f64) -> String {
    human_bytes(v.max(0.0) as u64)
}

/// A small line chart of `points` (time, value) as inline SVG, with a text summary for
/// screen readers; against `max` when given (a quota), else the largest value.
fn chart(label: &str, points: &[(i64, f64)], max: Option<f64>, fmt: fn(f64) -> String) -> String {
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

fn config_html(view: &AppView) -> String {
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

// ---------------------------------------------------------------------------------------
// Promote and roll back.

/// A change asked for from the dashboard (the last part of its path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Promote,
    Rollback,
}

impl Change {
    pub fn verb(self) -> &'static str {
        match self {
            Change::Promote => "Promote",
            Change::Rollback => "Rollback",
        }
    }
}

pub fn confirm_page(nav: &Nav, view: &AppView, change: Change, target: &str) -> String {
    let app = esc(&view.app.name);
    let live = view
        .status
        .live
        .as_ref()
        .map(|l| format!("{} (release {})", esc(&l.version), esc(&l.id)))
        .unwrap_or_else(|| "nothing".into());
    let (title, what, button, path) = match change {
        Change::Promote => (
            format!("Promote {} of {}?", target, view.app.name),
            format!(
                "Version <strong>{}</strong> goes through the same checks as a deploy (start, \
                 health, smoke) and becomes live; now live: {live}. If its checks fail, the live \
                 release stays.",
                esc(target)
            ),
            "Promote",
            "promote",
        ),
        Change::Rollback => {
            let desc = if target.is_empty() {
                "the release before the live one".to_string()
            } else {
                let r = view.releases.iter().find(|r| r.id == target);
                format!(
                    "release <strong>{}</strong>{}",
                    esc(target),
                    r.map(|r| format!(" (version {}, {})", esc(&r.version), esc(&r.description)))
                        .unwrap_or_default()
                )
            };
            (
                format!(
                    "Roll back {} to {}?",
                    view.app.name,
                    if target.is_empty() {
                        "the previous release"
                    } else {
                        target
                    }
                ),
                format!(
                    "A new release with the code and config of {desc} becomes live, through the \
                     same checks as a deploy; now live: {live}."
                ),
                "Roll back",
                "rollback",
            )
        }
    };
    layout(
        Some(nav),
        &title,
        None,
        &format!(
            "<h1>{}</h1>\n<p>{what}</p>\n\
             <form method=\"post\" action=\"/apps/{app}/{path}\" class=\"card narrow\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\n\
             <input type=\"hidden\" name=\"target\" value=\"{}\">\n\
             <label for=\"reason\">Reason (kept in the event history)</label>\n\
             <input id=\"reason\" name=\"reason\" type=\"text\" maxlength=\"200\" placeholder=\"from the dashboard\">\n\
             <div class=\"actions\"><button type=\"submit\" class=\"danger\">{button}</button> \
             <a class=\"button secondary\" href=\"/apps/{app}\">Cancel</a></div>\n</form>",
            esc(&title),
            esc(&nav.csrf),
            esc(target),
        ),
    )
}

/// The message after a change that worked.
pub fn change_done(change: Change, target: &str, p: &api::Progress) -> String {
    let release = p
        .release
        .as_ref()
        .map(|r| format!("release {} ({})", r.id, r.version))
        .unwrap_or_else(|| "the new release".into());
    if p.noop {
        return format!("Nothing to do: {release} is live already.");
    }
    match change {
        Change::Promote => format!("Promoted {target}: {release} is live."),
        Change::Rollback => format!("Rolled back: {release} is live."),
    }
}

// ---------------------------------------------------------------------------------------
// Logs and events.

const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

pub fn log_row(e: &Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
    let level = s("level");
    let mut message = s("message");
    if let Some(x) = e["exception"].as_str() {
        message.push('\n');
        message.push_str(x);
    }
    format!(
        "<tr data-seq=\"{}\" class=\"lvl-{}\"><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>\n",
        e["seq"].as_u64().unwrap_or(0),
        esc(&level),
        esc(&s("received")),
        esc(&level),
        esc(&s("logger")),
        esc(&message)
    )
}

pub fn logs_page(nav: &Nav, app: &str, level: &str, grep: &str, page: &LogPage) -> String {
    let a = esc(app);
    let mut options = String::from("<option value=\"\">any</option>");
    for l in LEVELS {
        let _ = write!(
            options,
            "<option value=\"{l}\"{}>{l}</option>",
            if l == level { " selected" } else { "" }
        );
    }
    let mut stream = format!("/apps/{}/logs/stream?cursor={}", app, page.last_seq);
    if !level.is_empty() {
        let _ = write!(stream, "&level={}", q(level));
    }
    if !grep.is_empty() {
        let _ = write!(stream, "&grep={}", q(grep));
    }
    let problem = page
        .problem
        .as_ref()
        .map(|p| format!("<p class=\"flash bad\" role=\"alert\">{}</p>\n", esc(p)))
        .unwrap_or_default();
    let rows: String = page.events.iter().map(log_row).collect();
    layout(
        Some(nav),
        &format!("Logs of {app}"),
        None,
        &format!(
            "<h1>Logs of <a href=\"/apps/{a}\">{a}</a></h1>\n{problem}\
             <form method=\"get\" action=\"/apps/{a}/logs\" class=\"filters\" role=\"search\">\n\
             <div><label for=\"level\">Level at least</label>\n<select id=\"level\" name=\"level\">{options}</select></div>\n\
             <div><label for=\"grep\">Text</label>\n<input id=\"grep\" name=\"grep\" type=\"search\" value=\"{}\" \
             aria-describedby=\"grep-help\"></div>\n\
             <button type=\"submit\">Filter</button>\n\
             <p id=\"grep-help\" class=\"help\">Case-insensitive unless it holds capitals; it searches messages and exceptions.</p>\n\
             </form>\n\
             <p id=\"log-state\" role=\"status\" class=\"muted\">The last 100 events{}; new ones appear below as they are stored.</p>\n\
             <div class=\"scroll\" tabindex=\"0\" role=\"log\" aria-label=\"Log events\"><table class=\"logs\">\n\
             <thead><tr><th scope=\"col\">Received</th><th scope=\"col\">Level</th><th scope=\"col\">Logger</th>\
             <th scope=\"col\">Message</th></tr></thead>\n\
             <tbody id=\"log-lines\" data-stream=\"{}\">\n{rows}</tbody></table></div>",
            esc(grep),
            if level.is_empty() && grep.is_empty() { "" } else { " that match" },
            esc(&stream),
        ),
    )
}

pub fn events_page(nav: &Nav, app: &str, events: &[api::Event]) -> String {
    let title = if app.is_empty() {
        "Event history".to_string()
    } else {
        format!("Event history of {app}")
    };
    let older = events
        .last()
        .filter(|_| events.len() >= 50)
        .map(|e| {
            format!(
                "<p><a href=\"/events?app={}&amp;before={}\">Older events</a></p>\n",
                q(app),
                e.seq
            )
        })
        .unwrap_or_default();
    layout(
        Some(nav),
        &title,
        None,
        &format!(
            "<h1>{}</h1>\n<p class=\"help\">Deploys, promotions, rollbacks (automatic ones too), config \
             changes (key names only: secret values are never kept here), tokens and limits; newest first.</p>\n{}{older}",
            esc(&title),
            events_table(events, app.is_empty()),
        ),
    )
}

// ---------------------------------------------------------------------------------------
// JSON.

pub fn event_json(e: &api::Event) -> Value {
    json!({
        "seq": e.seq, "at": when(e.at_ms), "at_ms": e.at_ms, "actor": e.actor, "app": e.app,
        "action": e.action, "detail": e.detail,
    })
}

fn usage_json(view_limits: Option<&AppView>, u: &AppUsage) -> Value {
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

fn status_json(s: &api::AppStatus) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_from_outside() {
        assert_eq!(
            esc("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        let row = log_row(&json!({"seq": 3, "level": "<b>", "message": "<img src=x>"}));
        assert!(!row.contains("<img"), "{row}");
        assert!(row.contains("&lt;img src=x&gt;"));
    }

    #[test]
    fn chart_summarises_for_screen_readers() {
        let svg = chart(
            "Cache memory",
            &[(0, 10.0), (60_000, 30.0), (120_000, 20.0)],
            Some(100.0),
            |v| format!("{v:.0}"),
        );
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("Cache memory over the last 2 min: now 20, peak 30, quota 100"));
        assert_eq!(chart("x", &[(0, 1.0)], None, |v| v.to_string()), "");
    }
}
