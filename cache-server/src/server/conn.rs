//! One connection's life: read into a buffer, parse every complete request, execute it
//! against the caller's namespace, write the replies, repeat. Authentication (memcached's
//! ASCII auth) decides the namespace; a revoked token closes the connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_common::listener::PeerAddr;
use berth_common::shutdown::ShutdownSignal;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::counters::{Ctr, Local};
use super::registry::{ConnInfo, ConnState};
use super::{App, Shared};
use crate::protocol::{self, Parse, Request, StoreCmd};
use crate::store::DeleteOpts;

/// Read buffer size kept between requests; larger buffers (big values) are released after use.
const RBUF: usize = 16 * 1024;
/// Above this, buffers are given back once empty.
const TRIM: usize = 256 * 1024;
/// Write out replies once this much is pending, even mid-batch (large multi-gets).
const OUT_FLUSH: usize = 1024 * 1024;

/// Who the connection is.
#[derive(Debug)]
pub(super) enum Session {
    /// Tenants are configured and the client has not logged in yet.
    Pending,
    /// An app's namespace (or the anonymous one).
    App(Login),
    /// An operator: administration, no namespace.
    Operator,
}

/// An app login; holds one of the app's connection slots until dropped.
#[derive(Debug)]
pub(super) struct Login {
    pub app: Arc<App>,
    /// SHA-256 of the token used, to notice its revocation.
    token: [u8; 32],
}

impl Drop for Login {
    fn drop(&mut self) {
        self.app.conns.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why the connection woke up.
enum Wake {
    Shutdown,
    Tenants(bool),
    Read(Option<std::io::Result<usize>>),
}

/// What to do after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Close,
}

/// The per-connection execution context.
pub(super) struct Conn<'a> {
    pub shared: &'a Shared,
    pub session: Session,
    pub local: Local,
    pub out: Vec<u8>,
    pub info: &'a ConnInfo,
    /// Relative time, read once per batch of requests.
    pub now: u32,
}

impl<'a> Conn<'a> {
    fn new(shared: &'a Shared, info: &'a ConnInfo) -> Self {
        let session = match &shared.anonymous {
            Some(app) => {
                app.conns.fetch_add(1, Ordering::Relaxed);
                app.total_conns.fetch_add(1, Ordering::Relaxed);
                Session::App(Login {
                    app: app.clone(),
                    token: [0; 32],
                })
            }
            None => Session::Pending,
        };
        Conn {
            shared,
            session,
            local: Local::default(),
            out: Vec::with_capacity(4096),
            info,
            now: shared.clock.now(),
        }
    }

    /// Queue `reply` unless the request said noreply.
    #[inline]
    pub fn reply(&mut self, reply: &[u8], noreply: bool) {
        if !noreply {
            self.out.extend_from_slice(reply);
        }
    }

    /// The app whose namespace this connection uses.
    pub fn app(&self) -> Option<Arc<App>> {
        match &self.session {
            Session::App(l) => Some(l.app.clone()),
            _ => None,
        }
    }

    /// Anonymous mode or an operator: may run administrative commands.
    pub fn is_admin(&self) -> bool {
        match &self.session {
            Session::Operator => true,
            Session::App(_) => self.shared.tenants.is_none(),
            Session::Pending => false,
        }
    }

    /// Publish the local counters to the app (or to the pre-login counters).
    fn flush_counters(&mut self) {
        match &self.session {
            Session::App(l) => l.app.counters.absorb(&mut self.local),
            _ => self.shared.unauth.absorb(&mut self.local),
        }
    }

    /// Whether the login still stands after a tenants change.
    fn still_valid(&self) -> bool {
        let Session::App(login) = &self.session else {
            return true;
        };
        let Some(handle) = &self.shared.tenants else {
            return true;
        };
        let set = handle.current();
        let token_ok = set
            .get(&login.app.name)
            .is_some_and(|t| t.tokens.iter().any(|h| h.sha256 == login.token));
        token_ok
            && self
                .shared
                .app(&login.app.name)
                .is_some_and(|a| Arc::ptr_eq(&a, &login.app))
    }

    /// memcached's ASCII authentication: the data of the first `set` is `<app> <token>`.
    fn authenticate(&mut self, data: &[u8]) -> Flow {
        self.local.incr(Ctr::AuthCmds);
        let text = std::str::from_utf8(data).unwrap_or("");
        let (name, token) = text.split_once(' ').unwrap_or((text, ""));
        let token = token.trim_end_matches(['\r', '\n']);
        if name == "_operator" {
            if !self.shared.operators.is_empty() && self.shared.operators.verify(token) {
                self.session = Session::Operator;
                self.out.extend_from_slice(b"STORED\r\n");
                return Flow::Continue;
            }
        } else if let Some(handle) = &self.shared.tenants {
            let set = handle.current();
            if set.authenticate(name, token).is_some() {
                let Some(app) = self.shared.app(name) else {
                    self.out
                        .extend_from_slice(b"SERVER_ERROR app namespace not ready, retry\r\n");
                    return Flow::Continue;
                };
                let max = app.max_conns.load(Ordering::Relaxed);
                let n = app.conns.fetch_add(1, Ordering::Relaxed) + 1;
                if max != 0 && n > max {
                    app.conns.fetch_sub(1, Ordering::Relaxed);
                    self.out
                        .extend_from_slice(b"SERVER_ERROR too many connections for this app\r\n");
                    return Flow::Close;
                }
                app.total_conns.fetch_add(1, Ordering::Relaxed);
                let token = berth_common::tenants::hash_token(token).sha256;
                *self.info.app.lock() = Some(name.to_string());
                self.session = Session::App(Login { app, token });
                self.out.extend_from_slice(b"STORED\r\n");
                return Flow::Continue;
            }
        }
        self.local.incr(Ctr::AuthErrors);
        self.out
            .extend_from_slice(b"CLIENT_ERROR authentication failure\r\n");
        Flow::Continue
    }

    /// Execute one request.
    fn execute(&mut self, req: Request<'_>) -> Flow {
        if let Session::Pending = self.session {
            return match req {
                Request::Store {
                    cmd: StoreCmd::Set,
                    data,
                    ..
                } => self.authenticate(data),
                Request::Quit => Flow::Close,
                _ => {
                    self.out
                        .extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
                    Flow::Continue
                }
            };
        }
        match req {
            Request::Quit => return Flow::Close,
            Request::Version => {
                self.out.extend_from_slice(b"VERSION ");
                self.out.extend_from_slice(super::stats::VERSION.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
            Request::Verbosity { level, noreply } => {
                if self.is_admin() {
                    self.shared.verbosity.store(level, Ordering::Relaxed);
                    berth_common::telemetry::set_verbosity(level.min(3) as u8);
                    self.reply(b"OK\r\n", noreply);
                } else {
                    self.out
                        .extend_from_slice(b"CLIENT_ERROR permission denied\r\n");
                }
            }
            Request::CacheMemlimit { megabytes, noreply } => {
                self.cache_memlimit(megabytes, noreply)
            }
            Request::Shutdown { graceful } => {
                if !self.shared.cfg.enable_shutdown {
                    self.out
                        .extend_from_slice(b"ERROR: shutdown not enabled\r\n");
                } else if !self.is_admin() {
                    self.out
                        .extend_from_slice(b"CLIENT_ERROR permission denied\r\n");
                } else {
                    tracing::warn!(graceful, "shutdown requested by a client");
                    self.shared.shutdown.trigger();
                    return Flow::Close;
                }
            }
            Request::Stats { args } => {
                // Include this batch's commands in the figures.
                self.flush_counters();
                self.stats(args);
            }
            Request::FlushAll { delay, noreply } => self.flush_all(delay, noreply),
            Request::MetaNoop => self.out.extend_from_slice(b"MN\r\n"),
            other => {
                let Some(app) = self.app() else {
                    self.out
                        .extend_from_slice(b"CLIENT_ERROR operator session has no namespace\r\n");
                    return Flow::Continue;
                };
                match other {
                    Request::Meta(m) => self.meta(&app, m),
                    other => self.classic(&app, other),
                }
            }
        }
        Flow::Continue
    }

    /// A storage request over the size limit: refuse it and, like memcached, drop the key's
    /// current value so a stale value is not served after a failed `set`/`ms`.
    fn too_large(&mut self, unlink: Option<&[u8]>, base64_key: bool, noreply: bool) {
        if let Session::Pending = self.session {
            self.out
                .extend_from_slice(b"CLIENT_ERROR unauthenticated\r\n");
            return;
        }
        self.local.incr(Ctr::CmdSet);
        self.local.incr(Ctr::StoreTooLarge);
        if let (Some(key), Some(app)) = (unlink, self.app()) {
            let mut buf = [0u8; 512];
            if let Ok(key) = super::meta::decoded_key(key, base64_key, &mut buf) {
                app.ns.delete(key, &DeleteOpts::default(), self.now);
            }
        }
        self.reply(protocol::TOO_LARGE, noreply);
    }

    fn cache_memlimit(&mut self, megabytes: u64, noreply: bool) {
        if !self.is_admin() {
            self.out
                .extend_from_slice(b"CLIENT_ERROR permission denied\r\n");
            return;
        }
        if megabytes < 8 {
            self.out
                .extend_from_slice(b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n");
            return;
        }
        match megabytes
            .checked_mul(1 << 20)
            .map(|b| self.shared.store.set_max_bytes(b))
        {
            Some(Ok(())) => self.reply(b"OK\r\n", noreply),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cache_memlimit refused");
                self.out.extend_from_slice(b"MEMLIMIT_ADJUST_FAILED input value is smaller than the apps' reserved budgets\r\n");
            }
            None => self
                .out
                .extend_from_slice(b"MEMLIMIT_ADJUST_FAILED input value is too large\r\n"),
        }
    }

    fn flush_all(&mut self, delay: i64, noreply: bool) {
        if self.shared.cfg.disable_flush_all {
            self.out
                .extend_from_slice(b"CLIENT_ERROR flush_all not allowed\r\n");
            return;
        }
        self.local.incr(Ctr::CmdFlush);
        let now = self.now;
        let at = if delay > 0 {
            self.shared.clock.expiry_at(delay, now)
        } else {
            now
        };
        match &self.session {
            Session::App(l) => l.app.ns.flush(at, now),
            // An operator flushes every namespace.
            Session::Operator => {
                for app in self.shared.all_apps() {
                    app.ns.flush(at, now);
                }
            }
            Session::Pending => return,
        }
        self.reply(b"OK\r\n", noreply);
    }
}

/// Serve one connection until it closes, errs, idles out, loses its login or the server stops.
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    mut stream: S,
    peer: PeerAddr,
    mut shutdown: ShutdownSignal,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let addr = match &peer {
        PeerAddr::Tcp(a) => format!("tcp:{a}"),
        PeerAddr::Unix => "unix:".to_string(),
    };
    let reg = shared.registry.register(addr, shared.clock.now());
    let mut conn = Conn::new(&shared, &reg.info);
    let mut rbuf = BytesMut::with_capacity(RBUF);
    let mut swallow = 0usize;
    let mut tenants_rx = shared.tenants.as_ref().map(|h| h.subscribe());
    let idle = shared.cfg.idle_timeout.0;
    let max_reqs = shared.cfg.max_reqs_per_event;
    let mut draining = false;
    loop {
        conn.now = shared.clock.now();
        let mut close = false;
        let mut more = false;
        let mut served = 0;
        reg.info.set_state(ConnState::ParseCmd);
        loop {
            if swallow > 0 {
                let n = swallow.min(rbuf.len());
                rbuf.advance(n);
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            if rbuf.is_empty() {
                break;
            }
            let (consumed, flow) = match protocol::parse(&rbuf, &shared.limits) {
                Parse::Incomplete => break,
                Parse::Request { req, consumed } => (consumed, conn.execute(req)),
                Parse::TooLarge {
                    unlink,
                    base64_key,
                    consumed,
                    swallow: s,
                    noreply,
                } => {
                    conn.too_large(unlink, base64_key, noreply);
                    swallow = s;
                    (consumed, Flow::Continue)
                }
                Parse::Error {
                    reply,
                    consumed,
                    swallow: s,
                    noreply,
                    close: c,
                } => {
                    conn.reply(reply, noreply);
                    swallow = s;
                    (consumed, if c { Flow::Close } else { Flow::Continue })
                }
            };
            conn.local.add(Ctr::BytesRead, consumed as u64);
            rbuf.advance(consumed);
            served += 1;
            if flow == Flow::Close {
                close = true;
                break;
            }
            if served >= max_reqs || conn.out.len() >= OUT_FLUSH {
                more = !rbuf.is_empty();
                break;
            }
        }
        if served > 0 {
            reg.info.last_cmd.store(conn.now, Ordering::Relaxed);
        }
        if !conn.out.is_empty() {
            reg.info.set_state(ConnState::Write);
            conn.local.add(Ctr::BytesWritten, conn.out.len() as u64);
            if stream.write_all(&conn.out).await.is_err() {
                break;
            }
            conn.out.clear();
            if conn.out.capacity() > TRIM {
                conn.out = Vec::with_capacity(4096);
            }
        }
        conn.flush_counters();
        if close {
            let _ = stream.shutdown().await;
            break;
        }
        if more {
            conn.local.incr(Ctr::ConnYields);
            tokio::task::yield_now().await;
            continue;
        }
        if rbuf.is_empty() && rbuf.capacity() > TRIM {
            rbuf = BytesMut::with_capacity(RBUF);
        }
        if draining && rbuf.is_empty() && swallow == 0 {
            break;
        }
        if rbuf.capacity() - rbuf.len() < 4096 {
            rbuf.reserve(RBUF.max(rbuf.len()));
        }
        reg.info.set_state(if rbuf.is_empty() {
            ConnState::Waiting
        } else {
            ConnState::Read
        });
        let wake = {
            let read = async {
                if idle.is_zero() {
                    Some(stream.read_buf(&mut rbuf).await)
                } else {
                    tokio::time::timeout(idle, stream.read_buf(&mut rbuf))
                        .await
                        .ok()
                }
            };
            let tenants_changed = async {
                match &mut tenants_rx {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.recv(), if !draining => Wake::Shutdown,
                ok = tenants_changed => Wake::Tenants(ok),
                res = read => Wake::Read(res),
            }
        };
        match wake {
            Wake::Shutdown => {
                // Finish a request that is half-read; otherwise leave now.
                if rbuf.is_empty() && swallow == 0 {
                    break;
                }
                draining = true;
            }
            Wake::Tenants(false) => {
                // The tenants handle is gone (the server is going away): stop watching it
                // rather than wake on the closed channel again and again.
                tenants_rx = None;
            }
            Wake::Tenants(true) => {
                if !conn.still_valid() {
                    let _ = stream
                        .write_all(b"SERVER_ERROR authentication revoked\r\n")
                        .await;
                    break;
                }
            }
            // Idle timeout, end of stream or a read error.
            Wake::Read(None | Some(Ok(0)) | Some(Err(_))) => break,
            Wake::Read(Some(Ok(_))) => {}
        }
    }
    conn.flush_counters();
}
