//! One request's way through the router: route it, apply the app's limits, forward it to a
//! backend (retrying on a fresh connection when that is safe), and answer.
//!
//! The one place that turns failures into HTTP answers is `refusal_answer`; each answer
//! says which side failed (the client, the app's backend, or the router) without internals.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, Event};
use crate::backend::{self, Backend, Sender};
use crate::body::{self, LimitedBody, ReqBody, RespBody, StreamState};
use crate::routing::Route;
use crate::stats::{InFlight, Refusal, Stats};
use crate::table::{App, Routes};

/// The header that tells the app's runtime its `SCRIPT_NAME` (prefix routes only).
pub const SCRIPT_NAME_HEADER: &str = "x-berth-script-name";
const REQUEST_ID: &str = "x-request-id";
const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
const XFH: &str = "x-forwarded-host";

/// Settings of the proxy that do not come from the route table.
#[derive(Clone, Debug)]
pub struct ProxyOptions {
    /// Keep clients' `X-Forwarded-*` headers (append to `X-Forwarded-For`).
    pub trust_forwarded: bool,
    /// Bodies with a Content-Length up to this are read first, so they can be resent.
    pub retry_body_bytes: u64,
}

/// Where a request came from.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: berth_common::listener::PeerAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// The router's request handler.
pub struct Proxy {
    /// The route table.
    pub routes: Arc<Routes>,
    /// Metrics.
    pub stats: Arc<Stats>,
    /// Access log queue.
    pub access: AccessLog,
    /// Options.
    pub opts: ProxyOptions,
}

/// The router's own answer for a refusal: status and a short text that says which side
/// failed, without internals.
fn refusal_answer(why: Refusal, app: &str) -> (StatusCode, String) {
    match why {
        Refusal::Concurrency => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("app {app} is busy: too many requests in flight, retry shortly\n"),
        ),
        Refusal::BodyTooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large for app {app}\n"),
        ),
        Refusal::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            format!("app {app} did not answer in time\n"),
        ),
        Refusal::NoBackend => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("app {app} has no healthy backend\n"),
        ),
        Refusal::BackendFailed => (
            StatusCode::BAD_GATEWAY,
            format!("app {app}'s backend failed to answer\n"),
        ),
        Refusal::ClientFailed => (
            StatusCode::BAD_REQUEST,
            "the request could not be read from the client\n".to_owned(),
        ),
    }
}

/// What the access log and metrics need of a request, recorded once its response ends.
struct Finish {
    app: Arc<App>,
    access: AccessLog,
    started: Instant,
    time: SystemTime,
    method: String,
    path: String,
    host: String,
    request_id: String,
    remote: String,
    status: u16,
    /// A streamed request body, whose bytes are counted when the request ends.
    streamed: Option<Arc<StreamState>>,
    _in_flight: Option<InFlight>,
    _backend: Option<BackendLoad>,
}

impl Drop for Finish {
    /// A request dropped before it was answered (the client went away while the app was
    /// working) is still counted and logged, as 499 like nginx does.
    fn drop(&mut self) {
        if self.status != u16::MAX {
            if self.status == 0 {
                self.status = 499;
            }
            self.done(0);
        }
    }
}

impl Finish {
    /// Records the finished request once (`status` becomes `u16::MAX` afterwards).
    fn done(&mut self, bytes: u64) {
        if self.status == u16::MAX {
            return;
        }
        let took = self.started.elapsed();
        self.app.stats.record(self.status, took, bytes);
        if let Some(s) = &self.streamed {
            let n = s.bytes.load(Ordering::Relaxed);
            self.app.stats.bytes_in.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(target) = &self.app.logs {
            self.access.send(Event {
                target: target.clone(),
                time: self.time,
                method: std::mem::take(&mut self.method),
                path: std::mem::take(&mut self.path),
                host: std::mem::take(&mut self.host),
                status: self.status,
                bytes,
                duration: took,
                request_id: std::mem::take(&mut self.request_id),
                version: self.app.version.clone(),
                release: self.app.release.clone(),
                remote_addr: std::mem::take(&mut self.remote),
            });
        }
        self.status = u16::MAX;
    }
}

/// A request counted in its backend's in-flight load until dropped.
struct BackendLoad(Arc<Backend>);

impl BackendLoad {
    fn new(b: Arc<Backend>) -> BackendLoad {
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        BackendLoad(b)
    }
}

impl Drop for BackendLoad {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body as the forwarding loop holds it.
enum Payload {
    /// Empty or read into memory: can be sent again.
    Replay(Option<Bytes>),
    /// Streamed from the client: can be sent again only if it was handed back unsent.
    Stream(Option<ReqBody>, Arc<StreamState>),
}

struct Upstream {
    resp: Response<Incoming>,
    backend: Arc<Backend>,
    sender: Sender,
    load: BackendLoad,
}

impl Proxy {
    /// Serves one request; never fails (every failure is an HTTP answer).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Result<Response<RespBody>, Infallible> {
        let started = Instant::now();
        let time = SystemTime::now();
        let request_id = incoming_request_id(req.headers()).unwrap_or_else(new_request_id);
        let table = self.routes.load();
        let host = host_of(&req);
        let route = table.index.route(host.as_deref(), req.uri().path());
        let query = req.uri().query();
        let (app, upstream_pq, script_name) = match route {
            Route::NotFound => {
                self.stats.global.unrouted.fetch_add(1, Ordering::Relaxed);
                let msg = match &host {
                    Some(h) => format!("no app is served at {h}{}\n", req.uri().path()),
                    None => "no app is served here (the request has no Host header)\n".to_owned(),
                };
                return Ok(local(StatusCode::NOT_FOUND, msg, &request_id));
            }
            Route::Host { app } => {
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                (table.apps[app].clone(), pq.to_owned(), None)
            }
            Route::Prefix {
                app,
                script_name,
                path,
            } => {
                let pq = match query {
                    Some(q) => format!("{path}?{q}"),
                    None => path.to_owned(),
                };
                (table.apps[app].clone(), pq, Some(script_name.to_owned()))
            }
        };
        drop(table);
        let mut finish = Finish {
            app: app.clone(),
            access: self.access.clone(),
            started,
            time,
            method: req.method().as_str().to_owned(),
            path: req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            host: host.clone().unwrap_or_default(),
            request_id: request_id.clone(),
            remote: conn.remote.to_string(),
            status: 0,
            streamed: None,
            _in_flight: None,
            _backend: None,
        };
        let Some(in_flight) = app.stats.try_enter(app.limits.max_concurrent_requests) else {
            return Ok(self.refuse(Refusal::Concurrency, finish));
        };
        finish._in_flight = Some(in_flight);

        let upstream_uri = match Uri::try_from(upstream_pq) {
            Ok(u) => u,
            Err(_) => return Ok(self.refuse(Refusal::ClientFailed, finish)),
        };
        let (parts, incoming) = req.into_parts();
        let client_version = match parts.version {
            http::Version::HTTP_2 => http::Version::HTTP_2,
            _ => http::Version::HTTP_11,
        };
        let headers = upstream_headers(
            &parts.headers,
            &conn,
            host.as_deref(),
            &request_id,
            script_name.as_deref(),
            self.opts.trust_forwarded,
        );
        let template = Template {
            method: parts.method,
            uri: upstream_uri,
            headers,
        };
        let limit = app.limits.max_body_bytes;
        let declared = content_length(&parts.headers);
        if declared.is_some_and(|n| n > limit) {
            return Ok(self.refuse(Refusal::BodyTooLarge, finish));
        }
        let state = Arc::new(StreamState::default());
        let payload = if declared == Some(0) || (declared.is_none() && incoming.is_end_stream()) {
            Payload::Replay(None)
        } else if declared.is_some_and(|n| n <= self.opts.retry_body_bytes) {
            match incoming.collect().await {
                Ok(c) => {
                    let data = c.to_bytes();
                    app.stats
                        .bytes_in
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    Payload::Replay(Some(data))
                }
                Err(_) => return Ok(self.refuse(Refusal::ClientFailed, finish)),
            }
        } else {
            let body = LimitedBody::new(incoming, limit, state.clone()).boxed();
            finish.streamed = Some(state.clone());
            Payload::Stream(Some(body), state.clone())
        };

        let forwarded = tokio::time::timeout(
            app.limits.request_timeout,
            forward(&self, &app, &template, payload),
        )
        .await;
        let up = match forwarded {
            Ok(Ok(up)) => up,
            Ok(Err(why)) => return Ok(self.refuse(why, finish)),
            Err(_) => return Ok(self.refuse(Refusal::Timeout, finish)),
        };
        let Upstream {
            resp,
            backend,
            sender,
            load,
        } = up;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The client connection keeps its own protocol version (an HTTP/1.0 backend must not
        // turn the client's keep-alive connection into one that closes).
        parts.version = client_version;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            parts.headers.insert(REQUEST_ID, v);
        }
        finish.status = parts.status.as_u16();
        finish._backend = Some(load);
        let mut body = RespBody::upstream(body, backend, sender);
        body.on_end(Box::new(move |bytes| {
            let mut finish = finish;
            finish.done(bytes);
        }));
        Ok(Response::from_parts(parts, body))
    }

    fn refuse(&self, why: Refusal, mut finish: Finish) -> Response<RespBody> {
        finish.app.stats.refused(why);
        let (status, msg) = refusal_answer(why, &finish.app.name);
        let mut resp = local(status, msg, &finish.request_id);
        if why == Refusal::Concurrency || why == Refusal::NoBackend {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if why == Refusal::BodyTooLarge || why == Refusal::ClientFailed {
            // The unread body cannot be skipped safely: end the connection after this answer.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        finish.status = status.as_u16();
        resp.body_mut()
            .on_end(Box::new(move |bytes| finish.done(bytes)));
        resp
    }
}

/// The parts of the upstream request that every attempt reuses.
struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Sends the request to one of the app's current backends.
///
/// Retries: a connection that cannot be opened moves on to another backend; a request
/// handed back unsent (the pooled connection closed first) is sent again, whatever its
/// method; an idempotent request with a replayable body that failed before any response
/// arrived is sent once more on a fresh connection. Each retry reads the table again, so it
/// goes to the app's backends as they are now.
async fn forward(
    proxy: &Proxy,
    app: &Arc<App>,
    t: &Template,
    mut payload: Payload,
) -> Result<Upstream, Refusal> {
    let mut app = app.clone();
    let mut connect_failures = 0;
    let mut unsent_retries = 0;
    let mut resent = false;
    let mut fresh_only = false;
    loop {
        let Some(backend) = backend::pick(&app.backends, &app.rotor) else {
            return Err(Refusal::NoBackend);
        };
        let pooled = if fresh_only {
            None
        } else {
            backend.checkout().await
        };
        let mut sender = match pooled {
            Some(s) => s,
            None => match backend.connect().await {
                Ok(s) => s,
                Err(e) => {
                    connect_failures += 1;
                    tracing::debug!(app = %app.name, error = %e, "backend connect failed");
                    if connect_failures > app.backends.len().max(2) {
                        return Err(Refusal::NoBackend);
                    }
                    app = current(proxy, &app);
                    continue;
                }
            },
        };
        let body = match &mut payload {
            Payload::Replay(Some(b)) => body::full(b.clone()),
            Payload::Replay(None) => body::empty(),
            Payload::Stream(b, _) => match b.take() {
                Some(b) => b,
                None => return Err(Refusal::BackendFailed),
            },
        };
        let mut req = Request::new(body);
        *req.method_mut() = t.method.clone();
        *req.uri_mut() = t.uri.clone();
        *req.headers_mut() = t.headers.clone();
        let load = BackendLoad::new(backend.clone());
        match sender.try_send_request(req).await {
            Ok(resp) => {
                return Ok(Upstream {
                    resp,
                    backend,
                    sender,
                    load,
                })
            }
            Err(mut e) => {
                drop(load);
                if let Some(req) = e.take_message() {
                    if let Payload::Stream(b, _) = &mut payload {
                        *b = Some(req.into_body());
                    }
                    unsent_retries += 1;
                    if unsent_retries > 3 {
                        return Err(Refusal::BackendFailed);
                    }
                    app.stats.retries.fetch_add(1, Ordering::Relaxed);
                    app = current(proxy, &app);
                    continue;
                }
                if let Payload::Stream(_, state) = &payload {
                    if state.too_large.load(Ordering::Relaxed) {
                        return Err(Refusal::BodyTooLarge);
                    }
                    if state.client_failed.load(Ordering::Relaxed) {
                        return Err(Refusal::ClientFailed);
                    }
                }
                let error = e.into_error();
                let replayable = matches!(payload, Payload::Replay(_));
                if replayable && is_idempotent(&t.method) && !resent && !error.is_timeout() {
                    tracing::debug!(app = %app.name, backend = %backend.addr, error = %error, "retrying on a fresh connection");
                    resent = true;
                    fresh_only = true;
                    app.stats.retries.fetch_add(1, Ordering::Relaxed);
                    app = current(proxy, &app);
                    continue;
                }
                tracing::info!(app = %app.name, backend = %backend.addr, error = %error, "backend failed");
                return Err(Refusal::BackendFailed);
            }
        }
    }
}

/// The app as the table in use has it now (its backends may have changed).
fn current(proxy: &Proxy, app: &Arc<App>) -> Arc<App> {
    proxy
        .routes
        .load()
        .app(&app.name)
        .cloned()
        .unwrap_or_else(|| app.clone())
}

/// The router's own small plain-text answer.
fn local(status: StatusCode, msg: String, request_id: &str) -> Response<RespBody> {
    let mut resp = Response::new(RespBody::local(msg));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    resp
}

/// The request's host: the Host header, else the authority of an absolute-form target.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A client's `X-Request-Id` if it is sane: 1 to 128 characters of `A-Z a-z 0-9 - _ . : + / = @`.
pub fn incoming_request_id(h: &HeaderMap) -> Option<String> {
    let v = h.get(REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b));
    ok.then(|| v.to_owned())
}

/// A new request id: 128 random bits as 32 hex digits.
pub fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Removes the headers that belong to one connection, including those named by `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// The headers the backend gets: the client's, minus hop-by-hop ones and any the router
/// owns, plus the request id, the forwarding headers and, for a prefix route, the script name.
fn upstream_headers(
    client: &HeaderMap,
    conn: &ConnInfo,
    host: Option<&str>,
    request_id: &str,
    script_name: Option<&str>,
    trust_forwarded: bool,
) -> HeaderMap {
    let mut h = client.clone();
    strip_hop_by_hop(&mut h);
    h.remove(SCRIPT_NAME_HEADER);
    h.remove(REQUEST_ID);
    let prior_xff: Vec<String> = h
        .get_all(XFF)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    h.remove(XFF);
    let ip = match &conn.remote {
        berth_common::listener::PeerAddr::Tcp(a) => a.ip().to_string(),
        berth_common::listener::PeerAddr::Unix => "unix".to_owned(),
    };
    let xff = if trust_forwarded && !prior_xff.is_empty() {
        format!("{}, {ip}", prior_xff.join(", "))
    } else {
        ip
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(XFF, v);
    }
    if !(trust_forwarded && h.contains_key(XFP)) {
        h.insert(XFP, HeaderValue::from_static(conn.scheme));
    }
    let host = host.and_then(|s| HeaderValue::from_str(s).ok());
    if !(trust_forwarded && h.contains_key(XFH)) {
        h.remove(XFH);
        if let Some(v) = &host {
            h.insert(XFH, v.clone());
        }
    }
    // HTTP/2 clients name the host in :authority; the HTTP/1.1 backend needs a Host header.
    if let Some(v) = host {
        h.entry(header::HOST).or_insert(v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID, v);
    }
    if let Some(s) = script_name.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(SCRIPT_NAME_HEADER, s);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo {
            remote: berth_common::listener::PeerAddr::Tcp("10.0.0.7:5555".parse().unwrap()),
            scheme: "https",
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_ids_kept_when_sane() {
        let ok = map(&[("x-request-id", "abc-123_x.y:z")]);
        assert_eq!(incoming_request_id(&ok).as_deref(), Some("abc-123_x.y:z"));
        for bad in ["", "has space", "ä", &"x".repeat(129), "a\"b"] {
            let h = match HeaderValue::from_str(bad) {
                Ok(v) => {
                    let mut h = HeaderMap::new();
                    h.insert(REQUEST_ID, v);
                    h
                }
                Err(_) => continue,
            };
            assert_eq!(incoming_request_id(&h), None, "{bad:?}");
        }
        let a = new_request_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_request_id());
    }

    #[test]
    fn upstream_headers_replace_untrusted_forwarding_and_strip_hop_by_hop() {
        let client = map(&[
            ("host", "shop.localhost:8080"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "gopher"),
            ("x-berth-script-name", "/evil"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("x-request-id", "client-id"),
            ("accept", "*/*"),
        ]);
        let h = upstream_headers(
            &client,
            &conn(),
            Some("shop.localhost:8080"),
            "rid",
            Some("/shop"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.localhost:8080");
        assert_eq!(h["x-berth-script-name"], "/shop");
        assert_eq!(h["x-request-id"], "rid");
        assert_eq!(h["host"], "shop.localhost:8080");
        assert_eq!(h["accept"], "*/*");
        for gone in ["connection", "x-secret", "keep-alive"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        let h = upstream_headers(&client, &conn(), Some("x"), "rid", None, false);
        assert!(!h.contains_key("x-berth-script-name"));

        let h = upstream_headers(&client, &conn(), Some("x"), "rid", None, true);
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "gopher");
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(is_idempotent(&m));
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m));
        }
    }
}
