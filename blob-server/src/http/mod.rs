//! The HTTP API: Riak-style named objects (`/buckets/B/keys/K`), content-addressed blobs
//! (`/blobs`, `/blobs/{id}`), listings, signed URLs, `/ping` and `/stats`. Specified in
//! docs/protocols/blob.md.
//!
//! Requests are routed by hand ([`parse::route`]), so every name is decoded and checked in one
//! pure, tested place. Bodies stream both ways: uploads go chunk by chunk into the store's
//! writer, downloads leave chunk by chunk, each verified before it is sent.

mod auth;
mod blobs;
pub mod error;
mod listing;
mod objects;
pub mod parse;
mod sign;
mod stats;

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use berth_common::tenants::{Operators, TenantSet, TenantsHandle};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;

pub use auth::Caller;
pub use error::ApiError;
pub use sign::Signer;

use crate::store::{BlobReader, Store};
use parse::{NameLimits, Route};

/// Response bodies: a full buffer or a stream of verified chunks.
pub type Body = axum::body::Body;

/// The namespace used when the server runs without tenants (local development). App names
/// cannot contain `_`, so it never collides with a real app.
pub const DEV_APP: &str = "_dev";

/// Limits the API enforces besides the store's own.
#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Longest bucket or key name in bytes.
    pub max_name_bytes: usize,
    /// Most keys or buckets in one listing page (and the default page size).
    pub max_list_page: usize,
    /// Longest a signed URL may stay valid.
    pub max_signed_ttl: Duration,
    /// An upload that sends nothing for this long is abandoned (and nothing is stored).
    pub body_idle_timeout: Duration,
    /// Requests in flight at once per app without a tenants entry (with one: its
    /// `max_connections`).
    pub default_max_requests: u32,
}

/// Counters for `/stats` and `/metrics`.
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub requests: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub status_2xx: AtomicU64,
    pub status_3xx: AtomicU64,
    pub status_4xx: AtomicU64,
    pub status_5xx: AtomicU64,
    pub refused_too_many: AtomicU64,
    pub corrupt_reads: AtomicU64,
    pub scrub_passes: AtomicU64,
    pub scrub_bytes: AtomicU64,
    /// Corrupt contents the last finished scrub found.
    pub scrub_corrupt: AtomicU64,
    pub compact_volumes: AtomicU64,
    pub compact_reclaimed_bytes: AtomicU64,
}

/// Everything a request handler needs; shared by all connections.
pub struct Api {
    pub store: Store,
    /// `None`: no tenants, one anonymous namespace.
    pub tenants: Option<TenantsHandle>,
    pub operators: Arc<Operators>,
    pub signer: Signer,
    pub limits: ApiLimits,
    pub counters: ApiCounters,
    inflight: Mutex<HashMap<String, u32>>,
}

impl Api {
    /// Builds the API over an open store and applies the tenants' quotas to it.
    pub fn new(
        store: Store,
        tenants: Option<TenantsHandle>,
        operators: Arc<Operators>,
        signer: Signer,
        limits: ApiLimits,
    ) -> Arc<Api> {
        let api = Arc::new(Api {
            store,
            tenants,
            operators,
            signer,
            limits,
            counters: ApiCounters::default(),
            inflight: Mutex::new(HashMap::new()),
        });
        api.apply_tenants();
        api
    }

    /// Applies the current tenants' quotas to the store (after start and every reload).
    pub fn apply_tenants(&self) {
        if let Some(h) = &self.tenants {
            let set = h.current();
            for t in set.iter() {
                self.store.set_quota(t.name.as_str(), Some(t.blob_bytes.0));
            }
        }
    }

    fn tenant_set(&self) -> Option<Arc<TenantSet>> {
        self.tenants.as_ref().map(|h| h.current())
    }

    fn name_limits(&self) -> NameLimits {
        NameLimits {
            max_name_bytes: self.limits.max_name_bytes,
        }
    }

    /// Serves one request; never fails (errors become replies).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let head_only = req.method() == Method::HEAD;
        let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || content_length(&req).ok().flatten().is_some_and(|n| n > 0);
        let mut resp = match self.dispatch(req).await {
            Ok(r) => r,
            Err(e) => {
                let mut r = e.into_response();
                // The request's body may be unread: the connection cannot carry another
                // request, so say so rather than let the client find a closed socket.
                if has_body {
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                r
            }
        };
        let counter = match resp.status().as_u16() {
            200..=299 => &self.counters.status_2xx,
            300..=399 => &self.counters.status_3xx,
            400..=499 => &self.counters.status_4xx,
            _ => &self.counters.status_5xx,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if head_only {
            let len = resp.headers().get(header::CONTENT_LENGTH).cloned();
            *resp.body_mut() = Body::empty();
            if let Some(len) = len {
                resp.headers_mut().insert(header::CONTENT_LENGTH, len);
            }
        }
        resp
    }

    async fn dispatch(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let route = parse::route(req.uri().path(), self.name_limits())?;
        let query = parse::query_pairs(req.uri().query())?;
        let method = req.method().clone();
        match (&route, &method) {
            (Route::Ping, &Method::GET | &Method::HEAD) => return Ok(text(StatusCode::OK, "OK")),
            (Route::Root, &Method::GET | &Method::HEAD) => return Ok(stats::resources()),
            _ => {}
        }
        let caller = auth::caller(self, &req, &route, &query)?;
        if let Route::Stats = route {
            return match method {
                Method::GET | Method::HEAD => Ok(stats::stats(self, &caller)),
                _ => Err(ApiError::method_not_allowed("GET")),
            };
        }
        let app = caller.app()?.to_string();
        let slot = self.enter(&app)?;
        let resp = match route {
            Route::Buckets => match method {
                Method::GET | Method::HEAD => listing::buckets(self, &app, &query).await,
                _ => Err(ApiError::method_not_allowed("GET")),
            },
            Route::Keys { bucket } => match method {
                Method::GET | Method::HEAD => listing::keys(self, &app, &bucket, &query).await,
                Method::POST => objects::post_new(self, &app, &bucket, req).await,
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            Route::Object { bucket, key } => match method {
                Method::GET | Method::HEAD => objects::get(self, &app, &bucket, &key, &req).await,
                Method::PUT | Method::POST => objects::put(self, &app, &bucket, &key, req).await,
                Method::DELETE => objects::delete(self, &app, &bucket, &key, &req).await,
                _ => Err(ApiError::method_not_allowed("GET, HEAD, PUT, POST, DELETE")),
            },
            Route::Blobs => match method {
                Method::POST | Method::PUT => blobs::post(self, &app, req).await,
                _ => Err(ApiError::method_not_allowed("POST")),
            },
            Route::Blob { id } => match method {
                Method::GET | Method::HEAD => blobs::get(self, &app, &id, &req).await,
                Method::DELETE => blobs::delete(self, &app, &id).await,
                _ => Err(ApiError::method_not_allowed("GET, HEAD, DELETE")),
            },
            Route::Sign => match method {
                Method::POST => sign::mint(self, &caller, &app, req).await,
                _ => Err(ApiError::method_not_allowed("POST")),
            },
            Route::Ping | Route::Root | Route::Stats => unreachable!("answered above"),
        }?;
        // The app's request slot is held until the body has been sent, so downloads in
        // progress count against its max_connections.
        Ok(resp.map(|body| Body::new(Guarded { body, _slot: slot })))
    }

    /// Takes one of the app's request slots (its `max_connections`), or refuses with 429.
    fn enter(self: &Arc<Self>, app: &str) -> Result<InflightGuard, ApiError> {
        let max = self
            .tenant_set()
            .and_then(|s| s.get(app).map(|t| t.max_connections))
            .unwrap_or(self.limits.default_max_requests)
            .max(1);
        let mut map = self.inflight.lock();
        let n = map.entry(app.to_string()).or_insert(0);
        if *n >= max {
            drop(map);
            self.counters
                .refused_too_many
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                429,
                "too_many_requests",
                format!("the app already has {max} requests in flight (its max_connections)"),
            ));
        }
        *n += 1;
        Ok(InflightGuard {
            api: self.clone(),
            app: app.to_string(),
        })
    }

    /// The largest object `app` may store.
    fn max_object(&self, app: &str) -> u64 {
        let own = self
            .tenant_set()
            .and_then(|s| s.get(app).map(|t| t.max_object_bytes.0))
            .unwrap_or(u64::MAX);
        own.min(self.store.max_object())
    }

    /// Checks a declared `Content-Length` against the size limit and the quota before reading
    /// anything, so a client learns at once (the quota is the app's own: no oracle).
    fn check_declared_length(&self, app: &str, req: &Request<Incoming>) -> Result<(), ApiError> {
        let Some(len) = content_length(req)? else {
            return Ok(());
        };
        let max = self.max_object(app);
        if len > max {
            return Err(crate::store::Error::TooLarge { limit: max }.into());
        }
        let usage = self.store.usage(app);
        if usage
            .used
            .saturating_add(usage.reserved)
            .saturating_add(len)
            > usage.limit
        {
            return Err(crate::store::Error::QuotaExceeded { limit: usage.limit }.into());
        }
        Ok(())
    }

    /// Streams an upload's body into a new writer for `app`: the declared length is checked
    /// first, the app's own size limit applies, and a broken or stalled body is the client's
    /// error. Commit the writer to store it; dropping it discards everything.
    async fn receive(
        self: &Arc<Self>,
        app: &str,
        req: Request<Incoming>,
    ) -> Result<crate::store::BlobWriter, ApiError> {
        self.check_declared_length(app, &req)?;
        let mut w = self.store.writer(app)?;
        w.limit_size(self.max_object(app));
        let reader = self.body_reader(req);
        self.store
            .fill_writer(w, reader)
            .await
            .map_err(upload_error)
    }

    /// The request body as an `AsyncRead`, counting bytes and giving up after the idle timeout.
    fn body_reader(self: &Arc<Self>, req: Request<Incoming>) -> impl AsyncBufRead + Unpin + Send {
        let api = self.clone();
        let stream = req
            .into_body()
            .into_data_stream()
            .map_ok(move |b: Bytes| {
                api.counters
                    .bytes_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                b
            })
            .map_err(|e| io::Error::other(ClientBodyError(e.to_string())));
        IdleTimeout::new(StreamReader::new(stream), self.limits.body_idle_timeout)
    }
}

/// A response body that holds its request's slot until it has been sent (or dropped).
struct Guarded {
    body: Body,
    _slot: InflightGuard,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Releases an app's request slot when the request ends.
struct InflightGuard {
    api: Arc<Api>,
    app: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut map = self.api.inflight.lock();
        if let Some(n) = map.get_mut(&self.app) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.app);
            }
        }
    }
}

/// The `Content-Length` of a request, if declared.
fn content_length(req: &Request<Incoming>) -> Result<Option<u64>, ApiError> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("invalid_header", "invalid Content-Length")),
    }
}

/// A header's value as text, or a 400 if it is not visible ASCII.
fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    match req.headers().get(&name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::bad_request("invalid_header", &format!("the {name} header is not text"))
        }),
    }
}

/// A small text reply.
fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A JSON reply.
fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A body streaming `reader`: the first piece was read (and verified) before the headers went
/// out; each further one is read and verified just before it is sent (in place, see
/// [`crate::store::quick`], or awaited from the bucket). A
/// piece that fails its checksum ends the response early, so the client sees a short body,
/// never wrong bytes.
fn reader_body(api: &Arc<Api>, first: Option<Bytes>, reader: BlobReader) -> Body {
    let first_len = first.as_ref().map_or(0, |f| f.len() as u64);
    api.counters
        .bytes_out
        .fetch_add(first_len, Ordering::Relaxed);
    if reader.remaining() == 0 {
        return Body::from(first.unwrap_or_default());
    }
    let api = api.clone();
    let head = futures_util::stream::iter(first.map(Ok::<Bytes, io::Error>));
    let rest = futures_util::stream::unfold(Some(reader), move |state| {
        let api = api.clone();
        async move {
            let mut r: BlobReader = state?;
            match r.next_piece().await.map(|c| (r, c)) {
                Ok((r, Some(chunk))) => {
                    api.counters
                        .bytes_out
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    Some((Ok(chunk), Some(r)))
                }
                Ok((_, None)) => None,
                Err(e) => {
                    api.counters.corrupt_reads.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "read failed mid-response; closing it early");
                    Some((Err(io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Body::from_stream(futures_util::StreamExt::chain(head, rest))
}

/// Reads the first piece of `reader` (verifying it).
async fn first_piece(reader: BlobReader) -> Result<(Option<Bytes>, BlobReader), ApiError> {
    let mut r = reader;
    let c = r.next_piece().await?;
    Ok((c, r))
}

/// Short blocking store work, run in place (see [`crate::store::quick`]).
pub(crate) use crate::store::quick;

/// An upload failed on the client's side (it went away, or stalled): marks the I/O error so
/// it is answered as the client's fault, not the server's.
#[derive(Debug)]
struct ClientBodyError(String);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientBodyError {}

/// Turns a failed upload into a reply: the client's own failures (a broken or stalled body)
/// are 400/408; everything else goes through the store's mapping.
fn upload_error(e: crate::store::Error) -> ApiError {
    if let crate::store::Error::Io(io) = &e {
        if io.get_ref().is_some_and(|i| i.is::<ClientBodyError>()) {
            return if io.kind() == io::ErrorKind::TimedOut {
                ApiError::new(
                    408,
                    "request_timeout",
                    "the upload stalled; nothing was stored",
                )
            } else {
                ApiError::bad_request(
                    "incomplete_body",
                    "the upload was cut off; nothing was stored",
                )
            };
        }
    }
    e.into()
}

/// Wraps a reader so that a peer sending nothing for `timeout` gets a `TimedOut` error.
struct IdleTimeout<R> {
    inner: R,
    idle: Idle,
}

impl<R> IdleTimeout<R> {
    fn new(inner: R, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            idle: Idle {
                timeout,
                sleep: Box::pin(tokio::time::sleep(timeout)),
            },
        }
    }
}

/// The idle clock of an [`IdleTimeout`].
struct Idle {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Idle {
    /// Bytes arrived: the idle time starts over.
    fn restart(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.sleep.as_mut().reset(deadline);
    }

    /// The inner reader is pending: an error once it has been idle too long.
    fn poll_expired<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleTimeout<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.idle.restart();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.idle.poll_expired(cx),
        }
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for IdleTimeout<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_fill_buf(cx) {
            Poll::Ready(Ok(buf)) => {
                if !buf.is_empty() {
                    this.idle.restart();
                }
                Poll::Ready(Ok(buf))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.idle.poll_expired(cx),
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.get_mut().inner).consume(amt);
    }
}

/// What a body that stalled past the idle timeout fails with.
fn idle_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        ClientBodyError("the client sent nothing for too long".into()),
    )
}

use std::future::Future as _;
