//! The server: binds every listener, shares the store, tenants, rate limits and counters
//! with the per-source code ([`json`], [`syslog`], [`otlp`], [`http`]), and runs until
//! shutdown.

pub mod auth;
mod http;
mod json;
mod metrics;
mod otlp;
mod purge;
mod syslog;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_common::admin::{self, AdminState};
use berth_common::listener::{self, ConnCounters, ServeOptions};
use berth_common::shutdown::Shutdown;
use berth_common::tenants::{OperatorTokens, Operators, TenantSet, TenantsHandle};
use parking_lot::{Mutex, RwLock};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::Config;
use crate::store::{EventBatch, Limits, LimitsFn, Receipt, Store, StoreConfig, StoreError};
use auth::Bucket;

/// Per-app ingest counters and rate-limit state.
#[derive(Debug)]
pub struct AppStats {
    /// Events accepted for storage.
    pub accepted: AtomicU64,
    /// Events refused by the rate limit.
    pub dropped_rate: AtomicU64,
    /// Lines or messages refused as invalid (after the app was known).
    pub dropped_invalid: AtomicU64,
    /// Datagrams dropped because the write budget was full (UDP cannot wait).
    pub dropped_full: AtomicU64,
    bucket: Mutex<Bucket>,
}

/// Counters not tied to an app.
#[derive(Debug, Default)]
pub struct Counters {
    /// Input refused for a missing or wrong token.
    pub unauthenticated: AtomicU64,
    /// Frames over `max_message_bytes` (or with a bad octet count), skipped.
    pub bad_frames: AtomicU64,
    /// JSON lines that were not valid JSON events (or not UTF-8).
    pub invalid_json: AtomicU64,
    /// Syslog messages that could not be parsed.
    pub invalid_syslog: AtomicU64,
    /// UDP datagrams received.
    pub udp_datagrams: AtomicU64,
    /// Connections of each TCP source.
    pub json_conns: Arc<ConnCounters>,
    /// Syslog TCP connections.
    pub syslog_conns: Arc<ConnCounters>,
    /// OTLP (HTTP/2) connections.
    pub otlp_conns: Arc<ConnCounters>,
    /// OTLP `Export` requests received.
    pub otlp_requests: AtomicU64,
    /// OTLP requests refused as malformed or over `otlp_max_message_bytes`.
    pub otlp_invalid: AtomicU64,
    /// Events forwarded to NATS JetStream (acknowledged by it).
    pub forwarded: AtomicU64,
    /// Forwarding sessions interrupted by an error.
    pub forward_errors: AtomicU64,
    /// Events pushed to Loki (2xx answers).
    pub forwarded_loki: AtomicU64,
    /// Loki pushes that failed (retried).
    pub forward_loki_errors: AtomicU64,
}

/// What every connection shares.
pub struct Shared {
    /// The configuration.
    pub cfg: Config,
    /// Durable storage.
    pub store: Store,
    /// The tenants, or `None` when running without.
    pub tenants: Option<TenantsHandle>,
    /// Operator tokens (read every app, `/metrics`).
    pub operators: Arc<Operators>,
    /// Global counters.
    pub counters: Counters,
    shutdown: berth_common::shutdown::ShutdownSignal,
    apps: RwLock<HashMap<String, Arc<AppStats>>>,
}

impl Shared {
    /// Opens the store and builds the shared state.
    pub fn new(
        cfg: Config,
        tenants: Option<TenantSet>,
        shutdown: &Shutdown,
    ) -> anyhow::Result<Arc<Shared>> {
        let configured =
            OperatorTokens::from_hex_hashes(&cfg.operator_tokens).context("operator_tokens")?;
        let tenants = tenants.map(TenantsHandle::new);
        // The configured operator tokens, and those that come with the tenants (berthd's).
        let operators = match &tenants {
            Some(h) => Operators::following(configured, h.clone()),
            None => Operators::fixed(configured),
        };
        let limits: LimitsFn = {
            let tenants = tenants.clone();
            let default = Limits {
                bytes: cfg.default_log_bytes.0,
                retention: cfg.default_retention.0,
            };
            Arc::new(move |app: &str| match &tenants {
                Some(h) => h.current().get(app).map_or(default, |t| Limits {
                    bytes: t.log_bytes.0,
                    retention: t.log_retention.0,
                }),
                None => default,
            })
        };
        let store = Store::open(
            StoreConfig {
                dir: cfg.data_dir.clone(),
                segment_bytes: cfg.segment_bytes.0,
                segment_age: cfg.segment_age.0,
                commit_interval: cfg.commit_interval.0,
                max_buffer_bytes: usize::try_from(cfg.max_buffer_bytes.0).unwrap_or(usize::MAX),
            },
            limits,
        )
        .with_context(|| format!("opening the data directory {}", cfg.data_dir.display()))?;
        Ok(Arc::new(Shared {
            cfg,
            store,
            tenants,
            operators: Arc::new(operators),
            counters: Counters::default(),
            shutdown: shutdown.signal(),
            apps: RwLock::new(HashMap::new()),
        }))
    }

    /// The counters of `app`.
    pub fn app_stats(&self, app: &str) -> Arc<AppStats> {
        if let Some(s) = self.apps.read().get(app) {
            return s.clone();
        }
        let rate = self.rate(app);
        self.apps
            .write()
            .entry(app.to_owned())
            .or_insert_with(|| {
                Arc::new(AppStats {
                    accepted: AtomicU64::new(0),
                    dropped_rate: AtomicU64::new(0),
                    dropped_invalid: AtomicU64::new(0),
                    dropped_full: AtomicU64::new(0),
                    bucket: Mutex::new(Bucket::new(rate)),
                })
            })
            .clone()
    }

    fn rate(&self, app: &str) -> u32 {
        auth::rate_of(self.tenants.as_ref(), app, self.cfg.default_log_rate)
    }

    /// How many of `n` events of `app` the rate limit lets through now; counts the rest.
    pub fn admit(&self, app: &str, n: usize) -> usize {
        let stats = self.app_stats(app);
        let ok = stats.bucket.lock().admit(self.rate(app), n, Instant::now());
        stats
            .dropped_rate
            .fetch_add((n - ok) as u64, Ordering::Relaxed);
        stats.accepted.fetch_add(ok as u64, Ordering::Relaxed);
        ok
    }

    /// The error text a rate-limited client gets.
    pub fn rate_error(&self, app: &str) -> String {
        format!(
            "rate limit exceeded for app {app}: at most {} events per second (tenant log_rate)",
            self.rate(app)
        )
    }

    /// Rate-limits and submits a batch (waiting for room: back-pressure). Returns how many
    /// events were admitted and, if asked, the receipt.
    pub async fn ingest(
        &self,
        app: &str,
        mut batch: EventBatch,
        want_receipt: bool,
    ) -> (usize, Result<Option<Receipt>, StoreError>) {
        let n = batch.len();
        let ok = self.admit(app, n);
        if ok < n {
            truncate(&mut batch, ok);
        }
        if ok == 0 {
            return (0, Ok(None));
        }
        (ok, self.store.submit(app, batch, want_receipt).await)
    }
}

/// Keeps the first `n` events of a batch.
pub fn truncate(batch: &mut EventBatch, n: usize) {
    batch.items.truncate(n);
    let end = batch.items.last().map_or(0, |&(_, e)| e as usize);
    batch.data.truncate(end);
}

/// The sockets, bound before anything else happens.
#[derive(Debug)]
pub struct Bound {
    json: Option<TcpListener>,
    syslog_tcp: Option<TcpListener>,
    syslog_udp: Option<UdpSocket>,
    http: Option<TcpListener>,
    otlp: Option<TcpListener>,
    admin: TcpListener,
}

async fn bind_tcp(addr: &str, what: &str) -> anyhow::Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    Ok(Some(TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr}")
    })?))
}

impl Bound {
    /// Binds every configured listener.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let json = bind_tcp(&cfg.listen_json, "JSON lines").await?;
        let syslog_tcp = bind_tcp(&cfg.listen_syslog, "syslog (TCP)").await?;
        let syslog_udp = match &syslog_tcp {
            // UDP on the port TCP got (which matters when asked for port 0).
            Some(l) => {
                let addr = l.local_addr()?;
                Some(
                    UdpSocket::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen for syslog (UDP) on {addr}"))?,
                )
            }
            None => None,
        };
        let http = bind_tcp(&cfg.listen_http, "HTTP").await?;
        let otlp = bind_tcp(&cfg.listen_otlp, "OTLP (gRPC)").await?;
        let admin = bind_tcp(&cfg.admin_listen, "admin")
            .await?
            .context("admin_listen must be set")?;
        Ok(Bound {
            json,
            syslog_tcp,
            syslog_udp,
            http,
            otlp,
            admin,
        })
    }

    /// `LISTEN <kind> <addr>` lines for every bound socket.
    pub fn listen_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |kind: &str, addr: Option<std::io::Result<SocketAddr>>| {
            if let Some(Ok(a)) = addr {
                out.push(format!("LISTEN {kind} {a}"));
            }
        };
        add("json", self.json.as_ref().map(TcpListener::local_addr));
        add(
            "syslog-tcp",
            self.syslog_tcp.as_ref().map(TcpListener::local_addr),
        );
        add(
            "syslog-udp",
            self.syslog_udp.as_ref().map(UdpSocket::local_addr),
        );
        add("http", self.http.as_ref().map(TcpListener::local_addr));
        add("otlp", self.otlp.as_ref().map(TcpListener::local_addr));
        add("admin", Some(self.admin.local_addr()));
        out
    }
}

/// Serves until `shutdown`, then drains and closes the store.
pub async fn run(bound: Bound, shared: Arc<Shared>, shutdown: Shutdown) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let opts = ServeOptions {
        max_connections: shared.cfg.max_connections,
        drain_timeout: shared.cfg.drain_timeout.0,
        reject_message: None,
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(shared.cfg.max_connections));
    if let Some(l) = bound.json {
        let s = shared.clone();
        let counters = shared.counters.json_conns.clone();
        tasks.spawn(listener::serve_with_permits(
            l,
            opts.clone(),
            permits.clone(),
            counters,
            shutdown.signal(),
            move |stream, peer, sig| json::serve_conn(stream, peer, s.clone(), sig),
        ));
    }
    if let Some(l) = bound.syslog_tcp {
        let s = shared.clone();
        let counters = shared.counters.syslog_conns.clone();
        tasks.spawn(listener::serve_with_permits(
            l,
            opts.clone(),
            permits.clone(),
            counters,
            shutdown.signal(),
            move |stream, peer, sig| syslog::serve_tcp(stream, peer, s.clone(), sig),
        ));
    }
    if let Some(sock) = bound.syslog_udp {
        tasks.spawn(syslog::serve_udp(sock, shared.clone(), shutdown.signal()));
    }
    if let Some(l) = bound.otlp {
        let service = otlp::OtlpService::new(shared.clone());
        let counters = shared.counters.otlp_conns.clone();
        let opts = ServeOptions {
            max_connections: shared.cfg.otlp_max_connections,
            ..opts.clone()
        };
        tasks.spawn(listener::serve(
            l,
            opts,
            counters,
            shutdown.signal(),
            move |stream, peer, sig| otlp::serve_conn(stream, peer, service.clone(), sig),
        ));
    }
    if let Some(l) = bound.http {
        let s = shared.clone();
        let sig = shutdown.signal();
        tasks.spawn(async move {
            if let Err(e) = http::serve(l, s, sig).await {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        });
    }
    if !shared.cfg.forward_nats.is_empty() {
        tasks.spawn(crate::forward::run_nats(shared.clone(), shutdown.signal()));
    }
    if !shared.cfg.forward_loki.is_empty() {
        tasks.spawn(crate::forward::run_loki(shared.clone(), shutdown.signal()));
    }
    let ready = Arc::new(AtomicBool::new(true));
    let state = AdminState {
        metrics: {
            let s = shared.clone();
            Arc::new(move |out: &mut String| metrics::write(&s, out))
        },
        ready: ready.clone(),
        operators: shared.operators.clone(),
    };
    let admin_sig = shutdown.signal();
    let admin_app = purge::routes(shared.clone()).merge(admin::routes(state));
    tasks.spawn(async move {
        if let Err(e) = admin::serve_app(bound.admin, admin_app, admin_sig).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    if let (Some(handle), Ok(Some(source))) = (&shared.tenants, shared.cfg.tenants_source()) {
        let _follow = source.watch(handle.clone(), |_| Ok(()), shutdown.signal());
    }
    let mut sig = shutdown.signal();
    sig.recv().await;
    ready.store(false, Ordering::Relaxed);
    let drain = shared.cfg.drain_timeout.0 + Duration::from_secs(5);
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.close())
        .await
        .context("closing the store")?;
    Ok(())
}

impl Shared {
    /// A shutdown signal for long-lived streams (tails); set once `run` starts.
    pub fn shutdown_signal(&self) -> berth_common::shutdown::ShutdownSignal {
        self.shutdown.clone()
    }
}
