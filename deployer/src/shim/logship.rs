//! Ships the app's lines to the log collector over its JSON-lines protocol (hello with
//! `"ack": true`, one event per line, `{"ack":N}` replies), keeping a bounded queue while the
//! collector is away, and tees every line to the shim's own stdout.
//!
//! One writer thread per shim connects when there is something to send, and one reader thread
//! per connection applies the acks. Lines are kept until acknowledged and resent after a
//! reconnect (at-least-once); when the queue is full the oldest lines are dropped and counted.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::spec::{now_secs_f64, LogTarget};

/// Most lines kept while the collector is away.
pub const MAX_QUEUED_LINES: usize = 10_000;
/// Most bytes kept while the collector is away.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
const MAX_BATCH_BYTES: usize = 256 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct Queue {
    /// Serialized events (with their LF), oldest first.
    lines: VecDeque<String>,
    bytes: usize,
    /// How many of `lines` were sent on the current connection.
    sent: usize,
    /// The connection's line number of `lines[0]` (lines count from 1 after the hello).
    base: u64,
    /// Bumped on every (re)connect; a reader applies acks only for its own connection.
    generation: u64,
    broken: bool,
    closing: bool,
    shipped: u64,
    dropped: u64,
}

#[derive(Debug)]
struct Inner {
    app: String,
    version: String,
    instance: String,
    target: Option<LogTarget>,
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// Handle to the shipper (cheap to clone).
#[derive(Debug, Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
}

impl Shipper {
    /// Starts the shipper (a writer thread when there is a target).
    pub fn start(target: Option<LogTarget>, app: &str, version: &str, instance: &str) -> Shipper {
        let inner = Arc::new(Inner {
            app: app.to_string(),
            version: version.to_string(),
            instance: instance.to_string(),
            target,
            queue: Mutex::new(Queue {
                base: 1,
                ..Queue::default()
            }),
            changed: Condvar::new(),
        });
        if inner.target.is_some() {
            let writer = inner.clone();
            let _ = thread::Builder::new()
                .name("logship".into())
                .spawn(move || writer_loop(&writer));
        }
        Shipper { inner }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.inner)
    }

    /// An app line: teed to the shim's stdout and queued for the collector.
    pub fn app_line(&self, stream: &str, level: &str, message: &str) {
        tee(message);
        self.enqueue(stream, level, message);
    }

    /// A line of the shim's own (stream `shim`): teed with a `berth-shim:` prefix and queued.
    pub fn shim_line(&self, level: &str, message: &str) {
        tee(&format!("berth-shim: {message}"));
        self.enqueue("shim", level, message);
    }

    fn enqueue(&self, stream: &str, level: &str, message: &str) {
        if self.inner.target.is_none() {
            return;
        }
        let event = json!({
            "timestamp": now_secs_f64(),
            "level": level,
            "message": message,
            "version": self.inner.version,
            "instance": self.inner.instance,
            "stream": stream,
        });
        let mut line = event.to_string();
        line.push('\n');
        let mut q = self.lock();
        if q.closing {
            q.dropped += 1;
            return;
        }
        q.bytes += line.len();
        q.lines.push_back(line);
        while q.lines.len() > MAX_QUEUED_LINES || q.bytes > MAX_QUEUED_BYTES {
            let Some(old) = q.lines.pop_front() else {
                break;
            };
            q.bytes -= old.len();
            q.dropped += 1;
            if q.sent > 0 {
                q.sent -= 1;
                q.base += 1;
            }
        }
        drop(q);
        self.inner.changed.notify_all();
    }

    /// (shipped, dropped) line counts.
    pub fn counters(&self) -> (u64, u64) {
        let q = self.lock();
        (q.shipped, q.dropped)
    }

    /// Stops taking lines and waits up to `timeout` for the queue to be acknowledged; what is
    /// left then is counted as dropped.
    pub fn close(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        q.closing = true;
        self.inner.changed.notify_all();
        while !q.lines.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            q = match self.inner.changed.wait_timeout(q, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let left = q.lines.len() as u64;
        q.dropped += left;
        q.lines.clear();
        q.bytes = 0;
        q.sent = 0;
        drop(q);
        self.inner.changed.notify_all();
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, Queue> {
    inner.queue.lock().unwrap_or_else(|p| p.into_inner())
}

fn tee(line: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

fn wait<'a>(inner: &'a Inner, q: MutexGuard<'a, Queue>, d: Duration) -> MutexGuard<'a, Queue> {
    match inner.changed.wait_timeout(q, d) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}

fn writer_loop(inner: &Arc<Inner>) {
    let Some(target) = inner.target.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(200);
    let mut last_error = String::new();
    loop {
        {
            let mut q = lock(inner);
            while q.lines.is_empty() {
                if q.closing {
                    return;
                }
                q = wait(inner, q, Duration::from_secs(1));
            }
        }
        match connect(inner, &target) {
            Ok(stream) => {
                last_error.clear();
                let before = lock(inner).shipped;
                send_loop(inner, stream);
                let q = lock(inner);
                if q.closing && q.lines.is_empty() {
                    return;
                }
                if q.shipped > before {
                    backoff = Duration::from_millis(200);
                    continue;
                }
                drop(q);
                // Closed before acknowledging anything: do not reconnect in a tight loop.
                eprintln!("berth-shim: log collector {}: connection lost", target.addr);
            }
            Err(e) => {
                if e != last_error {
                    eprintln!("berth-shim: log collector {}: {e}", target.addr);
                    last_error = e;
                }
            }
        }
        {
            let mut q = lock(inner);
            if q.closing && q.lines.is_empty() {
                return;
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !(q.closing && q.lines.is_empty()) {
                q = wait(inner, q, until.saturating_duration_since(Instant::now()));
            }
            drop(q);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Connects, says hello and starts the ack reader; returns the stream to write events to.
fn connect(inner: &Arc<Inner>, target: &LogTarget) -> Result<TcpStream, String> {
    let addrs: Vec<_> = target
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving: {e}"))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let hello = json!({"hello": {"app": inner.app, "token": target.token, "ack": true}});
    stream
        .write_all(format!("{hello}\n").as_bytes())
        .map_err(|e| format!("sending hello: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut reply = String::new();
    reader
        .read_line(&mut reply)
        .map_err(|e| format!("reading the hello reply: {e}"))?;
    let v: serde_json::Value =
        serde_json::from_str(reply.trim()).map_err(|_| format!("bad hello reply {reply:?}"))?;
    if let Some(err) = v.get("error") {
        return Err(format!("hello refused: {err}"));
    }
    if v.get("ok").and_then(|o| o.as_str()) != Some("hello") {
        return Err(format!("unexpected hello reply {}", reply.trim()));
    }
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    let generation = {
        let mut q = lock(inner);
        q.generation += 1;
        q.sent = 0;
        q.base = 1;
        q.broken = false;
        q.generation
    };
    let acks = inner.clone();
    thread::Builder::new()
        .name("logship-acks".into())
        .spawn(move || ack_loop(&acks, reader, generation))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn ack_loop(inner: &Inner, mut reader: BufReader<TcpStream>, generation: u64) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or(0);
        let mut q = lock(inner);
        if q.generation != generation {
            return;
        }
        if n == 0 {
            q.broken = true;
            drop(q);
            inner.changed.notify_all();
            return;
        }
        let ack = serde_json::from_str::<serde_json::Value>(line.trim())
            .ok()
            .and_then(|v| v.get("ack").and_then(|a| a.as_u64()));
        if let Some(n) = ack {
            while q.sent > 0 && q.base <= n {
                if let Some(l) = q.lines.pop_front() {
                    q.bytes -= l.len();
                }
                q.sent -= 1;
                q.base += 1;
                q.shipped += 1;
            }
            drop(q);
            inner.changed.notify_all();
        }
    }
}

fn send_loop(inner: &Inner, mut stream: TcpStream) {
    loop {
        let batch = {
            let mut q = lock(inner);
            loop {
                if q.broken || (q.closing && q.lines.is_empty()) {
                    break;
                }
                if q.sent < q.lines.len() {
                    break;
                }
                q = wait(inner, q, Duration::from_secs(1));
            }
            if q.broken || q.lines.is_empty() {
                None
            } else {
                let mut batch = Vec::new();
                while q.sent < q.lines.len() && batch.len() < MAX_BATCH_BYTES {
                    batch.extend_from_slice(q.lines[q.sent].as_bytes());
                    q.sent += 1;
                }
                Some(batch)
            }
        };
        let Some(batch) = batch else { break };
        if stream.write_all(&batch).is_err() {
            break;
        }
    }
    // Invalidate this connection: its reader stops applying acks, unacked lines get resent.
    let mut q = lock(inner);
    q.generation += 1;
    q.sent = 0;
    q.base = 1;
    q.broken = false;
    drop(q);
    let _ = stream.shutdown(Shutdown::Both);
}
