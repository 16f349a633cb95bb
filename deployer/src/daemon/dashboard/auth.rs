//! Who is asking: the signed-in user of a request (a Bearer token or the session cookie),
//! the extractors that turn a request without one into the sign-in page or a 401, and the
//! sign-in and sign-out handlers.

use std::sync::Arc;

use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{json_error, pages, Dash, COOKIE};
use crate::daemon::service::Caller;

/// The signed-in user of a request.
#[derive(Debug, Clone)]
pub(super) struct Who {
    pub(super) caller: Caller,
    pub(super) token: String,
    /// The session id (absent for `Authorization: Bearer` requests).
    pub(super) session: Option<String>,
    pub(super) csrf: String,
}

impl Who {
    /// The app of an app token.
    pub(super) fn own_app(&self) -> Option<&str> {
        match &self.caller {
            Caller::App { app, .. } => Some(app),
            _ => None,
        }
    }

    pub(super) fn label(&self) -> String {
        match &self.caller {
            Caller::Operator(id) => format!("operator {id}"),
            Caller::App { app, token } => format!("{app} (token {token})"),
            Caller::Service => "service".into(),
        }
    }
}

impl Dash {
    /// The caller of `headers`: a Bearer token or the session cookie. Service tokens may not
    /// use the dashboard.
    pub(super) fn who(&self, headers: &HeaderMap) -> Option<Who> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let (token, session, csrf) = match bearer {
            Some(t) => (t, None, String::new()),
            None => {
                let id = cookie(headers, COOKIE)?;
                let s = self.sessions.get(&id)?;
                (s.token, Some(id), s.csrf)
            }
        };
        match self.control.caller_of_token(&token) {
            Ok(Caller::Service) => None,
            Ok(caller) => Some(Who {
                caller,
                token,
                session,
                csrf,
            }),
            Err(_) => {
                // Revoked or removed: every session of it ends.
                self.sessions.remove_token(&token);
                None
            }
        }
    }

    pub(super) fn flash(&self, who: &Who) -> Option<String> {
        who.session
            .as_deref()
            .and_then(|s| self.sessions.take_flash(s))
    }
}

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A request signed in, or the answer to give instead: the sign-in page for pages, 401 for
/// the API and streams.
pub(super) enum Gate {
    Page,
    Api,
}

#[allow(clippy::result_large_err)] // an answer to send as it is, never propagated far
pub(super) fn signed_in(
    dash: &Dash,
    headers: &HeaderMap,
    gate: Gate,
    uri: &str,
) -> Result<Who, Response> {
    dash.who(headers).ok_or_else(|| match gate {
        Gate::Page => {
            let next =
                percent_encoding::utf8_percent_encode(uri, percent_encoding::NON_ALPHANUMERIC);
            Redirect::to(&format!("/login?next={next}")).into_response()
        }
        Gate::Api => json_error(
            StatusCode::UNAUTHORIZED,
            "sign in: send Authorization: Bearer <token> or use the dashboard's sign-in page",
        ),
    })
}

/// The signed-in user of a page request; without one, the sign-in page (then back here).
pub(super) struct PageWho(pub(super) Who);

/// The signed-in user of an API or stream request; without one, `401`.
pub(super) struct ApiWho(pub(super) Who);

#[axum::async_trait]
impl FromRequestParts<Arc<Dash>> for PageWho {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Self, Response> {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        signed_in(dash, &parts.headers, Gate::Page, uri).map(PageWho)
    }
}

#[axum::async_trait]
impl FromRequestParts<Arc<Dash>> for ApiWho {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Arc<Dash>) -> Result<Self, Response> {
        signed_in(dash, &parts.headers, Gate::Api, "").map(ApiWho)
    }
}

// Sign-in.

#[derive(Debug, Deserialize, Default)]
pub(super) struct NextQuery {
    #[serde(default)]
    next: String,
}

/// Only local paths: never redirect to another site.
pub(super) fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_string()
    } else {
        "/".into()
    }
}

pub(super) async fn login_form(Query(q): Query<NextQuery>) -> Response {
    axum::response::Html(pages::login_page(None, &safe_next(&q.next))).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
    #[serde(default)]
    next: String,
}

pub(super) async fn login(State(dash): State<Arc<Dash>>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    let next = safe_next(&f.next);
    match dash.control.caller_of_token(token) {
        Ok(Caller::Service) | Err(_) => (
            StatusCode::UNAUTHORIZED,
            axum::response::Html(pages::login_page(
                Some("That token is not an operator token or an app's token. Check it and try again."),
                &next,
            )),
        )
            .into_response(),
        Ok(caller) => {
            let id = dash.sessions.create(token);
            let next = match (&caller, next.as_str()) {
                (Caller::App { app, .. }, "/") => format!("/apps/{app}"),
                _ => next,
            };
            let mut cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict");
            if dash.secure {
                cookie.push_str("; Secure");
            }
            let mut resp = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn logout(
    State(dash): State<Arc<Dash>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        if let Some(s) = dash.sessions.get(&id) {
            if super::sessions::csrf_ok(&s, &f.csrf) {
                dash.sessions.remove(&id);
            }
        }
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("berth_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}
