//! Promote and roll back: a confirmation page, then the change.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_api::v1 as api;
use berth_api::v1::deploys_server::Deploys;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::auth::{ApiWho, PageWho};
use super::{grpc, http_status, page_error, pages, Dash};

/// A change's query string (`?target=VERSION` to promote, `?release=vN` to roll back) and the
/// confirmation form that runs it (`csrf`, `target` for either change, `reason`).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(super) struct ChangeForm {
    csrf: String,
    target: String,
    release: String,
    reason: String,
}

impl ChangeForm {
    /// What `change` applies to: the version to promote or the release to roll back to.
    fn target(&self, change: pages::Change) -> &str {
        match change {
            pages::Change::Rollback if !self.release.is_empty() => &self.release,
            _ => &self.target,
        }
    }
}

/// `/apps/{app}/promote?target=VERSION` or `/apps/{app}/rollback?release=vN`: what would
/// happen, with the form that does it.
pub(super) async fn confirm(
    State(dash): State<Arc<Dash>>,
    Path((app, change)): Path<(String, pages::Change)>,
    PageWho(who): PageWho,
    Query(q): Query<ChangeForm>,
) -> Response {
    let target = q.target(change);
    match dash.app_view(&who, &app).await {
        Ok(view) => axum::response::Html(pages::confirm_page(
            &pages::Nav::of(&who),
            &view,
            change,
            target,
        ))
        .into_response(),
        Err(s) => page_error(Some(&who), &s),
    }
}

/// Runs the change to its end, keeps its outcome as the next page's message and goes back
/// to the app's page (a JSON answer for Bearer requests).
pub(super) async fn change(
    State(dash): State<Arc<Dash>>,
    Path((app, change)): Path<(String, pages::Change)>,
    ApiWho(who): ApiWho,
    Form(f): Form<ChangeForm>,
) -> Response {
    let app = app.as_str();
    if let Some(id) = &who.session {
        let ok = dash
            .sessions
            .get(id)
            .is_some_and(|s| super::sessions::csrf_ok(&s, &f.csrf));
        if !ok {
            return page_error(
                Some(&who),
                &tonic::Status::permission_denied(
                    "This form has expired (or came from another site): go back, reload the page and try again.",
                ),
            );
        }
    }
    let reason = if f.reason.trim().is_empty() {
        "from the dashboard".to_string()
    } else {
        f.reason.trim().to_string()
    };
    let stream = match change {
        pages::Change::Promote => Deploys::promote(
            &dash.control,
            grpc(
                &who,
                api::PromoteRequest {
                    app: app.into(),
                    target: f.target(change).to_string(),
                    allow_downgrade: false,
                    reason,
                },
            ),
        )
        .await
        .map(|r| r.into_inner()),
        pages::Change::Rollback => Deploys::rollback(
            &dash.control,
            grpc(
                &who,
                api::RollbackRequest {
                    app: app.into(),
                    release: f.target(change).to_string(),
                    reason,
                },
            ),
        )
        .await
        .map(|r| r.into_inner()),
    };
    let outcome = match stream {
        Ok(mut s) => {
            let mut last: Result<api::Progress, tonic::Status> = Err(tonic::Status::internal(
                "the change ended without an answer",
            ));
            while let Some(p) = s.next().await {
                match p {
                    Ok(p) if p.done => {
                        last = Ok(p);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        last = Err(e);
                        break;
                    }
                }
            }
            last
        }
        Err(s) => Err(s),
    };
    let (ok, message) = match &outcome {
        Ok(p) if p.error.is_empty() => (true, pages::change_done(change, f.target(change), p)),
        Ok(p) => (false, format!("{} failed: {}", change.verb(), p.error)),
        Err(s) => (false, format!("{} failed: {}", change.verb(), s.message())),
    };
    match &who.session {
        Some(id) => {
            dash.sessions.set_flash(id, message);
            Redirect::to(&format!("/apps/{app}")).into_response()
        }
        None => {
            let status = match &outcome {
                Err(s) => http_status(s),
                Ok(_) if ok => StatusCode::OK,
                Ok(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (status, axum::Json(json!({ "ok": ok, "message": message }))).into_response()
        }
    }
}
