//! Forwarding to an existing log engine when one machine is outgrown. Loki: every app's
//! durable events are pushed in order (`POST /loki/api/v1/push`), at most 256 per request, the
//! cursor (`DATA_DIR/forward/loki/<app>`) moving on a 2xx answer. NATS JetStream: every
//! app's durable events are published, in order, to `<subject>.<app>` with a `Nats-Msg-Id`
//! of `<app>:<seq>` (JetStream drops duplicates within its window), each confirmed by
//! JetStream's ack before the app's forwarding cursor (`DATA_DIR/forward/nats/<app>`) moves.
//! One task; it reconnects with a pause after any error and resumes from the cursors.

pub mod loki;
pub mod nats;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_common::shutdown::ShutdownSignal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Shared;
use crate::store::read::{self, Filter, Order, Query};
use nats::ServerOp;

/// Events published before waiting for their acks.
const WINDOW: usize = 256;
/// How long to wait for the server (connect, acks).
const TIMEOUT: Duration = Duration::from_secs(10);
/// JetStream's error code for "stream name already in use".
const STREAM_EXISTS: u64 = 10058;

/// Runs the NATS forwarder until shutdown.
pub async fn run_nats(shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    loop {
        let res = tokio::select! {
            r = session(&shared) => r,
            _ = shutdown.recv() => return,
        };
        if let Err(e) = res {
            shared
                .counters
                .forward_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %format!("{e:#}"), "NATS forwarding interrupted; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.recv() => return,
        }
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    inbox: String,
}

impl Conn {
    async fn connect(addr: &str) -> anyhow::Result<Conn> {
        let addr = addr.strip_prefix("nats://").unwrap_or(addr);
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .context("connecting to NATS timed out")?
            .with_context(|| format!("connecting to NATS at {addr}"))?;
        let inbox = format!("_INBOX.berth{:016x}", rand_u64());
        let mut c = Conn {
            stream,
            buf: Vec::with_capacity(64 << 10),
            inbox,
        };
        match c.next_op().await? {
            ServerOp::Info(_) => {}
            other => bail!("NATS server did not start with INFO: {other:?}"),
        }
        let mut hello = nats::connect();
        hello.extend_from_slice(&nats::sub(&format!("{}.*", c.inbox), 1));
        hello.extend_from_slice(b"PING\r\n");
        c.stream.write_all(&hello).await?;
        loop {
            match c.next_op().await? {
                ServerOp::Pong => return Ok(c),
                ServerOp::Err(e) => bail!("NATS refused the connection: {e}"),
                _ => {}
            }
        }
    }

    async fn next_op(&mut self) -> anyhow::Result<ServerOp> {
        loop {
            if let Some((op, n)) = nats::parse(&self.buf, 64 << 20)? {
                self.buf.drain(..n);
                if op == ServerOp::Ping {
                    self.stream.write_all(b"PONG\r\n").await?;
                    continue;
                }
                return Ok(op);
            }
            self.buf.reserve(64 << 10);
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .context("NATS server did not answer in time")??;
            if n == 0 {
                bail!("NATS server closed the connection");
            }
        }
    }

    /// Waits for the replies to `count` requests `0..count` on the inbox; returns them by
    /// index.
    async fn replies(&mut self, count: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut out = vec![serde_json::Value::Null; count];
        let mut left = count;
        let prefix = format!("{}.", self.inbox);
        while left > 0 {
            match self.next_op().await? {
                ServerOp::Msg { subject, payload } => {
                    let Some(i) = subject
                        .strip_prefix(&prefix)
                        .and_then(|s| s.parse::<usize>().ok())
                        .filter(|&i| i < count)
                    else {
                        continue;
                    };
                    if out[i].is_null() {
                        left -= 1;
                    }
                    out[i] = serde_json::from_slice(&payload)
                        .unwrap_or_else(|_| serde_json::json!({"error": {"description": "no JetStream answer (is JetStream enabled?)"}}));
                }
                ServerOp::Err(e) => bail!("NATS error: {e}"),
                _ => {}
            }
        }
        Ok(out)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::protocol::time::now_nanos() as u64);
    h.finish()
}

fn cursor_path(dir: &Path, app: &str) -> PathBuf {
    dir.join(app)
}

fn read_cursor(dir: &Path, app: &str) -> u64 {
    std::fs::read_to_string(cursor_path(dir, app))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(dir: &Path, app: &str, seq: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{app}.tmp"));
    std::fs::write(&tmp, format!("{seq}\n"))?;
    std::fs::rename(tmp, cursor_path(dir, app))
}

fn js_error(v: &serde_json::Value) -> Option<(u64, String)> {
    let e = v.get("error")?;
    let code = e
        .get("err_code")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let text = e
        .get("description")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown error")
        .to_owned();
    Some((code, text))
}

async fn session(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let cfg = &shared.cfg;
    let mut c = Conn::connect(&cfg.forward_nats).await?;
    let dir = cfg.data_dir.join("forward").join("nats");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stream_cfg = serde_json::json!({
        "name": cfg.forward_nats_stream,
        "subjects": [format!("{}.>", cfg.forward_nats_subject)],
        "storage": "file",
    });
    let mut out = Vec::new();
    nats::publish(
        &format!("$JS.API.STREAM.CREATE.{}", cfg.forward_nats_stream),
        &format!("{}.0", c.inbox),
        stream_cfg.to_string().as_bytes(),
        &mut out,
    );
    c.stream.write_all(&out).await?;
    let created = c.replies(1).await?;
    if let Some((code, text)) = js_error(&created[0]) {
        if code != STREAM_EXISTS {
            bail!(
                "cannot create JetStream stream {}: {text}",
                cfg.forward_nats_stream
            );
        }
    }
    tracing::info!(server = %cfg.forward_nats, stream = %cfg.forward_nats_stream, "forwarding to NATS JetStream");
    let subject = cfg.forward_nats_subject.clone();
    let mut sink = Sink::Nats { conn: c, subject };
    pump(shared, &dir, &mut sink, &shared.counters.forwarded).await
}

/// Where forwarded events go.
enum Sink {
    Nats { conn: Conn, subject: String },
    Loki { target: loki::Target, org: String },
}

impl Sink {
    /// Delivers `events` of `app` (in order); Ok once the engine confirmed all of them.
    async fn send(&mut self, app: &str, events: &[read::Found]) -> anyhow::Result<()> {
        match self {
            Sink::Nats { conn, subject } => {
                let mut out = Vec::new();
                let subject = format!("{subject}.{app}");
                for (i, e) in events.iter().enumerate() {
                    nats::hpub(
                        &subject,
                        &format!("{}.{i}", conn.inbox),
                        &format!("{app}:{}", e.seq),
                        &e.to_json(),
                        &mut out,
                    );
                }
                conn.stream.write_all(&out).await?;
                for r in conn.replies(events.len()).await? {
                    if let Some((_, text)) = js_error(&r) {
                        bail!("JetStream refused an event of {app}: {text}");
                    }
                }
                Ok(())
            }
            Sink::Loki { target, org } => {
                let body = loki::push_body(app, events);
                let (status, answer) =
                    tokio::time::timeout(TIMEOUT, loki::post(target, org, &body))
                        .await
                        .context("Loki did not answer in time")??;
                if !(200..300).contains(&status) {
                    bail!("Loki answered {status} to a push of {app}: {answer}");
                }
                Ok(())
            }
        }
    }
}

/// Forwards every app's new durable events to `sink` forever (or until an error).
async fn pump(
    shared: &Arc<Shared>,
    dir: &Path,
    sink: &mut Sink,
    forwarded: &std::sync::atomic::AtomicU64,
) -> anyhow::Result<()> {
    loop {
        let mut sent_any = false;
        for (app, log) in shared.store.apps() {
            let durable = *log.durable.borrow();
            let mut cursor = read_cursor(dir, &app);
            if cursor > durable && durable > 0 {
                // The app's log started over (it was purged and logs again): forward the new
                // log from its start.
                cursor = 0;
            }
            if durable <= cursor || log.is_purged() {
                continue;
            }
            let query = Query {
                filter: Filter::default(),
                order: Order::Asc,
                cursor: Some(cursor),
                limit: WINDOW,
                max_scan_bytes: 16 << 20,
            };
            let reader = log.clone();
            let page = tokio::task::spawn_blocking(move || read::query(&reader, &query)).await??;
            let Some(last) = page.events.last().map(|e| e.seq) else {
                if let Some(c2) = page.cursor.filter(|&c2| c2 > cursor) {
                    write_cursor(dir, &app, c2)?;
                }
                continue;
            };
            sink.send(&app, &page.events).await?;
            if log.is_purged() {
                // Purged meanwhile: its cursor went with it.
                continue;
            }
            write_cursor(dir, &app, last)?;
            forwarded.fetch_add(page.events.len() as u64, Ordering::Relaxed);
            sent_any = true;
        }
        if !sent_any {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs the Loki forwarder until shutdown.
pub async fn run_loki(shared: Arc<Shared>, mut shutdown: ShutdownSignal) {
    let target = match loki::Target::parse(&shared.cfg.forward_loki) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Loki forwarding disabled");
            return;
        }
    };
    let dir = shared.cfg.data_dir.join("forward").join("loki");
    loop {
        let mut sink = Sink::Loki {
            target: target.clone(),
            org: shared.cfg.forward_loki_org.clone(),
        };
        let res = tokio::select! {
            r = async {
                std::fs::create_dir_all(&dir)?;
                pump(&shared, &dir, &mut sink, &shared.counters.forwarded_loki).await
            } => r,
            _ = shutdown.recv() => return,
        };
        if let Err(e) = res {
            shared
                .counters
                .forward_loki_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %format!("{e:#}"), "Loki forwarding interrupted; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.recv() => return,
        }
    }
}
