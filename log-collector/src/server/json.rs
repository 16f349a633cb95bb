//! JSON lines connections: optional hello (required with tenants), events batched per read,
//! replies (`{"ack":N}`, `{"error":…}`) written in order by a companion task once each
//! batch's fate is known.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use berth_common::listener::PeerAddr;
use berth_common::shutdown::ShutdownSignal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::auth::AuthCache;
use super::Shared;
use crate::protocol::framing::{LineFramer, Step};
use crate::protocol::json::{self, Line};
use crate::protocol::time::now_nanos;
use crate::protocol::{Credential, Source};
use crate::store::{EventBatch, Receipt};

/// Batches in flight per connection before reading stops (back-pressure on ack mode).
const IN_FLIGHT: usize = 64;

enum Reply {
    /// Raw bytes.
    Now(Vec<u8>),
    /// Wait for a batch; on failure report its lines.
    Wait(Receipt, u64, u64),
    /// All lines up to N are settled.
    Ack(u64),
}

struct Conn {
    shared: Arc<Shared>,
    replies: mpsc::Sender<Reply>,
    auth: AuthCache,
    app: Option<String>,
    credential: Option<Credential>,
    ack: bool,
    hello_done: bool,
    lines: u64,
}

/// Serves one JSON lines connection.
pub async fn serve_conn(
    stream: TcpStream,
    peer: PeerAddr,
    shared: Arc<Shared>,
    mut shutdown: ShutdownSignal,
) {
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let writer = tokio::spawn(write_replies(wr, rx));
    let max = usize::try_from(shared.cfg.max_message_bytes.0).unwrap_or(usize::MAX);
    let idle = shared.cfg.idle_timeout.0;
    let mut conn = Conn {
        shared,
        replies: tx,
        auth: AuthCache::default(),
        app: None,
        credential: None,
        ack: false,
        hello_done: false,
        lines: 0,
    };
    let mut framer = LineFramer::new(max);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    'conn: loop {
        buf.reserve(64 << 10);
        let read = async {
            if idle.is_zero() {
                Ok(rd.read_buf(&mut buf).await)
            } else {
                tokio::time::timeout(idle, rd.read_buf(&mut buf)).await
            }
        };
        tokio::select! {
            r = read => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            },
            _ = shutdown.recv() => break,
        };
        if !conn.still_authorized() {
            let msg = "authentication failed: the token was revoked";
            conn.reply(Reply::Now(json::error_reply(0, msg))).await;
            break;
        }
        let mut batches: Vec<(String, EventBatch, u64)> = Vec::new();
        let mut at = 0;
        loop {
            match framer.next(&buf[at..]) {
                Step::Incomplete => break,
                Step::Discard { consumed, error } => {
                    at += consumed;
                    if let Some(e) = error {
                        conn.lines += 1;
                        conn.shared
                            .counters
                            .bad_frames
                            .fetch_add(1, Ordering::Relaxed);
                        conn.reply(Reply::Now(json::error_reply(conn.lines, &e.to_string())))
                            .await;
                    }
                    if consumed == 0 {
                        break;
                    }
                }
                Step::Frame { msg, consumed } => {
                    let line = &buf[at + msg.start..at + msg.end];
                    at += consumed;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if !conn.line(line, &mut batches).await {
                        break 'conn;
                    }
                }
            }
        }
        buf.drain(..at);
        for (app, batch, first) in batches {
            conn.submit(&app, batch, first).await;
        }
        if conn.ack {
            conn.reply(Reply::Ack(conn.lines)).await;
        }
    }
    drop(conn);
    let _ = writer.await;
    tracing::debug!(%peer, "JSON connection closed");
}

impl Conn {
    /// Whether the hello's credential is still valid (tenants reloads can revoke it; the
    /// check is a generation comparison unless a reload happened).
    fn still_authorized(&mut self) -> bool {
        match (&self.credential, self.shared.tenants.as_ref()) {
            (Some(c), Some(t)) => self.auth.resolve(Some(t), Some(c), None).is_ok(),
            _ => true,
        }
    }

    async fn reply(&self, r: Reply) {
        let _ = self.replies.send(r).await;
    }

    /// Handles one line; false closes the connection.
    async fn line(&mut self, line: &[u8], batches: &mut Vec<(String, EventBatch, u64)>) -> bool {
        let parsed = json::parse_line(line);
        let counters = &self.shared.counters;
        match parsed {
            Ok(Line::Hello { credential, ack }) if !self.hello_done && self.lines == 0 => {
                self.hello_done = true;
                match self
                    .auth
                    .resolve(self.shared.tenants.as_ref(), Some(&credential), None)
                {
                    Ok(app) => {
                        self.reply(Reply::Now(json::hello_reply(&app, ack))).await;
                        self.app = Some(app);
                        self.credential = Some(credential);
                        self.ack = ack;
                        true
                    }
                    Err(e) => {
                        counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
                        self.reply(Reply::Now(json::error_reply(0, &e.to_string())))
                            .await;
                        false
                    }
                }
            }
            Ok(Line::Hello { .. }) => {
                self.lines += 1;
                counters.invalid_json.fetch_add(1, Ordering::Relaxed);
                let msg = "hello is only allowed as the first line";
                self.reply(Reply::Now(json::error_reply(self.lines, msg)))
                    .await;
                true
            }
            Ok(Line::Event(event, named)) => {
                self.lines += 1;
                let app = match &self.app {
                    Some(a) => a.clone(),
                    None => {
                        let cred = named.as_deref().and_then(Credential::parse);
                        let fallback = if self.shared.tenants.is_some() {
                            None
                        } else {
                            cred.as_ref()
                        };
                        match self
                            .auth
                            .resolve(self.shared.tenants.as_ref(), fallback, None)
                        {
                            Ok(a) => a,
                            Err(e) => {
                                counters.unauthenticated.fetch_add(1, Ordering::Relaxed);
                                let msg = format!(
                                    "{e}: the first line must be {{\"hello\": {{\"app\": …, \"token\": …}}}}"
                                );
                                self.reply(Reply::Now(json::error_reply(self.lines, &msg)))
                                    .await;
                                return self.shared.tenants.is_none();
                            }
                        }
                    }
                };
                let now = now_nanos();
                let idx = match batches.iter().position(|(a, _, _)| *a == app) {
                    Some(i) => i,
                    None => {
                        batches.push((app, EventBatch::default(), self.lines));
                        batches.len() - 1
                    }
                };
                batches[idx].1.push(event.severity, |out| {
                    event.encode_json(Source::Json, now, out)
                });
                true
            }
            Err(e) => {
                self.lines += 1;
                counters.invalid_json.fetch_add(1, Ordering::Relaxed);
                if let Some(app) = &self.app {
                    self.shared
                        .app_stats(app)
                        .dropped_invalid
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.reply(Reply::Now(json::error_reply(self.lines, &e.to_string())))
                    .await;
                true
            }
        }
    }

    async fn submit(&mut self, app: &str, batch: EventBatch, first: u64) {
        let n = batch.len() as u64;
        let last = self.lines;
        let (ok, res) = self.shared.ingest(app, batch, true).await;
        let ok = ok as u64;
        if ok < n {
            let msg = self.shared.rate_error(app);
            let mut r = json::error_reply(first + ok, &msg);
            if n - ok > 1 {
                // Name the range: the refused events are the batch's last ones.
                r = error_range(first + ok, last, &msg);
            }
            self.reply(Reply::Now(r)).await;
        }
        match res {
            Ok(Some(receipt)) => self.reply(Reply::Wait(receipt, first, last)).await,
            Ok(None) => {}
            Err(e) => {
                self.reply(Reply::Now(error_range(first, last, &e.to_string())))
                    .await
            }
        }
    }
}

fn error_range(first: u64, last: u64, msg: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({"error": msg, "line": first, "last": last}))
        .unwrap_or_default();
    v.push(b'\n');
    v
}

async fn write_replies(mut wr: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Reply>) {
    while let Some(r) = rx.recv().await {
        let bytes = match r {
            Reply::Now(b) => b,
            Reply::Ack(n) => json::ack_reply(n),
            Reply::Wait(receipt, first, last) => match receipt.await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => error_range(first, last, &e.to_string()),
                Err(_) => error_range(first, last, "the log collector is shutting down"),
            },
        };
        if wr.write_all(&bytes).await.is_err() {
            // The client went away; keep draining so the reader never blocks on us.
            while rx.recv().await.is_some() {}
            return;
        }
    }
    let _ = wr.shutdown().await;
}
