//! Binding and running the router: the HTTP and HTTPS listeners (one connection permit pool
//! for both, one task per connection, a bounded drain), the admin listener, and the access
//! log shipper.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use berth_common::admin::MetricsWriter;
use berth_common::conn::{serve_until_shutdown, SendTimeout};
use berth_common::listener::{self, ConnCounters, PeerAddr, ServeOptions};
use berth_common::shutdown::{Shutdown, ShutdownSignal};
use berth_common::tenants::OperatorTokens;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Semaphore;

use crate::backend::{ConnectOptions, Registry};
use crate::config::Config;
use crate::proxy::{ConnInfo, Proxy, ProxyOptions};
use crate::stats::Stats;
use crate::table::{self, Compiler, RouteTable, Routes};

/// The router's sockets, bound before anything else starts so a port clash fails fast.
pub struct Bound {
    http: TcpListener,
    https: Option<TcpListener>,
    admin: TcpListener,
}

impl Bound {
    /// Binds the addresses of `cfg`.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let http = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let https = match cfg.https_addr() {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on {a} (https)"))?,
            ),
            None => None,
        };
        let admin = TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen))?;
        Ok(Bound { http, https, admin })
    }

    /// Bound addresses: (kind, address) for the LISTEN lines.
    pub fn addrs(&self) -> std::io::Result<Vec<(&'static str, SocketAddr)>> {
        let mut out = vec![("http", self.http.local_addr()?)];
        if let Some(l) = &self.https {
            out.push(("https", l.local_addr()?));
        }
        out.push(("admin", self.admin.local_addr()?));
        Ok(out)
    }
}

/// Per-connection HTTP settings.
#[derive(Clone, Copy)]
struct ConnLimits {
    header_timeout: Duration,
    send_timeout: Duration,
    max_buf: usize,
    max_headers: usize,
    /// `Some(max concurrent streams)` when HTTP/2 is served too.
    http2: Option<u32>,
}

/// Loads the stored table, calls `on_ready` (where the binary prints its LISTEN lines) and
/// serves until `shutdown`; returns once connections have drained.
pub async fn run(
    bound: Bound,
    cfg: Config,
    shutdown: Shutdown,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let stats = Arc::new(Stats::default());
    let registry = Arc::new(Registry::default());
    let connect = ConnectOptions {
        connect_timeout: cfg.backend.connect_timeout.0,
        idle_timeout: cfg.backend.idle_timeout.0,
        max_idle: cfg.backend.max_idle_per_backend,
        down_time: cfg.backend.down_time.0,
    };
    let compile = {
        let (domains, defaults) = (cfg.domains.clone(), cfg.app_defaults.clone());
        let (registry, stats, connect) = (registry.clone(), stats.clone(), connect.clone());
        Arc::new(move |t: RouteTable| {
            Compiler {
                domains: &domains,
                defaults: &defaults,
                registry: &registry,
                connect: &connect,
                stats: &stats,
            }
            .compile(t)
        })
    };
    let path = cfg.routes_path();
    let stored = table::load_file(&path).map_err(anyhow::Error::msg)?;
    let initial = compile(stored.unwrap_or_default()).with_context(|| {
        format!(
            "the stored route table {} does not fit this config (fix the config, or remove the file and let berthd push a new table)",
            path.display()
        )
    })?;
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            cfg.data_dir.display()
        )
    })?;
    stats
        .global
        .generation
        .store(initial.source.generation, Ordering::Relaxed);
    let apps = initial.apps.len();
    let generation = initial.source.generation;
    let routes = Arc::new(Routes::new(initial, path));

    let mut tasks = tokio::task::JoinSet::new();
    let (access, access_task) = crate::accesslog::start(
        cfg.access_log_queue,
        cfg.access_log_flush_interval.0,
        stats.clone(),
        shutdown.signal(),
    );
    let proxy = Arc::new(Proxy {
        routes: routes.clone(),
        stats: stats.clone(),
        access,
        opts: ProxyOptions {
            trust_forwarded: cfg.trust_forwarded_headers,
            retry_body_bytes: cfg.backend.retry_body_bytes.0,
        },
    });

    let ready = Arc::new(AtomicBool::new(false));
    let conns = Arc::new(ConnCounters::default());
    let admin = crate::admin::Admin {
        routes: routes.clone(),
        compile,
        metrics: {
            let (stats, conns) = (stats.clone(), conns.clone());
            Arc::new(move |out: &mut String| {
                conns.write_metrics(&mut MetricsWriter::new(out), "berth_router");
                stats.write(out);
            })
        },
        ready: ready.clone(),
        control: Arc::new(OperatorTokens::from_hex_hashes(&cfg.control_tokens)?),
        operators: Arc::new(OperatorTokens::from_hex_hashes(&cfg.operator_tokens)?),
        on_applied: {
            let stats = stats.clone();
            Arc::new(move |g| {
                stats.global.generation.store(g, Ordering::Relaxed);
                stats.global.tables_applied.fetch_add(1, Ordering::Relaxed);
            })
        },
        on_refused: {
            let stats = stats.clone();
            Arc::new(move || {
                stats.global.tables_refused.fetch_add(1, Ordering::Relaxed);
            })
        },
    };
    let max_table = usize::try_from(cfg.max_table_bytes.0).unwrap_or(usize::MAX);
    let sd = shutdown.signal();
    tasks.spawn(async move {
        if let Err(e) = crate::admin::serve(bound.admin, admin, max_table, sd).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });

    let tls = match &bound.https {
        Some(_) => Some(Arc::new(parking_lot::RwLock::new(
            crate::tls::acceptor(&cfg.tls_certificates, cfg.http2).map_err(anyhow::Error::msg)?,
        ))),
        None => None,
    };
    let hangups = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    tasks.spawn(reload_certificates_on_sighup(
        hangups,
        tls.clone(),
        (cfg.tls_certificates.clone(), cfg.http2),
        shutdown.signal(),
    ));
    let limits = ConnLimits {
        header_timeout: cfg.header_timeout.0,
        send_timeout: cfg.send_timeout.0,
        max_buf: usize::try_from(cfg.max_header_bytes.0).unwrap_or(usize::MAX),
        max_headers: cfg.max_headers,
        http2: cfg.http2.then_some(cfg.http2_max_concurrent_streams),
    };
    let permits = Arc::new(Semaphore::new(
        cfg.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let opts = ServeOptions {
        max_connections: cfg.max_connections,
        drain_timeout: cfg.drain_timeout.0,
        reject_message: None,
    };
    ready.store(true, Ordering::Release);
    on_ready();
    tracing::info!(listen = %cfg.listen, generation, apps, "berth-router ready");

    let http = {
        let proxy = proxy.clone();
        listener::serve_with_permits(
            bound.http,
            opts.clone(),
            permits.clone(),
            conns.clone(),
            shutdown.signal(),
            move |stream, peer, sd| {
                serve_connection(proxy.clone(), stream, peer, "http", sd, limits)
            },
        )
    };
    let https = async {
        if let (Some(l), Some(acceptor)) = (bound.https, tls) {
            let proxy = proxy.clone();
            listener::serve_with_permits(
                l,
                opts.clone(),
                permits.clone(),
                conns.clone(),
                shutdown.signal(),
                move |stream, peer, sd| {
                    let (proxy, acceptor) = (proxy.clone(), acceptor.read().clone());
                    async move {
                        let hs =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                        match hs.await {
                            Ok(Ok(tls)) => {
                                serve_connection(proxy, tls, peer, "https", sd, limits).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                },
            )
            .await;
        }
    };
    tokio::join!(http, https);
    ready.store(false, Ordering::Release);
    shutdown.trigger();
    drop(proxy);
    while tasks.join_next().await.is_some() {}
    let _ = access_task.await;
    Ok(())
}

/// Re-reads the TLS certificates on SIGHUP (certificate rotation without a restart); a set
/// that fails to load is logged and the current one stays. Without TLS, SIGHUP is ignored.
async fn reload_certificates_on_sighup(
    mut hangups: Signal,
    tls: Option<Arc<parking_lot::RwLock<tokio_rustls::TlsAcceptor>>>,
    (certs, http2): (Vec<crate::config::TlsCertificate>, bool),
    mut shutdown: ShutdownSignal,
) {
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        let Some(tls) = &tls else {
            tracing::info!("SIGHUP: no TLS certificates configured, nothing to reload");
            continue;
        };
        let certs = certs.clone();
        match tokio::task::spawn_blocking(move || crate::tls::acceptor(&certs, http2)).await {
            Ok(Ok(acceptor)) => {
                *tls.write() = acceptor;
                tracing::info!("SIGHUP: TLS certificates reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "SIGHUP: TLS certificates not reloaded, keeping the current ones")
            }
            Err(e) => tracing::error!(error = %e, "SIGHUP: certificate reload failed"),
        }
    }
}

/// One client connection: HTTP/1.1 requests in order, keep-alive, graceful close on shutdown.
async fn serve_connection<S>(
    proxy: Arc<Proxy>,
    stream: S,
    peer: PeerAddr,
    scheme: &'static str,
    mut shutdown: ShutdownSignal,
    limits: ConnLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let info = ConnInfo {
        remote: peer.clone(),
        scheme,
    };
    let svc = service_fn(move |req| proxy.clone().handle(req, info.clone()));
    let io = TokioIo::new(SendTimeout::new(stream, limits.send_timeout));
    let result = match limits.http2 {
        None => {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_buf)
                .max_headers(limits.max_headers)
                .serve_connection(io, svc);
            serve_until_shutdown(conn, &mut shutdown)
                .await
                .map_err(|e| e.to_string())
        }
        Some(streams) => {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_buf)
                .max_headers(limits.max_headers);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(streams)
                .max_header_list_size(u32::try_from(limits.max_buf).unwrap_or(u32::MAX))
                // Pings find dead peers; an idle but live HTTP/2 client keeps its connection.
                .keep_alive_interval(limits.header_timeout)
                .keep_alive_timeout(limits.header_timeout);
            serve_until_shutdown(builder.serve_connection(io, svc), &mut shutdown)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
