//! App backends (WSGI server processes on `host:port` or a Unix socket): connecting, a pool of
//! idle keep-alive HTTP/1.1 connections per backend, and the in-flight count that load
//! balancing reads.
//!
//! A `Backend` lives as long as some route table or in-flight request holds it; the registry
//! hands the same one to every table that names the same address, so a table swap keeps its
//! pool and counters.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

use crate::body::ReqBody;

/// Where a backend listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendAddr {
    /// `host:port` (resolved at connect time).
    Tcp(String),
    /// A Unix socket path (`unix:/path` or an absolute path in the table).
    Unix(PathBuf),
}

impl BackendAddr {
    /// Parses a backend of the route table: `host:port`, `[v6]:port`, `unix:/path` or `/path`.
    pub fn parse(s: &str) -> Result<BackendAddr, String> {
        if let Some(path) = s.strip_prefix("unix:").or(s.starts_with('/').then_some(s)) {
            if !path.starts_with('/') {
                return Err(format!(
                    "backend {s:?}: a Unix socket path must be absolute"
                ));
            }
            return Ok(BackendAddr::Unix(PathBuf::from(path)));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("backend {s:?}: expected host:port or unix:/path"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!(
                "backend {s:?}: expected host:port with a port 1-65535"
            ));
        }
        Ok(BackendAddr::Tcp(s.to_owned()))
    }
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddr::Tcp(a) => f.write_str(a),
            BackendAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How the router connects to backends.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Time allowed for connecting.
    pub connect_timeout: Duration,
    /// Idle pooled connections older than this are closed instead of reused.
    pub idle_timeout: Duration,
    /// Idle connections kept per backend.
    pub max_idle: usize,
    /// How long a backend that refused a connection is skipped.
    pub down_time: Duration,
}

/// A sender on an open HTTP/1.1 connection to a backend.
pub type Sender = http1::SendRequest<ReqBody>;

/// One backend process.
pub struct Backend {
    /// Its address.
    pub addr: BackendAddr,
    /// Requests being served by it now.
    pub in_flight: AtomicUsize,
    opts: ConnectOptions,
    idle: Mutex<Vec<(Sender, Instant)>>,
    /// Until when (ms since `epoch`) it is skipped after a refused connection.
    down_until_ms: AtomicU64,
    epoch: Instant,
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection failed or timed out.
    #[error("cannot connect to backend {addr}: {reason}")]
    Io {
        /// The backend.
        addr: String,
        /// What happened.
        reason: String,
    },
}

impl Backend {
    fn new(addr: BackendAddr, opts: ConnectOptions) -> Backend {
        Backend {
            addr,
            in_flight: AtomicUsize::new(0),
            opts,
            idle: Mutex::new(Vec::new()),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether it refused a connection within the last `down_time`.
    pub fn is_down(&self) -> bool {
        self.epoch.elapsed().as_millis() < u128::from(self.down_until_ms.load(Ordering::Relaxed))
    }

    fn mark_down(&self) {
        let until = self.epoch.elapsed() + self.opts.down_time;
        self.down_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
    }

    /// An idle pooled connection that is still open and ready, if any.
    pub async fn checkout(&self) -> Option<Sender> {
        loop {
            let (mut sender, since) = self.idle.lock().pop()?;
            if since.elapsed() >= self.opts.idle_timeout || sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // The previous response just ended: the connection task may not have run yet.
            match tokio::time::timeout(Duration::from_millis(50), sender.ready()).await {
                Ok(Ok(())) => return Some(sender),
                _ => continue,
            }
        }
    }

    /// Puts a connection whose last response was read to the end back into the pool.
    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() < self.opts.max_idle {
            idle.push((sender, Instant::now()));
        }
    }

    /// Opens a new connection; a failure marks the backend down for a while.
    pub async fn connect(&self) -> Result<Sender, ConnectError> {
        let res = tokio::time::timeout(self.opts.connect_timeout, self.connect_inner()).await;
        let err = match res {
            Ok(Ok(sender)) => return Ok(sender),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {:?}", self.opts.connect_timeout),
        };
        self.mark_down();
        Err(ConnectError::Io {
            addr: self.addr.to_string(),
            reason: err,
        })
    }

    async fn connect_inner(&self) -> std::io::Result<Sender> {
        let io_err = |e: hyper::Error| std::io::Error::other(e.to_string());
        match &self.addr {
            BackendAddr::Tcp(addr) => {
                let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
                let _ = stream.set_nodelay(true);
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(io_err)?;
                tokio::spawn(drive(conn));
                Ok(sender)
            }
            BackendAddr::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(io_err)?;
                tokio::spawn(drive(conn));
                Ok(sender)
            }
        }
    }
}

async fn drive<T>(conn: http1::Connection<T, ReqBody>)
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "backend connection ended with an error");
    }
}

/// Hands out one shared [`Backend`] per address while any table or request holds it.
#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<BackendAddr, Weak<Backend>>>,
}

impl Registry {
    /// The live backend at `addr`, or a new one.
    pub fn get(&self, addr: &BackendAddr, opts: &ConnectOptions) -> Arc<Backend> {
        let mut map = self.map.lock();
        if let Some(b) = map.get(addr).and_then(Weak::upgrade) {
            return b;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let b = Arc::new(Backend::new(addr.clone(), opts.clone()));
        map.insert(addr.clone(), Arc::downgrade(&b));
        b
    }
}

/// Picks the backend with the fewest requests in flight, starting the scan at a rotating
/// index so equal loads are served round robin; backends marked down are used only when all
/// are.
pub fn pick(backends: &[Arc<Backend>], rotor: &AtomicUsize) -> Option<Arc<Backend>> {
    let n = backends.len();
    if n == 0 {
        return None;
    }
    let start = rotor.fetch_add(1, Ordering::Relaxed);
    let mut best: Option<(&Arc<Backend>, (bool, usize))> = None;
    for i in 0..n {
        let b = &backends[(start + i) % n];
        let key = (b.is_down(), b.in_flight.load(Ordering::Relaxed));
        if best.as_ref().is_none_or(|(_, k)| key < *k) {
            best = Some((b, key));
        }
    }
    best.map(|(b, _)| b.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            max_idle: 4,
            down_time: Duration::from_secs(60),
        }
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            BackendAddr::parse("127.0.0.1:9000").unwrap(),
            BackendAddr::Tcp("127.0.0.1:9000".into())
        );
        assert_eq!(
            BackendAddr::parse("[::1]:9000").unwrap(),
            BackendAddr::Tcp("[::1]:9000".into())
        );
        assert_eq!(
            BackendAddr::parse("unix:/run/a.sock").unwrap(),
            BackendAddr::Unix("/run/a.sock".into())
        );
        assert_eq!(
            BackendAddr::parse("/run/a.sock").unwrap(),
            BackendAddr::Unix("/run/a.sock".into())
        );
        for bad in ["", "localhost", "unix:rel.sock", "h:0", "h:99999", ":80"] {
            assert!(BackendAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_shares_live_backends() {
        let r = Registry::default();
        let a = BackendAddr::parse("127.0.0.1:1").unwrap();
        let b1 = r.get(&a, &opts());
        let b2 = r.get(&a, &opts());
        assert!(Arc::ptr_eq(&b1, &b2));
        drop((b1, b2));
        let b3 = r.get(&a, &opts());
        assert_eq!(b3.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn pick_prefers_least_loaded_then_rotates_and_avoids_down() {
        let r = Registry::default();
        let bs: Vec<_> = (1..=3)
            .map(|p| {
                r.get(
                    &BackendAddr::parse(&format!("127.0.0.1:{p}")).unwrap(),
                    &opts(),
                )
            })
            .collect();
        let rotor = AtomicUsize::new(0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            seen.insert(pick(&bs, &rotor).unwrap().addr.to_string());
        }
        assert_eq!(seen.len(), 3, "equal loads rotate");
        bs[0].in_flight.store(5, Ordering::Relaxed);
        bs[2].in_flight.store(5, Ordering::Relaxed);
        for _ in 0..4 {
            assert!(Arc::ptr_eq(&pick(&bs, &rotor).unwrap(), &bs[1]));
        }
        bs[1].mark_down();
        assert!(!Arc::ptr_eq(&pick(&bs, &rotor).unwrap(), &bs[1]));
        assert!(pick(&[], &rotor).is_none());
    }

    #[tokio::test]
    async fn connect_failure_marks_down() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let b = Backend::new(BackendAddr::parse(&addr.to_string()).unwrap(), opts());
        assert!(!b.is_down());
        let e = b.connect().await.unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        assert!(b.is_down());
    }
}
