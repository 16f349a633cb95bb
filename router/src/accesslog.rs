//! Access logs into each app's log stream: JSON lines over TCP to the log collector named in
//! the app's route table entry, with a hello carrying the app and the token berthd issued.
//!
//! Requests only `try_send` an event into a bounded queue (full: dropped and counted). One
//! task drains it in batches, gathering for up to the flush interval (or 512 events) so that
//! a busy app's lines go out in a few large writes (per write, the router and the collector
//! each pay a system call, a wake-up and a batch's bookkeeping), keeps one connection per
//! (collector, app, token), and drops (and counts) what it cannot deliver; it never makes a
//! request wait or fail.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_common::shutdown::ShutdownSignal;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::stats::Stats;

/// Events shipped per batch at most.
const BATCH: usize = 512;
/// Time allowed to connect, say hello, or write a batch.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection, a stream's events are dropped for this long before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// An app's log stream.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The collector's JSON lines address.
    pub addr: String,
    /// The app.
    pub app: String,
    /// The app's token for the collector.
    pub token: String,
}

/// One finished request.
#[derive(Debug)]
pub struct Event {
    /// Where it goes.
    pub target: Arc<Target>,
    /// When the request arrived.
    pub time: SystemTime,
    /// Request method.
    pub method: String,
    /// Request path and query as the client sent it.
    pub path: String,
    /// Host header.
    pub host: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Time to the end of the response.
    pub duration: Duration,
    /// The request id.
    pub request_id: String,
    /// The app's version label.
    pub version: Option<String>,
    /// The app's release label.
    pub release: Option<String>,
    /// The client's address.
    pub remote_addr: String,
}

#[derive(Serialize)]
struct Line<'a> {
    timestamp: f64,
    level: &'static str,
    logger: &'static str,
    stream: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    extra: Extra<'a>,
}

#[derive(Serialize)]
struct Extra<'a> {
    method: &'a str,
    path: &'a str,
    host: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    request_id: &'a str,
    remote_addr: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<&'a str>,
}

impl Event {
    /// Appends the event as one JSON line of the collector's protocol to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let timestamp = self
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = Line {
            timestamp,
            level: if self.status >= 500 { "error" } else { "info" },
            logger: "berth.router",
            stream: "router",
            message: format!("{} {} {}", self.method, self.path, self.status),
            version: self.version.as_deref(),
            extra: Extra {
                method: &self.method,
                path: &self.path,
                host: &self.host,
                status: self.status,
                bytes: self.bytes,
                duration_ms: (self.duration.as_secs_f64() * 1e6).round() / 1e3,
                request_id: &self.request_id,
                remote_addr: &self.remote_addr,
                release: self.release.as_deref(),
            },
        };
        let start = out.len();
        if serde_json::to_writer(&mut *out, &line).is_ok() {
            out.push(b'\n');
        } else {
            out.truncate(start);
        }
    }
}

/// The request side: a bounded queue.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
}

impl AccessLog {
    /// Queues `event`, or drops and counts it when the queue is full. Never waits.
    pub fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.stats
                .global
                .access_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the shipper task; it ends after shutdown once the queue is drained (for at most a
/// second more).
pub fn start(
    queue: usize,
    flush_interval: Duration,
    stats: Arc<Stats>,
    shutdown: ShutdownSignal,
) -> (AccessLog, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(queue.max(1));
    let task = tokio::spawn(ship(rx, flush_interval, stats.clone(), shutdown));
    (AccessLog { tx, stats }, task)
}

struct Conn {
    write: OwnedWriteHalf,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn ship(
    mut rx: mpsc::Receiver<Event>,
    flush_interval: Duration,
    stats: Arc<Stats>,
    mut shutdown: ShutdownSignal,
) {
    let mut conns: HashMap<Arc<Target>, Conn> = HashMap::new();
    let mut failed: HashMap<Arc<Target>, Instant> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping: Option<Instant> = None;
    loop {
        let first = match stopping {
            None => tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.recv() => {
                    stopping = Some(Instant::now() + Duration::from_secs(1));
                    rx.close();
                    continue;
                }
            },
            Some(deadline) => {
                if Instant::now() >= deadline {
                    break;
                }
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Gather more for up to the flush interval (not past a shutdown's deadline).
        let mut until = tokio::time::Instant::now() + flush_interval;
        if let Some(deadline) = stopping {
            until = until.min(tokio::time::Instant::from_std(deadline));
        }
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match rx.try_recv() {
                Ok(ev) => {
                    batch.push(ev);
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if flush_interval.is_zero() {
                break;
            }
            match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // Group by stream, keeping each stream's order.
        let mut groups: HashMap<Arc<Target>, (Vec<u8>, u64)> = HashMap::new();
        for ev in batch.drain(..) {
            let (data, n) = groups
                .entry(ev.target.clone())
                .or_insert_with(|| (Vec::with_capacity(64 * 1024), 0));
            ev.write_line(data);
            *n += 1;
        }
        for (target, (data, n)) in groups {
            let sent = deliver(&mut conns, &mut failed, &target, &data).await;
            let counter = if sent {
                &stats.global.access_sent
            } else {
                &stats.global.access_dropped
            };
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Writes `data` on the stream's connection, reconnecting once if a kept connection failed.
async fn deliver(
    conns: &mut HashMap<Arc<Target>, Conn>,
    failed: &mut HashMap<Arc<Target>, Instant>,
    target: &Arc<Target>,
    data: &[u8],
) -> bool {
    for _attempt in 0..2 {
        if !conns.contains_key(target) {
            if failed
                .get(target)
                .is_some_and(|t| t.elapsed() < RETRY_AFTER)
            {
                return false;
            }
            match connect(target).await {
                Ok(c) => {
                    failed.remove(target);
                    conns.insert(target.clone(), c);
                }
                Err(e) => {
                    tracing::warn!(app = %target.app, collector = %target.addr, error = %e, "access log: cannot reach the log collector; dropping events");
                    failed.insert(target.clone(), Instant::now());
                    return false;
                }
            }
        }
        let Some(conn) = conns.get_mut(target) else {
            return false;
        };
        let res = tokio::time::timeout(IO_TIMEOUT, conn.write.write_all(data)).await;
        match res {
            Ok(Ok(())) => return true,
            _ => {
                conns.remove(target);
            }
        }
    }
    false
}

async fn connect(target: &Target) -> std::io::Result<Conn> {
    let timed =
        |e: tokio::time::error::Elapsed| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&target.addr))
        .await
        .map_err(timed)??;
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let hello = serde_json::json!({"hello": {"app": target.app, "token": target.token}});
    let mut line = serde_json::to_vec(&hello).map_err(std::io::Error::other)?;
    line.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, write.write_all(&line))
        .await
        .map_err(timed)??;
    let mut reader = BufReader::new(read);
    let mut reply = String::new();
    tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut reply))
        .await
        .map_err(timed)??;
    let ok = serde_json::from_str::<serde_json::Value>(&reply)
        .ok()
        .is_some_and(|v| v.get("ok").and_then(|o| o.as_str()) == Some("hello"));
    if !ok {
        return Err(std::io::Error::other(format!(
            "the collector refused the hello: {}",
            reply.trim()
        )));
    }
    // Without acks the collector only answers errors (e.g. the app's log_rate exceeded):
    // log them, at most one line per 10 s with the count since the last (a busy app over
    // its rate would otherwise flood the router's own log), and notice a close.
    let app = target.app.clone();
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        let mut last_warn: Option<tokio::time::Instant> = None;
        let mut unreported = 0u64;
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    unreported += 1;
                    let now = tokio::time::Instant::now();
                    if last_warn.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                        tracing::warn!(%app, reply = %line.trim(), refused = unreported,
                            "access log: the collector refused events (this one, and the count since the last warning)");
                        last_warn = Some(now);
                        unreported = 0;
                    }
                }
            }
        }
    });
    Ok(Conn { write, reader })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_line_has_every_field() {
        let ev = Event {
            target: Arc::new(Target {
                addr: "127.0.0.1:1".into(),
                app: "shop".into(),
                token: "t".into(),
            }),
            time: UNIX_EPOCH + Duration::from_millis(1_500),
            method: "GET".into(),
            path: "/a?b=1".into(),
            host: "shop.localhost".into(),
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1234),
            request_id: "abc".into(),
            version: Some("1.2.0".into()),
            release: Some("v3".into()),
            remote_addr: "127.0.0.1:5555".into(),
        };
        let mut line = Vec::new();
        ev.write_line(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["timestamp"], 1.5);
        assert_eq!(v["stream"], "router");
        assert_eq!(v["version"], "1.2.0");
        assert_eq!(v["message"], "GET /a?b=1 200");
        let x = &v["extra"];
        assert_eq!(x["status"], 200);
        assert_eq!(x["bytes"], 12);
        assert_eq!(x["duration_ms"], 1.234);
        assert_eq!(x["request_id"], "abc");
        assert_eq!(x["remote_addr"], "127.0.0.1:5555");
        assert_eq!(x["release"], "v3");
    }
}
