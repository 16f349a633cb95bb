//! The accept loop every TCP (or Unix socket) service runs: a connection permit per connection,
//! one task per connection inside a tracing span, and a bounded drain on shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};
use tracing::Instrument;

use crate::admin::{MetricKind, MetricsWriter};
use crate::shutdown::ShutdownSignal;

/// A source of connections that [`serve`] can drive.
///
/// `accept` must be cancel-safe (dropping the future loses no connection), because the accept
/// loop races it against shutdown.
pub trait Listener: Send + 'static {
    /// The connection type handed to the handler.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, PeerAddr)>> + Send;

    /// The bound address, for logs and for tests that bind port 0.
    fn local_addr_string(&self) -> String;
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, PeerAddr)> {
        // Fully qualified: `self.accept()` would resolve to this trait method again.
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        // Request/response protocols must not wait for Nagle to coalesce small replies.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %addr, error = %e, "cannot set TCP_NODELAY");
        }
        Ok((stream, PeerAddr::Tcp(addr)))
    }

    fn local_addr_string(&self) -> String {
        match self.local_addr() {
            Ok(addr) => addr.to_string(),
            Err(e) => format!("<unknown: {e}>"),
        }
    }
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&mut self) -> io::Result<(Self::Stream, PeerAddr)> {
        let (stream, _addr) = tokio::net::UnixListener::accept(self).await?;
        Ok((stream, PeerAddr::Unix))
    }

    fn local_addr_string(&self) -> String {
        match self.local_addr() {
            Ok(addr) => match addr.as_pathname() {
                Some(path) => format!("unix:{}", path.display()),
                None => "unix:<unnamed>".to_owned(),
            },
            Err(e) => format!("<unknown: {e}>"),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix socket peer (clients of a Unix socket are normally unnamed).
    Unix,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => addr.fmt(f),
            PeerAddr::Unix => f.write_str("unix"),
        }
    }
}

/// Connection counters kept by [`serve`], shared with the service's metrics and `stats`.
#[derive(Debug, Default)]
pub struct ConnCounters {
    /// Connections being served now.
    pub current: AtomicU64,
    /// Connections handed to the handler since start.
    pub total: AtomicU64,
    /// Connections refused with the reject message because every permit was taken.
    pub rejected: AtomicU64,
    /// Connections still open at the end of the drain, aborted.
    pub aborted: AtomicU64,
}

impl ConnCounters {
    /// Writes the four counters as `<prefix>_connections_current`, `<prefix>_connections_total`,
    /// `<prefix>_connections_rejected_total` and `<prefix>_connections_aborted_total`.
    pub fn write_metrics(&self, out: &mut MetricsWriter<'_>, prefix: &str) {
        let rows = [
            (
                "connections_current",
                "Connections being served now.",
                MetricKind::Gauge,
                &self.current,
            ),
            (
                "connections_total",
                "Connections accepted and served since start.",
                MetricKind::Counter,
                &self.total,
            ),
            (
                "connections_rejected_total",
                "Connections refused because the connection limit was reached.",
                MetricKind::Counter,
                &self.rejected,
            ),
            (
                "connections_aborted_total",
                "Connections aborted at the end of the shutdown drain.",
                MetricKind::Counter,
                &self.aborted,
            ),
        ];
        for (suffix, help, kind, value) in rows {
            let name = format!("{prefix}_{suffix}");
            out.family(&name, help, kind);
            out.sample_u64(&name, &[], value.load(Ordering::Relaxed));
        }
    }
}

/// How [`serve`] limits and drains connections.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connections served at once (at least 1).
    pub max_connections: usize,
    /// How long connections may take to finish once shutdown starts, before they are aborted.
    pub drain_timeout: Duration,
    /// `None`: a full server stops accepting (new clients wait in the kernel backlog).
    /// `Some(msg)`: a full server still accepts, writes `msg` and closes, as memcached does
    /// with `ERROR Too many open connections\r\n`.
    pub reject_message: Option<&'static [u8]>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
            reject_message: None,
        }
    }
}

/// Backoff after an accept error such as EMFILE, doubled on each consecutive error.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections until `shutdown`, running `handler` in its own task for each one.
///
/// Each task holds an owned semaphore permit until it ends, so at most
/// `opts.max_connections` handlers run at once. Accept errors are logged and retried after a
/// short backoff. On shutdown the listener is closed, handlers (which get the signal too) have
/// `opts.drain_timeout` to finish, and those still running are aborted and counted in
/// `counters.aborted`. Returns once every connection task has ended.
pub async fn serve<L, H, F>(
    listener: L,
    opts: ServeOptions,
    counters: Arc<ConnCounters>,
    shutdown: ShutdownSignal,
    handler: H,
) where
    L: Listener,
    H: Fn(L::Stream, PeerAddr, ShutdownSignal) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(
        opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    serve_with_permits(listener, opts, permits, counters, shutdown, handler).await;
}

/// [`serve`] with a permit pool the caller owns, so several listeners of one service (TCP
/// addresses and a unix socket, say) share one connection limit. `opts.max_connections` is
/// only reported; the pool's size is the limit.
pub async fn serve_with_permits<L, H, F>(
    mut listener: L,
    opts: ServeOptions,
    permits: Arc<Semaphore>,
    counters: Arc<ConnCounters>,
    mut shutdown: ShutdownSignal,
    handler: H,
) where
    L: Listener,
    H: Fn(L::Stream, PeerAddr, ShutdownSignal) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tracing::info!(
        listen = %listener.local_addr_string(),
        max_connections = opts.max_connections,
        "accepting connections"
    );

    loop {
        while let Some(res) = tasks.try_join_next() {
            log_task_end(res);
        }

        // Without a reject message the permit comes first, so a full server stops accepting.
        let early_permit = if opts.reject_message.is_none() {
            let acquire = permits.clone().acquire_owned();
            match reaping_until(acquire, &mut tasks, &mut shutdown).await {
                Some(Ok(permit)) => Some(permit),
                // The semaphore is never closed; treat it like shutdown rather than panic.
                Some(Err(_)) | None => break,
            }
        } else {
            None
        };

        let (stream, peer) = match reaping_until(listener.accept(), &mut tasks, &mut shutdown).await
        {
            None => break,
            Some(Ok(conn)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                conn
            }
            Some(Err(e)) => {
                if is_per_connection_error(&e) {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed");
                let pause = tokio::time::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                if reaping_until(pause, &mut tasks, &mut shutdown)
                    .await
                    .is_none()
                {
                    break;
                }
                continue;
            }
        };

        let permit = match early_permit {
            Some(permit) => permit,
            None => match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "connection limit reached, rejecting");
                    reject(stream, opts.reject_message.unwrap_or_default()).await;
                    continue;
                }
            },
        };

        let id = counters.total.fetch_add(1, Ordering::Relaxed) + 1;
        counters.current.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard {
            counters: counters.clone(),
            permit: Some(permit),
        };
        let span = tracing::info_span!("conn", id, %peer);
        let conn = handler(stream, peer, shutdown.clone());
        tasks.spawn(
            async move {
                // Dropped when the task ends, panics or is aborted: frees the permit either way.
                let _guard = guard;
                tracing::debug!("connection opened");
                conn.await;
                tracing::debug!("connection closed");
            }
            .instrument(span),
        );
    }

    drain(listener, tasks, opts.drain_timeout, &counters).await;
}

/// Closes the listener, waits up to `timeout` for the tasks, then aborts and counts the rest.
async fn drain<L: Listener>(
    listener: L,
    mut tasks: JoinSet<()>,
    timeout: Duration,
    counters: &ConnCounters,
) {
    let addr = listener.local_addr_string();
    drop(listener);
    if !tasks.is_empty() {
        tracing::info!(listen = %addr, connections = tasks.len(), ?timeout, "draining connections");
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            biased;
            res = tasks.join_next() => match res {
                Some(res) => log_task_end(res),
                None => break,
            },
            _ = &mut deadline => {
                tasks.abort_all();
                let mut aborted = 0;
                while let Some(res) = tasks.join_next().await {
                    match res {
                        Err(e) if e.is_cancelled() => aborted += 1,
                        other => log_task_end(other),
                    }
                }
                counters.aborted.fetch_add(aborted, Ordering::Relaxed);
                tracing::warn!(listen = %addr, aborted, "connections still open after the drain timeout were aborted");
                break;
            }
        }
    }
    tracing::info!(listen = %addr, "stopped accepting");
}

/// Awaits `fut` while reaping finished connection tasks; `None` if shutdown came first.
async fn reaping_until<T>(
    fut: impl Future<Output = T>,
    tasks: &mut JoinSet<()>,
    shutdown: &mut ShutdownSignal,
) -> Option<T> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.recv() => return None,
            value = &mut fut => return Some(value),
            Some(res) = tasks.join_next(), if !tasks.is_empty() => log_task_end(res),
        }
    }
}

fn log_task_end(res: Result<(), JoinError>) {
    if let Err(e) = res {
        if e.is_panic() {
            tracing::error!(error = %e, "connection handler panicked");
        }
    }
}

/// Errors about one pending connection, not about the listener: retry at once.
fn is_per_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Writes `msg` and closes, without ever waiting: a client that does not read must not stall
/// the accept loop. A fresh socket's send buffer has room, so the message nearly always fits.
async fn reject<S: AsyncWrite + Unpin>(mut stream: S, msg: &[u8]) {
    let mut rest = msg;
    std::future::poll_fn(|cx| {
        while !rest.is_empty() {
            match Pin::new(&mut stream).poll_write(cx, rest) {
                Poll::Ready(Ok(n)) if n > 0 => rest = &rest[n..],
                _ => break,
            }
        }
        let _ = Pin::new(&mut stream).poll_shutdown(cx);
        Poll::Ready(())
    })
    .await;
}

/// Lives as long as a connection task: keeps its permit and the `current` gauge honest.
struct ConnGuard {
    counters: Arc<ConnCounters>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        // Permit first: whoever sees `current` go down may rely on the slot being free.
        drop(self.permit.take());
        self.counters.current.fetch_sub(1, Ordering::Relaxed);
    }
}
