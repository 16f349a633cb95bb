//! The web dashboard (`[dashboard]`, default `127.0.0.1:7180`): server-rendered pages over the
//! control API, with a little JavaScript for the live parts (server-sent events).
//!
//! Every page calls the gRPC services in-process with the signed-in user's token, so the
//! dashboard has exactly the rights of that token: an operator sees every app, an app's token
//! its own app only (another app's pages and API answer 403, whether it exists or not).
//! Sign-in keeps the token server-side in a session (see [`sessions`]); the JSON API and the
//! live streams also take `Authorization: Bearer`. Everything is served by berthd: no CDN.

mod auth;
mod changes;
mod client;
mod live;
mod logs;
mod pages;
mod sessions;
pub mod usage;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use berth_api::v1 as api;
use berth_api::v1::apps_server::Apps;
use berth_api::v1::config_server::Config as ConfigApi;
use berth_api::v1::deploys_server::Deploys;
use berth_api::v1::events_server::Events;
use berth_common::config::HumanDuration;
use berth_common::conn::serve_until_shutdown;
use berth_common::listener::{self, ConnCounters, ServeOptions};
use berth_common::shutdown::ShutdownSignal;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::service::Control;
use super::Config;
use auth::{login, login_form, logout, ApiWho, PageWho, Who};
use changes::{change, confirm};
use live::{app_live, apps_live};
use logs::{logs_page, logs_stream};
use sessions::Sessions;
use usage::{AppUsage, Usage};

const COOKIE: &str = "berth_session";
const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");

/// `[dashboard]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Where the dashboard listens; empty: no dashboard.
    pub listen: String,
    /// TLS: a PEM certificate chain and its key (both or neither). With TLS the session
    /// cookie is `Secure`; without it keep the dashboard on loopback or behind a TLS proxy.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// A sign-in ends after this long without a request.
    pub session_idle: HumanDuration,
    /// Sessions kept at once (the least recently used go first).
    pub max_sessions: usize,
    /// Connections served at once (live pages and log tails hold one each).
    pub max_connections: usize,
    /// How often live parts of a page (status, versions, releases, usage, events) are
    /// checked for changes.
    pub refresh_interval: HumanDuration,
    /// How often usage is read from the services' `/metrics`.
    pub sample_interval: HumanDuration,
    /// How much usage history the charts show.
    pub history: HumanDuration,
    /// The log collector's HTTP read API (the log tail is read through it with the
    /// signed-in token).
    pub logs_url: String,
    /// Admin endpoints of the cache server and the query proxy (the blob server's, the log
    /// collector's and the router's are `[services] blob_admin_url`, `logs_admin_url` and
    /// `[router] admin_url`); empty: not sampled.
    pub cache_admin_url: String,
    pub query_admin_url: String,
    /// Files holding tokens that the services' `/metrics` accept (tried in order). Default:
    /// `[services] admin_token_file`, berthd's own operator token file, and
    /// `[router] token_file`.
    pub metrics_token_files: Vec<PathBuf>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            listen: "127.0.0.1:7180".into(),
            tls_cert_file: None,
            tls_key_file: None,
            session_idle: HumanDuration(Duration::from_secs(12 * 3600)),
            max_sessions: 10_000,
            max_connections: 512,
            refresh_interval: HumanDuration(Duration::from_secs(1)),
            sample_interval: HumanDuration(Duration::from_secs(10)),
            history: HumanDuration(Duration::from_secs(3600)),
            logs_url: "http://127.0.0.1:8099".into(),
            cache_admin_url: "http://127.0.0.1:9211".into(),
            query_admin_url: "http://127.0.0.1:9233".into(),
            metrics_token_files: vec![],
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
struct Dash {
    control: Control,
    cfg: Arc<Config>,
    sessions: Sessions,
    usage: Arc<Usage>,
    secure: bool,
}

/// Binds the dashboard (when `listen` is set) and prints its `LISTEN` line; the server
/// and the usage sampler run until `shutdown`.
pub async fn start(
    cfg: Arc<Config>,
    control: Control,
    shutdown: ShutdownSignal,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    use anyhow::Context;
    let d = &cfg.dashboard;
    if d.listen.is_empty() {
        return Ok(None);
    }
    let tls = match (&d.tls_cert_file, &d.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            berth_router::tls::acceptor(
                &[berth_router::config::TlsCertificate {
                    cert_file: cert.clone(),
                    key_file: key.clone(),
                    hosts: vec![],
                }],
                false,
            )
            .map_err(|e| anyhow::anyhow!("[dashboard] {e}"))?,
        ),
        (None, None) => None,
        _ => anyhow::bail!("[dashboard] tls_cert_file and tls_key_file go together"),
    };
    let listener = tokio::net::TcpListener::bind(&d.listen)
        .await
        .with_context(|| format!("binding the dashboard on {}", d.listen))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTEN dashboard {}", listener.local_addr()?)?;
        out.flush()?;
    }
    let mut token_files = d.metrics_token_files.clone();
    if token_files.is_empty() {
        token_files.extend(cfg.services.admin_token_file.clone());
        token_files.push(cfg.data_dir.join("operator-token"));
        token_files.extend(cfg.router.token_file.clone());
    }
    let sources = usage::Sources {
        cache: d.cache_admin_url.clone(),
        blob: cfg.services.blob_admin_url.clone(),
        query: d.query_admin_url.clone(),
        logs: cfg.services.logs_admin_url.clone(),
        router: cfg.router.admin_url.clone().unwrap_or_default(),
        token_files,
    };
    let usage = Arc::new(Usage::default());
    tokio::spawn(usage::sample(
        usage.clone(),
        control.state.clone(),
        sources,
        d.sample_interval.0.max(Duration::from_millis(100)),
        d.history.0,
        shutdown.clone(),
    ));
    let dash = Arc::new(Dash {
        control,
        sessions: Sessions::new(d.session_idle.0, d.max_sessions),
        usage,
        secure: tls.is_some(),
        cfg: cfg.clone(),
    });
    let app = routes(dash);
    let opts = ServeOptions {
        max_connections: d.max_connections,
        drain_timeout: Duration::from_secs(2),
        reject_message: None,
    };
    let counters = Arc::new(ConnCounters::default());
    let tls = tls.map(Arc::new);
    Ok(Some(tokio::spawn(async move {
        listener::serve(
            listener,
            opts,
            counters,
            shutdown,
            move |stream, _peer, sd| serve_connection(app.clone(), tls.clone(), stream, sd),
        )
        .await;
    })))
}

async fn serve_connection(
    app: Router,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    stream: tokio::net::TcpStream,
    shutdown: ShutdownSignal,
) {
    match tls {
        Some(acceptor) => {
            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                Ok(Ok(s)) => serve_http(app, s, shutdown).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "dashboard TLS handshake failed"),
                Err(_) => tracing::debug!("dashboard TLS handshake timed out"),
            }
        }
        None => serve_http(app, stream, shutdown).await,
    }
}

async fn serve_http<S>(app: Router, stream: S, mut shutdown: ShutdownSignal)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
    if let Err(e) = serve_until_shutdown(conn, &mut shutdown).await {
        tracing::debug!(error = %e, "dashboard connection ended with an error");
    }
}

fn routes(dash: Arc<Dash>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/events", get(events_page))
        .route("/live", get(apps_live))
        .route("/apps/:app", get(app_page))
        .route("/apps/:app/live", get(app_live))
        .route("/apps/:app/logs", get(logs_page))
        .route("/apps/:app/logs/stream", get(logs_stream))
        .route("/apps/:app/:change", get(confirm).post(change))
        .route("/api/apps", get(api_apps))
        .route("/api/apps/:app", get(api_app))
        .route("/api/apps/:app/events", get(api_events))
        .route("/assets/dashboard.css", get(|| asset(CSS, "text/css")))
        .route("/assets/dashboard.js", get(|| asset(JS, "text/javascript")))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(dash)
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
         frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "same-origin");
    set(h, "x-frame-options", "DENY");
    set(h, "cache-control", "no-store");
    resp
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// A gRPC request carrying the user's token.
fn grpc<T>(who: &Who, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {}", who.token).parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn http_status(s: &tonic::Status) -> StatusCode {
    match s.code() {
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        tonic::Code::AlreadyExists | tonic::Code::Aborted => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn page_error(who: Option<&Who>, s: &tonic::Status) -> Response {
    let status = http_status(s);
    (
        status,
        axum::response::Html(pages::error_page(
            who.map(pages::Nav::of).as_ref(),
            status,
            s.message(),
        )),
    )
        .into_response()
}

async fn not_found(State(dash): State<Arc<Dash>>, headers: HeaderMap) -> Response {
    let who = dash.who(&headers);
    (
        StatusCode::NOT_FOUND,
        axum::response::Html(pages::error_page(
            who.as_ref().map(pages::Nav::of).as_ref(),
            StatusCode::NOT_FOUND,
            "There is no such page.",
        )),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// What the pages show, read through the control API.

/// Everything the app page shows.
#[derive(Debug, Clone)]
pub struct AppView {
    pub app: api::App,
    pub status: api::AppStatus,
    pub versions: Vec<api::Version>,
    pub releases: Vec<api::Release>,
    pub events: Vec<api::Event>,
    pub config: Vec<api::ConfigValue>,
    pub usage: AppUsage,
}

/// One row of the apps list.
#[derive(Debug, Clone)]
pub struct AppRow {
    pub name: String,
    pub status: api::AppStatus,
    pub usage: AppUsage,
}

impl Dash {
    async fn app_view(&self, who: &Who, app: &str) -> Result<AppView, tonic::Status> {
        let c = &self.control;
        let name = app.to_string();
        let a = Apps::get_app(c, grpc(who, api::GetAppRequest { name: name.clone() }))
            .await?
            .into_inner();
        let status = Deploys::status(c, grpc(who, api::StatusRequest { app: name.clone() }))
            .await?
            .into_inner();
        let versions =
            Deploys::list_versions(c, grpc(who, api::ListVersionsRequest { app: name.clone() }))
                .await?
                .into_inner()
                .versions;
        let releases = Deploys::list_releases(
            c,
            grpc(
                who,
                api::ListReleasesRequest {
                    app: name.clone(),
                    limit: 20,
                },
            ),
        )
        .await?
        .into_inner()
        .releases;
        let events = Events::list_events(
            c,
            grpc(
                who,
                api::ListEventsRequest {
                    app: name.clone(),
                    before_seq: 0,
                    limit: 20,
                },
            ),
        )
        .await?
        .into_inner()
        .events;
        let config = ConfigApi::list_config(c, grpc(who, api::ListConfigRequest { app: name }))
            .await?
            .into_inner()
            .values;
        Ok(AppView {
            usage: self.usage.app(app),
            app: a,
            status,
            versions,
            releases,
            events,
            config,
        })
    }

    async fn app_rows(&self, who: &Who) -> Result<Vec<AppRow>, tonic::Status> {
        let apps = Apps::list_apps(&self.control, grpc(who, api::ListAppsRequest {}))
            .await?
            .into_inner()
            .apps;
        let mut rows = Vec::with_capacity(apps.len());
        for a in apps {
            let status = Deploys::status(
                &self.control,
                grpc(
                    who,
                    api::StatusRequest {
                        app: a.name.clone(),
                    },
                ),
            )
            .await?
            .into_inner();
            rows.push(AppRow {
                usage: self.usage.app(&a.name),
                name: a.name,
                status,
            });
        }
        Ok(rows)
    }
}

// ---------------------------------------------------------------------------------------
// Pages.

async fn home(State(dash): State<Arc<Dash>>, PageWho(who): PageWho) -> Response {
    if let Some(app) = who.own_app() {
        return Redirect::to(&format!("/apps/{app}")).into_response();
    }
    match dash.app_rows(&who).await {
        Ok(rows) => {
            let flash = dash.flash(&who);
            axum::response::Html(pages::apps_page(
                &pages::Nav::of(&who),
                &rows,
                flash.as_deref(),
            ))
            .into_response()
        }
        Err(s) => page_error(Some(&who), &s),
    }
}

async fn app_page(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    PageWho(who): PageWho,
) -> Response {
    match dash.app_view(&who, &app).await {
        Ok(view) => {
            let flash = dash.flash(&who);
            axum::response::Html(pages::app_page(
                &pages::Nav::of(&who),
                &view,
                flash.as_deref(),
            ))
            .into_response()
        }
        Err(s) => page_error(Some(&who), &s),
    }
}

#[derive(Debug, Deserialize, Default)]
struct EventsQuery {
    #[serde(default)]
    app: String,
    #[serde(default)]
    before: u64,
}

async fn events_page(
    State(dash): State<Arc<Dash>>,
    PageWho(who): PageWho,
    Query(q): Query<EventsQuery>,
) -> Response {
    let app = match who.own_app() {
        Some(own) if q.app.is_empty() => own.to_string(),
        _ => q.app.clone(),
    };
    let events = Events::list_events(
        &dash.control,
        grpc(
            &who,
            api::ListEventsRequest {
                app: app.clone(),
                before_seq: q.before,
                limit: 50,
            },
        ),
    )
    .await;
    match events {
        Ok(r) => axum::response::Html(pages::events_page(
            &pages::Nav::of(&who),
            &app,
            &r.into_inner().events,
        ))
        .into_response(),
        Err(s) => page_error(Some(&who), &s),
    }
}

// ---------------------------------------------------------------------------------------
// The JSON API (what the pages show, for scripts and tests).

async fn api_apps(State(dash): State<Arc<Dash>>, ApiWho(who): ApiWho) -> Response {
    match dash.app_rows(&who).await {
        Ok(rows) => axum::Json(json!({
            "signed_in_as": who.label(),
            "apps": rows.iter().map(pages::row_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(s) => json_error(http_status(&s), s.message()),
    }
}

async fn api_app(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    ApiWho(who): ApiWho,
) -> Response {
    match dash.app_view(&who, &app).await {
        Ok(view) => axum::Json(pages::view_json(&view)).into_response(),
        Err(s) => json_error(http_status(&s), s.message()),
    }
}

async fn api_events(
    State(dash): State<Arc<Dash>>,
    Path(app): Path<String>,
    ApiWho(who): ApiWho,
    Query(q): Query<EventsQuery>,
) -> Response {
    let r = Events::list_events(
        &dash.control,
        grpc(
            &who,
            api::ListEventsRequest {
                app,
                before_seq: q.before,
                limit: 100,
            },
        ),
    )
    .await;
    match r {
        Ok(r) => axum::Json(json!({
            "events": r.into_inner().events.iter().map(pages::event_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(s) => json_error(http_status(&s), s.message()),
    }
}
