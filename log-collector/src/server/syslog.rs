//! Syslog over TCP (RFC 6587 framing, any mix of octet counting, LF and NUL) and UDP (one
//! message per datagram). Syslog has no replies: refused input is counted and dropped.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_common::listener::PeerAddr;
use berth_common::shutdown::ShutdownSignal;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpStream, UdpSocket};

use super::auth::AuthCache;
use super::Shared;
use crate::protocol::framing::{Step, SyslogFramer};
use crate::protocol::syslog;
use crate::protocol::time::now_nanos;
use crate::protocol::{Credential, Source};
use crate::store::EventBatch;

/// Most datagrams gathered into one batch.
const UDP_BATCH: usize = 512;

/// Collects one read's (or datagram burst's) events per app.
struct Gather<'a> {
    shared: &'a Shared,
    auth: AuthCache,
    conn_cred: Option<Credential>,
    batches: Vec<(String, EventBatch)>,
    source: Source,
}

impl Gather<'_> {
    fn message(&mut self, frame: &[u8], now: i64) {
        let counters = &self.shared.counters;
        let msg = match syslog::parse(frame, now) {
            Ok(m) => m,
            Err(e) => {
                counters.invalid_syslog.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "syslog message refused");
                return;
            }
        };
        let cred = msg.credential.as_ref().or(self.conn_cred.as_ref());
        let app =
            match self
                .auth
                .resolve(self.shared.tenants.as_ref(), cred, msg.app_name.as_deref())
            {
                Ok(a) => a,
                Err(_) => {
                    counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
        let idx = match self.batches.iter().position(|(a, _)| *a == app) {
            Some(i) => i,
            None => {
                self.batches.push((app, EventBatch::default()));
                self.batches.len() - 1
            }
        };
        let source = self.source;
        self.batches[idx].1.push(msg.event.severity, |out| {
            msg.event.encode_json(source, now, out)
        });
    }
}

/// Serves one syslog TCP connection.
pub async fn serve_tcp(
    stream: TcpStream,
    peer: PeerAddr,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let mut stream = stream;
    let max = usize::try_from(shared.cfg.max_message_bytes.0).unwrap_or(usize::MAX);
    let idle = shared.cfg.idle_timeout.0;
    let mut framer = SyslogFramer::new(max);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut first = true;
    let mut g = Gather {
        shared: &shared,
        auth: AuthCache::default(),
        conn_cred: None,
        batches: Vec::new(),
        source: Source::SyslogTcp,
    };
    loop {
        buf.reserve(64 << 10);
        let read = async {
            if idle.is_zero() {
                Ok(stream.read_buf(&mut buf).await)
            } else {
                tokio::time::timeout(idle, stream.read_buf(&mut buf)).await
            }
        };
        let eof = tokio::select! {
            r = read => match r {
                Ok(Ok(0)) => true,
                Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => false,
            },
            _ = shutdown.recv() => break,
        };
        let now = now_nanos();
        let mut at = 0;
        loop {
            match framer.next(&buf[at..]) {
                Step::Incomplete => break,
                Step::Discard { consumed, error } => {
                    at += consumed;
                    if error.is_some() {
                        shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    if consumed == 0 {
                        break;
                    }
                }
                Step::Frame { msg, consumed } => {
                    let frame = &buf[at + msg.start..at + msg.end];
                    at += consumed;
                    if first {
                        first = false;
                        if let Some(c) = syslog::parse_auth_line(frame) {
                            if g.auth
                                .resolve(shared.tenants.as_ref(), Some(&c), None)
                                .is_err()
                            {
                                shared
                                    .counters
                                    .unauthenticated
                                    .fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(%peer, "syslog connection refused: bad credential");
                                return;
                            }
                            g.conn_cred = Some(c);
                            continue;
                        }
                    }
                    g.message(frame, now);
                }
            }
        }
        buf.drain(..at);
        if eof {
            // A last LF-framed message is complete when the sender closes (logger(1) does).
            if let Some(r) = framer.finish(&buf) {
                g.message(&buf[r], now);
            }
        }
        for (app, batch) in std::mem::take(&mut g.batches) {
            if let (_, Err(e)) = shared.ingest(&app, batch, false).await {
                tracing::debug!(%peer, error = %e, "events refused");
            }
        }
        if eof {
            break;
        }
    }
}

/// Serves the syslog UDP socket until shutdown.
pub async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let mut buf = vec![0u8; 65_536];
    let max = usize::try_from(shared.cfg.max_message_bytes.0).unwrap_or(usize::MAX);
    let mut g = Gather {
        shared: &shared,
        auth: AuthCache::default(),
        conn_cred: None,
        batches: Vec::new(),
        source: Source::SyslogUdp,
    };
    loop {
        let n = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, _)) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.recv() => return,
        };
        let mut count = 0;
        let mut len = n;
        loop {
            count += 1;
            shared
                .counters
                .udp_datagrams
                .fetch_add(1, Ordering::Relaxed);
            let mut d = &buf[..len];
            while let [rest @ .., b'\0' | b'\n' | b'\r'] = d {
                d = rest;
            }
            if d.len() > max {
                shared.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
            } else if !d.is_empty() {
                let now = now_nanos();
                g.message(d, now);
            }
            if count >= UDP_BATCH {
                break;
            }
            match sock.try_recv_from(&mut buf) {
                Ok((n, _)) => len = n,
                Err(_) => break,
            }
        }
        for (app, batch) in std::mem::take(&mut g.batches) {
            let n = batch.len();
            let ok = shared.admit(&app, n);
            let mut batch = batch;
            super::truncate(&mut batch, ok);
            if ok > 0 && shared.store.try_submit(&app, batch).is_err() {
                let stats = shared.app_stats(&app);
                stats.dropped_full.fetch_add(ok as u64, Ordering::Relaxed);
                stats.accepted.fetch_sub(ok as u64, Ordering::Relaxed);
            }
        }
    }
}
