//! OTLP logs over gRPC: `LogsService/Export` on HTTP/2 (cleartext, prior knowledge) served by
//! hyper on the common accept loop, decoded by tonic with a prost codec that calls a malformed
//! message INVALID_ARGUMENT, then authenticated, rate-limited and stored like the other
//! sources. `Export` is answered only once every accepted record is durable.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_common::conn::serve_until_shutdown;
use berth_common::listener::PeerAddr;
use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::AppName;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, UnaryService};
use tonic::{Code, Status};

use super::auth::{AuthError, DEFAULT_APP};
use super::Shared;
use crate::protocol::otlp::{self, EXPORT_PATH};
use crate::protocol::time::now_nanos;
use crate::protocol::{Credential, Source};
use crate::store::{EventBatch, StoreError};

/// How often an OTLP connection with no traffic is pinged, and how long the answer may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What every OTLP connection shares: the collector and the request budget.
#[derive(Clone)]
pub struct OtlpService {
    shared: Arc<Shared>,
    requests: Arc<Semaphore>,
}

impl OtlpService {
    /// The service for one listener.
    pub fn new(shared: Arc<Shared>) -> OtlpService {
        let n = shared.cfg.otlp_max_concurrent_requests;
        OtlpService {
            shared,
            requests: Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    async fn handle(self, req: Request<Incoming>) -> Response<tonic::body::Body> {
        if req.uri().path() != EXPORT_PATH {
            let msg = format!("this is the Berth log collector: only {EXPORT_PATH} is served here");
            return Status::unimplemented(msg).into_http();
        }
        self.shared
            .counters
            .otlp_requests
            .fetch_add(1, Ordering::Relaxed);
        // Taken before the body is read: past the budget, requests wait (HTTP/2 flow control
        // stops their senders) instead of being buffered.
        let Ok(_permit) = self.requests.clone().acquire_owned().await else {
            return Status::unavailable("the log collector is shutting down").into_http();
        };
        let max = usize::try_from(self.shared.cfg.otlp_max_message_bytes.0).unwrap_or(usize::MAX);
        let mut grpc = Grpc::new(OtlpCodec {
            shared: self.shared.clone(),
        })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max);
        let mut resp = grpc.unary(Export(self.shared.clone()), req).await;
        // tonic calls an oversized message OUT_OF_RANGE; gRPC's status-code guide says
        // RESOURCE_EXHAUSTED, and that is what the handler itself never answers with
        // OUT_OF_RANGE, so the rewrite is unambiguous.
        if resp.headers().get("grpc-status").map(HeaderValue::as_bytes) == Some(b"11") {
            self.shared
                .counters
                .otlp_invalid
                .fetch_add(1, Ordering::Relaxed);
            let h = resp.headers_mut();
            h.insert("grpc-status", HeaderValue::from_static("8"));
            if let Ok(v) = HeaderValue::from_str(&format!(
                "request larger than otlp_max_message_bytes ({max} bytes); send smaller batches"
            )) {
                h.insert("grpc-message", v);
            }
        }
        resp
    }
}

impl hyper::service::Service<Request<Incoming>> for OtlpService {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// Serves one OTLP connection (HTTP/2) until the peer closes it or shutdown, when in-flight
/// requests finish and the peer gets GOAWAY.
pub async fn serve_conn(
    stream: TcpStream,
    peer: PeerAddr,
    service: OtlpService,
    mut shutdown: ShutdownSignal,
) {
    let streams = service.shared.cfg.otlp_max_concurrent_streams;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(streams)
        .max_header_list_size(16 << 10)
        // A peer that vanished without closing (no FIN) must not hold a connection slot
        // forever: HTTP/2 PINGs, which every gRPC client answers, find it out.
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = serve_until_shutdown(conn, &mut shutdown).await {
        tracing::debug!(%peer, error = %e, "OTLP connection ended with an error");
    }
}

/// The `Export` handler.
struct Export(Arc<Shared>);

impl UnaryService<ExportLogsServiceRequest> for Export {
    type Response = ExportLogsServiceResponse;
    type Future = BoxFuture<Result<tonic::Response<ExportLogsServiceResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<ExportLogsServiceRequest>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { export(&shared, request).await.map(tonic::Response::new) })
    }
}

/// Who sent a request, from its metadata (see docs/protocols/logs.md, "OTLP").
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OtlpAuth {
    /// `authorization: Bearer <token>`.
    bearer: Option<String>,
    /// `x-berth-token: <app>:<token>`, `<token>`, or without tenants `<app>`.
    token: Option<String>,
    /// `x-berth-app: <app>`.
    app: Option<String>,
}

impl OtlpAuth {
    /// Reads the three metadata keys.
    pub fn from_metadata(md: &MetadataMap) -> OtlpAuth {
        let get = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bearer = get("authorization").and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
        OtlpAuth {
            bearer,
            token: get("x-berth-token"),
            app: get("x-berth-app"),
        }
    }

    /// The app the request is for. With tenants, a token is required and decides the app
    /// (`x-berth-app`, if given, must agree). Without tenants: `x-berth-app`, else the app of
    /// an `x-berth-token: <app>[:…]`, else `None` (each resource's `service.name`, or
    /// `default`, is used).
    pub fn resolve(&self, shared: &Shared) -> Result<Option<String>, AuthError> {
        let Some(handle) = &shared.tenants else {
            let named = self.app.clone().or_else(|| {
                self.token
                    .as_deref()
                    .and_then(Credential::parse)
                    .map(|c| c.app)
            });
            return match named {
                Some(a) => AppName::parse(&a)
                    .map(|n| Some(n.as_str().to_owned()))
                    .map_err(|_| AuthError::BadName),
                None => Ok(None),
            };
        };
        let set = handle.current();
        let tenant = match (&self.bearer, &self.token) {
            (Some(t), _) => set.authenticate_token(t),
            (None, Some(t)) => match Credential::parse(t) {
                Some(Credential {
                    app,
                    token: Some(tok),
                }) => set.authenticate(&app, &tok),
                _ => set.authenticate_token(t),
            },
            (None, None) => return Err(AuthError::Missing),
        };
        let app = tenant.ok_or(AuthError::Failed)?.name.as_str().to_owned();
        match &self.app {
            Some(a) if *a != app => Err(AuthError::Failed),
            _ => Ok(Some(app)),
        }
    }
}

/// Records refused one by one, reported in `partial_success`.
#[derive(Debug, Default)]
struct Rejected {
    count: i64,
    reasons: Vec<String>,
}

impl Rejected {
    fn add(&mut self, n: usize, reason: String) {
        self.count += n as i64;
        if !self.reasons.contains(&reason) {
            self.reasons.push(reason);
        }
    }
}

async fn export(
    shared: &Shared,
    request: tonic::Request<ExportLogsServiceRequest>,
) -> Result<ExportLogsServiceResponse, Status> {
    let auth = OtlpAuth::from_metadata(request.metadata());
    let named = match auth.resolve(shared) {
        Ok(a) => a,
        Err(e) => {
            shared
                .counters
                .unauthenticated
                .fetch_add(1, Ordering::Relaxed);
            return Err(match e {
                AuthError::BadName => Status::invalid_argument(
                    "invalid app name in x-berth-app or x-berth-token metadata",
                ),
                AuthError::Missing => Status::unauthenticated(
                    "authentication required: send the app token as `authorization: Bearer <token>` \
                     or `x-berth-token: <app>:<token>` gRPC metadata (see docs/protocols/logs.md)",
                ),
                AuthError::Failed => Status::unauthenticated("authentication failed"),
            });
        }
    };
    let now = now_nanos();
    let max_event = usize::try_from(shared.cfg.max_message_bytes.0).unwrap_or(usize::MAX);
    let mut rejected = Rejected::default();
    let mut batches: Vec<(String, EventBatch)> = Vec::new();
    let mut encoded = Vec::new();
    for group in otlp::map_request(request.into_inner()) {
        let app = match &named {
            Some(a) => a.clone(),
            None => group
                .service_name
                .as_deref()
                .and_then(|n| AppName::parse(n).ok())
                .map_or_else(|| DEFAULT_APP.to_owned(), |n| n.as_str().to_owned()),
        };
        let idx = match batches.iter().position(|(a, _)| *a == app) {
            Some(i) => i,
            None => {
                batches.push((app, EventBatch::default()));
                batches.len() - 1
            }
        };
        for event in group.events {
            encoded.clear();
            event.encode_json(Source::Otlp, now, &mut encoded);
            let (app, batch) = &mut batches[idx];
            if encoded.len() > max_event {
                shared
                    .app_stats(app)
                    .dropped_invalid
                    .fetch_add(1, Ordering::Relaxed);
                rejected.add(
                    1,
                    format!("log record larger than max_message_bytes ({max_event} bytes)"),
                );
                continue;
            }
            batch.push(event.severity, |out| out.extend_from_slice(&encoded));
        }
    }
    let mut receipts = Vec::new();
    let mut stored = 0;
    let mut rate_limited = None;
    for (app, batch) in batches {
        let n = batch.len();
        if n == 0 {
            continue;
        }
        let (ok, res) = shared.ingest(&app, batch, true).await;
        if ok < n {
            let msg = shared.rate_error(&app);
            rejected.add(n - ok, msg.clone());
            rate_limited = Some(msg);
        }
        match res {
            Ok(Some(r)) => {
                stored += ok;
                receipts.push(r);
            }
            Ok(None) => {}
            Err(e) => return Err(store_status(e)),
        }
    }
    for r in receipts {
        match r.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(store_status(e)),
            Err(_) => return Err(store_status(StoreError::Closed)),
        }
    }
    if stored == 0 {
        if let Some(msg) = rate_limited {
            return Err(Status::resource_exhausted(msg));
        }
    }
    let partial_success = (rejected.count > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected.count,
        error_message: rejected.reasons.join("; "),
    });
    Ok(ExportLogsServiceResponse { partial_success })
}

/// The one place a store failure becomes a gRPC status.
fn store_status(e: StoreError) -> Status {
    match e {
        // gRPC's own guide: "perhaps the entire file system is out of space".
        StoreError::DiskFull => Status::resource_exhausted(e.to_string()),
        StoreError::Io | StoreError::Closed => Status::unavailable(e.to_string()),
    }
}

/// prost encoding, but a message that does not decode is the client's fault
/// (INVALID_ARGUMENT), not INTERNAL as tonic's default codec says.
struct OtlpCodec {
    shared: Arc<Shared>,
}

struct OtlpEncoder;

struct OtlpDecoder {
    shared: Arc<Shared>,
}

impl Codec for OtlpCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = ExportLogsServiceRequest;
    type Encoder = OtlpEncoder;
    type Decoder = OtlpDecoder;

    fn encoder(&mut self) -> OtlpEncoder {
        OtlpEncoder
    }

    fn decoder(&mut self) -> OtlpDecoder {
        OtlpDecoder {
            shared: self.shared.clone(),
        }
    }
}

impl Encoder for OtlpEncoder {
    type Item = ExportLogsServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl Decoder for OtlpDecoder {
    type Item = ExportLogsServiceRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportLogsServiceRequest::decode(src)
            .map(Some)
            .map_err(|e| {
                self.shared
                    .counters
                    .otlp_invalid
                    .fetch_add(1, Ordering::Relaxed);
                Status::new(
                    Code::InvalidArgument,
                    format!("malformed ExportLogsServiceRequest: {e}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_common::shutdown::Shutdown;
    use berth_common::tenants::TenantSet;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn shared(dir: &std::path::Path, tenants: Option<&str>) -> Arc<Shared> {
        let cfg = crate::config::Config {
            data_dir: dir.to_owned(),
            ..crate::config::Config::default()
        };
        let tenants = tenants.map(|t| TenantSet::from_toml_str(t).unwrap());
        Shared::new(cfg, tenants, &Shutdown::new()).unwrap()
    }

    const TENANTS: &str = "[[app]]\nname = \"shop\"\ntoken = \"t-shop\"\nlog_rate = 3\n\n[[app]]\nname = \"billing\"\ntoken = \"t-bill\"\n";

    fn auth(pairs: &[(&'static str, &str)]) -> OtlpAuth {
        OtlpAuth::from_metadata(&md(pairs))
    }

    #[test]
    fn with_tenants_the_token_decides_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), Some(TENANTS));
        let ok = |pairs: &[(&'static str, &str)]| auth(pairs).resolve(&s);
        assert_eq!(
            ok(&[("authorization", "Bearer t-shop")]),
            Ok(Some("shop".into()))
        );
        assert_eq!(
            ok(&[("x-berth-token", "billing:t-bill")]),
            Ok(Some("billing".into()))
        );
        assert_eq!(
            ok(&[("x-berth-token", "t-bill")]),
            Ok(Some("billing".into()))
        );
        assert_eq!(ok(&[]), Err(AuthError::Missing));
        assert_eq!(ok(&[("x-berth-app", "shop")]), Err(AuthError::Missing));
        assert_eq!(
            ok(&[("authorization", "Bearer nope")]),
            Err(AuthError::Failed)
        );
        assert_eq!(
            ok(&[("x-berth-token", "shop:t-bill")]),
            Err(AuthError::Failed)
        );
        assert_eq!(
            ok(&[
                ("authorization", "Bearer t-shop"),
                ("x-berth-app", "billing")
            ]),
            Err(AuthError::Failed)
        );
        assert_eq!(
            ok(&[("authorization", "Bearer t-shop"), ("x-berth-app", "shop")]),
            Ok(Some("shop".into()))
        );
    }

    #[test]
    fn without_tenants_metadata_may_name_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), None);
        let ok = |pairs: &[(&'static str, &str)]| auth(pairs).resolve(&s);
        assert_eq!(ok(&[]), Ok(None));
        assert_eq!(ok(&[("x-berth-app", "notes")]), Ok(Some("notes".into())));
        assert_eq!(
            ok(&[("x-berth-token", "notes:x")]),
            Ok(Some("notes".into()))
        );
        assert_eq!(
            ok(&[("x-berth-app", "Not/An/App")]),
            Err(AuthError::BadName)
        );
    }

    fn records(n: usize, service: &str) -> ExportLogsServiceRequest {
        let rec = |i: usize| LogRecord {
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("m{i}"))),
            }),
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(service.into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..n).map(rec).collect(),
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    fn req(
        body: ExportLogsServiceRequest,
        token: &str,
    ) -> tonic::Request<ExportLogsServiceRequest> {
        let mut r = tonic::Request::new(body);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    }

    /// The last synced sequence number (marked before acknowledgements are sent).
    fn durable_seq(s: &Shared, app: &str) -> u64 {
        let app = s.store.app(app);
        let segs = app.segments.lock();
        segs.iter().map(|seg| seg.durable_seq).max().unwrap_or(0)
    }

    #[tokio::test]
    async fn export_answers_after_durability_and_reports_rate_limits() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), Some(TENANTS));
        // billing has no rate limit: all stored, and durable by the time of the answer.
        let resp = export(&s, req(records(5, "whatever"), "t-bill"))
            .await
            .unwrap();
        assert_eq!(resp.partial_success, None);
        assert_eq!(durable_seq(&s, "billing"), 5);
        // shop: 3 per second, so 3 of 5 pass and the rest are a partial success ...
        let resp = export(&s, req(records(5, "shop"), "t-shop")).await.unwrap();
        let partial = resp.partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 2);
        assert!(partial.error_message.contains("rate limit"), "{partial:?}");
        assert_eq!(durable_seq(&s, "shop"), 3);
        // ... and when nothing passes, RESOURCE_EXHAUSTED.
        let err = export(&s, req(records(5, "shop"), "t-shop"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        let err = export(&s, req(records(1, "shop"), "bad"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        s.store.close();
    }

    #[tokio::test]
    async fn without_tenants_each_resource_names_its_app() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path(), None);
        let mut body = records(2, "guestbook");
        body.resource_logs
            .extend(records(1, "not_an_app").resource_logs);
        export(&s, tonic::Request::new(body)).await.unwrap();
        assert_eq!(durable_seq(&s, "guestbook"), 2);
        assert_eq!(durable_seq(&s, DEFAULT_APP), 1);
        s.store.close();
    }

    fn md(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn metadata_forms() {
        let a = OtlpAuth::from_metadata(&md(&[("authorization", "Bearer  abc ")]));
        assert_eq!(a.bearer.as_deref(), Some("abc"));
        let a = OtlpAuth::from_metadata(&md(&[("authorization", "Basic abc")]));
        assert_eq!(a.bearer, None);
        let a =
            OtlpAuth::from_metadata(&md(&[("x-berth-token", "shop:t"), ("x-berth-app", "shop")]));
        assert_eq!(a.token.as_deref(), Some("shop:t"));
        assert_eq!(a.app.as_deref(), Some("shop"));
        assert_eq!(OtlpAuth::from_metadata(&md(&[])), OtlpAuth::default());
    }
}
