//! The dashboard's HTML: whole pages, and the fragments the live streams send again when
//! they change. Every text from outside (names, messages, log lines) goes through [`esc`].

use std::fmt::Write as _;

use axum::http::StatusCode;

use super::auth::Who;

mod app;
mod apps;
mod change;
mod json;
mod logs;

pub use app::{app_fragments, app_page};
pub use apps::{apps_page, apps_table};
pub use change::{change_done, confirm_page, Change};
pub use json::{event_json, row_json, view_json};
pub use logs::{events_page, logs_page};

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use super::app::chart;
    use super::logs::log_row;

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
