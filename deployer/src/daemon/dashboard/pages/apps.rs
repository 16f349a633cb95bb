//! The apps list: one row per app the user may see, with health, traffic and errors.

use std::fmt::Write as _;

use berth_api::v1 as api;

use super::{esc, flash_html, layout, section, Nav};
use crate::cli::deploy::human_bytes;
use crate::daemon::dashboard::usage::AppUsage;
use crate::daemon::dashboard::AppRow;

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

pub(super) struct Totals {
    pub(super) healthy: usize,
    pub(super) instances: usize,
    pub(super) memory: u64,
    pub(super) restarts: u32,
}

pub(super) fn totals(s: &api::AppStatus) -> Totals {
    let live: Vec<&api::Instance> = s.instances.iter().filter(|i| i.role == "live").collect();
    Totals {
        healthy: live.iter().filter(|i| i.health == "healthy").count(),
        instances: live.len(),
        memory: s.instances.iter().map(|i| i.memory_bytes).sum(),
        restarts: s.instances.iter().map(|i| i.restarts).sum(),
    }
}

pub(super) fn health_text(s: &api::AppStatus) -> (String, &'static str) {
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

pub(super) fn rate(u: &AppUsage) -> String {
    u.request_rate
        .map(|r| format!("{r:.1}/s"))
        .unwrap_or_else(|| "–".into())
}

pub(super) fn error_rate(u: &AppUsage) -> String {
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
