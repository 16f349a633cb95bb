//! Promote and roll back: the confirmation page and the outcome.

use berth_api::v1 as api;

use super::{esc, layout, Nav};
use crate::daemon::dashboard::AppView;

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
