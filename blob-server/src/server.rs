//! Binding and running the server: the HTTP API on its listener (one task per connection,
//! with connection permits and a bounded drain), the admin endpoint, and tenant reloads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_common::admin::{self, AdminState, MetricKind, MetricsWriter};
use berth_common::conn::{serve_until_shutdown, SendTimeout};
use berth_common::listener::{self, ConnCounters, ServeOptions};
use berth_common::shutdown::Shutdown;
use berth_common::tenants::{OperatorTokens, Operators, TenantSet, TenantsHandle};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::admin::PurgeState;
use crate::config::Config;
use crate::http::{Api, ApiLimits, Signer};
use crate::store::Store;

/// The server's sockets, bound before anything else starts so a port clash fails fast.
pub struct Bound {
    api: TcpListener,
    admin: TcpListener,
}

impl Bound {
    /// Binds the API and admin addresses of `cfg`.
    pub async fn bind(cfg: &Config) -> anyhow::Result<Bound> {
        let api = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let admin = TcpListener::bind(cfg.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen))?;
        Ok(Bound { api, admin })
    }

    /// The API's bound address.
    pub fn api_addr(&self) -> std::io::Result<SocketAddr> {
        self.api.local_addr()
    }

    /// The admin endpoint's bound address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Opens the store, calls `on_ready` (the binary prints its LISTEN lines there, so whoever
/// waits for them finds the store open) and serves until `shutdown`; returns once every
/// connection has ended (or the drain timeout passed) and the store is closed.
pub async fn run(
    bound: Bound,
    cfg: Config,
    tenants: Option<TenantSet>,
    shutdown: Shutdown,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let store_cfg = cfg.store_config();
    let backend = cfg.storage.backend().map_err(anyhow::Error::msg)?;
    let dir = cfg.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_with(&dir, store_cfg, backend))
        .await?
        .with_context(|| format!("cannot open the data directory {}", cfg.data_dir.display()))?;
    let signer = Signer::load_or_create(&cfg.signing_key_path()).with_context(|| {
        format!(
            "cannot load the signing key {}",
            cfg.signing_key_path().display()
        )
    })?;
    let configured = OperatorTokens::from_hex_hashes(&cfg.operator_tokens)
        .context("operator_tokens in the config")?;
    let handle = tenants.map(TenantsHandle::new);
    // The configured operator tokens, and those that come with the tenants (berthd's).
    let operators = Arc::new(match &handle {
        Some(h) => Operators::following(configured, h.clone()),
        None => Operators::fixed(configured),
    });
    let api = Api::new(
        store.clone(),
        handle.clone(),
        operators.clone(),
        signer,
        ApiLimits {
            max_name_bytes: cfg.max_name_bytes,
            max_list_page: cfg.max_list_page,
            max_signed_ttl: cfg.max_signed_url_ttl.0,
            body_idle_timeout: cfg.body_idle_timeout.0,
            default_max_requests: cfg.max_requests_per_app,
        },
    );
    let ready = Arc::new(AtomicBool::new(false));
    let conns = Arc::new(ConnCounters::default());
    let mut tasks = tokio::task::JoinSet::new();

    let purges = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let admin_state = AdminState {
        metrics: {
            let (api, conns, purges) = (api.clone(), conns.clone(), purges.clone());
            Arc::new(move |out: &mut String| {
                metrics(&api, &conns, out);
                MetricsWriter::new(out).counter(
                    "berth_blob_app_purges_total",
                    "apps purged through DELETE /v1/apps/{app}/data",
                    purges.load(Ordering::Relaxed),
                );
            })
        },
        ready: ready.clone(),
        operators: operators.clone(),
    };
    let admin_app = crate::admin::routes(PurgeState {
        store: store.clone(),
        operators: operators.clone(),
        dev: handle.is_none(),
        purges: purges.clone(),
    })
    .merge(admin::routes(admin_state));
    let sd = shutdown.signal();
    let admin_listener = bound.admin;
    tasks.spawn(async move {
        if let Err(e) = admin::serve_app(admin_listener, admin_app, sd).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });

    if let (Some(handle), Ok(Some(source))) = (handle, cfg.tenants_source()) {
        let mut rx = handle.subscribe();
        let reload = source.watch(handle.clone(), |_set: &TenantSet| Ok(()), shutdown.signal());
        tasks.spawn(async move {
            let _ = reload.await;
        });
        let (api, mut sd) = (api.clone(), shutdown.signal());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = sd.recv() => return,
                    changed = rx.changed() => {
                        if changed.is_err() { return; }
                        api.apply_tenants();
                    }
                }
            }
        });
    }

    if !cfg.scrub_interval.0.is_zero() {
        tasks.spawn(scrub_loop(
            api.clone(),
            cfg.scrub_interval.0,
            cfg.scrub_rate.0,
            shutdown.signal(),
        ));
    }

    if !cfg.compact_interval.0.is_zero() {
        tasks.spawn(compact_loop(
            api.clone(),
            cfg.compact_interval.0,
            cfg.compact_dead_ratio,
            shutdown.signal(),
        ));
    }

    let opts = ServeOptions {
        max_connections: cfg.max_connections,
        drain_timeout: cfg.drain_timeout.0,
        reject_message: None,
    };
    let timeouts = (cfg.header_timeout.0, cfg.send_timeout.0);
    ready.store(true, Ordering::Relaxed);
    on_ready();
    tracing::info!(
        listen = %cfg.listen,
        data_dir = %cfg.data_dir.display(),
        "blob-server ready"
    );
    let served = {
        let api = api.clone();
        listener::serve(
            bound.api,
            opts,
            conns,
            shutdown.signal(),
            move |stream, peer, sd| serve_connection(api.clone(), stream, peer, sd, timeouts),
        )
    };
    served.await;
    ready.store(false, Ordering::Relaxed);
    shutdown.trigger();
    while tasks.join_next().await.is_some() {}
    drop(api);
    tokio::task::spawn_blocking(move || store.close()).await?;
    Ok(())
}

/// One HTTP/1.1 connection: requests in order, keep-alive, graceful close on shutdown.
async fn serve_connection(
    api: Arc<Api>,
    stream: tokio::net::TcpStream,
    peer: listener::PeerAddr,
    mut shutdown: berth_common::shutdown::ShutdownSignal,
    (header_timeout, send_timeout): (Duration, Duration),
) {
    let svc = service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.handle(req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(SendTimeout::new(stream, send_timeout)), svc);
    if let Err(e) = serve_until_shutdown(conn, &mut shutdown).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Runs `pass` on the blocking pool every `interval` until shutdown; `pass` gets a stop check
/// to poll and returns `false` once it was interrupted (shutdown), which ends the loop. A pass
/// that fails is logged and the next one runs on schedule.
async fn every<F>(
    what: &'static str,
    interval: Duration,
    mut shutdown: berth_common::shutdown::ShutdownSignal,
    pass: F,
) where
    F: Fn(&dyn Fn() -> bool) -> crate::store::Result<bool> + Clone + Send + 'static,
{
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let (pass, sd) = (pass.clone(), shutdown.clone());
        match tokio::task::spawn_blocking(move || pass(&|| sd.is_triggered())).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return,
            Ok(Err(e)) => tracing::error!(error = %e, "{what} failed"),
            Err(e) => tracing::error!(error = %e, "{what} task failed"),
        }
    }
}

/// Compacts volumes every `interval` until shutdown.
async fn compact_loop(
    api: Arc<Api>,
    interval: Duration,
    dead_ratio: f64,
    shutdown: berth_common::shutdown::ShutdownSignal,
) {
    every("compaction", interval, shutdown, move |stop| {
        let report = api.store.compact(dead_ratio, stop)?;
        // With a bucket: objects of uploads cut off before their commit, failed deletes.
        api.store.sweep_backend()?;
        let c = &api.counters;
        c.compact_volumes
            .fetch_add(u64::from(report.volumes), Ordering::Relaxed);
        c.compact_reclaimed_bytes
            .fetch_add(report.reclaimed_bytes, Ordering::Relaxed);
        if report.volumes > 0 {
            tracing::info!(
                volumes = report.volumes,
                moved = report.moved,
                reclaimed_bytes = report.reclaimed_bytes,
                "compaction finished"
            );
        }
        Ok(!report.interrupted)
    })
    .await;
}

/// Scrubs every `interval` until shutdown.
async fn scrub_loop(
    api: Arc<Api>,
    interval: Duration,
    rate: u64,
    shutdown: berth_common::shutdown::ShutdownSignal,
) {
    every("scrub", interval, shutdown, move |stop| {
        let started = std::time::Instant::now();
        let report = api.store.scrub(rate, stop)?;
        if report.interrupted {
            return Ok(false);
        }
        let c = &api.counters;
        c.scrub_passes.fetch_add(1, Ordering::Relaxed);
        c.scrub_bytes.fetch_add(report.bytes, Ordering::Relaxed);
        c.scrub_corrupt
            .store(report.corrupt.len() as u64, Ordering::Relaxed);
        if report.corrupt.is_empty() {
            tracing::info!(
                checked = report.checked,
                bytes = report.bytes,
                took = ?started.elapsed(),
                "scrub finished: all content verified"
            );
        } else {
            tracing::error!(
                checked = report.checked,
                corrupt = report.corrupt.len(),
                "scrub finished: corrupt content found (see the errors above)"
            );
        }
        Ok(true)
    })
    .await;
}

/// The Prometheus metrics: requests, bytes, per-app usage and quota, store commits.
fn metrics(api: &Api, conns: &ConnCounters, out: &mut String) {
    let mut w = MetricsWriter::new(out);
    conns.write_metrics(&mut w, "berth_blob");
    let c = &api.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    w.counter(
        "berth_blob_requests_total",
        "HTTP requests received",
        load(&c.requests),
    );
    w.family(
        "berth_blob_responses_total",
        "HTTP responses by status class",
        MetricKind::Counter,
    );
    for (class, v) in [
        ("2xx", &c.status_2xx),
        ("3xx", &c.status_3xx),
        ("4xx", &c.status_4xx),
        ("5xx", &c.status_5xx),
    ] {
        w.sample_u64("berth_blob_responses_total", &[("class", class)], load(v));
    }
    w.counter(
        "berth_blob_bytes_in_total",
        "request body bytes received",
        load(&c.bytes_in),
    );
    w.counter(
        "berth_blob_bytes_out_total",
        "object bytes sent",
        load(&c.bytes_out),
    );
    w.counter(
        "berth_blob_refused_too_many_requests_total",
        "requests refused because their app had max_connections in flight",
        load(&c.refused_too_many),
    );
    w.counter(
        "berth_blob_corrupt_reads_total",
        "reads cut short because stored data failed its checksum",
        load(&c.corrupt_reads),
    );
    w.counter(
        "berth_blob_scrub_passes_total",
        "background scrubs completed",
        load(&c.scrub_passes),
    );
    w.counter(
        "berth_blob_scrub_bytes_total",
        "bytes read back and verified by scrubs",
        load(&c.scrub_bytes),
    );
    w.family(
        "berth_blob_scrub_corrupt",
        "corrupt contents found by the last completed scrub",
        MetricKind::Gauge,
    );
    w.sample_u64("berth_blob_scrub_corrupt", &[], load(&c.scrub_corrupt));
    w.counter(
        "berth_blob_compacted_volumes_total",
        "volume files emptied and removed by compaction",
        load(&c.compact_volumes),
    );
    w.counter(
        "berth_blob_compacted_bytes_total",
        "disk bytes given back by compaction",
        load(&c.compact_reclaimed_bytes),
    );
    w.counter(
        "berth_blob_commit_batches_total",
        "metadata transactions committed (each one fsync for a group of writes)",
        api.store.commit_batches(),
    );
    let cache = api.store.cache_stats().unwrap_or_default();
    w.counter(
        "berth_blob_read_cache_hits_total",
        "chunks served from the read cache",
        cache.hits,
    );
    w.counter(
        "berth_blob_read_cache_misses_total",
        "chunks the read cache did not hold (read from storage)",
        cache.misses,
    );
    w.counter(
        "berth_blob_read_cache_damaged_total",
        "cached chunks that failed their checksum and were read from storage again",
        cache.damaged,
    );
    w.family(
        "berth_blob_read_cache_bytes",
        "bytes held by the read cache, with per-entry overhead",
        MetricKind::Gauge,
    );
    w.sample_u64("berth_blob_read_cache_bytes", &[], cache.bytes);
    let apps: Vec<String> = match api.tenants.as_ref().map(|h| h.current()) {
        Some(set) => set.iter().map(|t| t.name.as_str().to_string()).collect(),
        None => vec![crate::http::DEV_APP.to_string()],
    };
    for (name, help, pick) in [
        (
            "berth_blob_app_bytes_used",
            "bytes of distinct content the app holds",
            0,
        ),
        (
            "berth_blob_app_bytes_reserved",
            "bytes reserved by the app's uploads in progress",
            1,
        ),
        ("berth_blob_app_quota_bytes", "the app's quota", 2),
    ] {
        w.family(name, help, MetricKind::Gauge);
        for app in &apps {
            let u = api.store.usage(app);
            let v = [u.used, u.reserved, u.limit][pick];
            w.sample_u64(name, &[("app", app)], v);
        }
    }
}
