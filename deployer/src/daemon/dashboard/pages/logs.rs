//! The log page (the last events, filters, the live tail's rows) and the events page.

use std::fmt::Write as _;

use berth_api::v1 as api;
use serde_json::Value;

use super::app::events_table;
use super::{esc, layout, q, Nav};
use crate::daemon::dashboard::logs::LogPage;

pub(super) const LEVELS: [&str; 8] = [
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
