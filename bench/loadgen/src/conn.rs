//! One benchmark connection: sends batches of `depth` requests, reads and checks every reply,
//! and records per-request latency. Preload, timed run and verification all go through here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::{self, Parsed, Reply, ReplyKind};
use crate::workload::{key_name, Rng, Values};

/// Latencies are recorded in nanoseconds from 1 ns to 60 s with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("static histogram bounds are valid")
}

/// Counters for one connection (or, after merging, for the whole run).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Request latencies in ns (only requests sent inside the measured window).
    pub hist: Histogram<u64>,
    /// Gets completed.
    pub gets: u64,
    /// Gets that returned the key's value.
    pub hits: u64,
    /// Gets that returned nothing.
    pub misses: u64,
    /// Sets completed.
    pub sets: u64,
    /// Sets answered `STORED`.
    pub stored: u64,
    /// Error replies, unexpected statuses and hits with a wrong value, key or flags.
    pub errors: u64,
    /// The first few error descriptions, for the report.
    pub error_samples: Vec<String>,
    /// Connections that died (I/O error or unparseable reply stream).
    pub failed_conns: u64,
    /// When this connection's last measured request completed.
    pub last_done: Option<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            hist: new_histogram(),
            gets: 0,
            hits: 0,
            misses: 0,
            sets: 0,
            stored: 0,
            errors: 0,
            error_samples: Vec::new(),
            failed_conns: 0,
            last_done: None,
        }
    }
}

impl Stats {
    /// Requests completed.
    pub fn ops(&self) -> u64 {
        self.gets + self.sets
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(what);
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("histograms share bounds");
        self.gets += other.gets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.sets += other.sets;
        self.stored += other.stored;
        self.errors += other.errors;
        self.failed_conns += other.failed_conns;
        for s in &other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(s.clone());
            }
        }
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One request of a batch.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// `get key:<n>`.
    Get(u64),
    /// `set key:<n>` with that key's value.
    Set(u64),
}

/// Why a connection stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Server closed the connection.
    #[error("server closed the connection")]
    Closed,
    /// The reply stream cannot be parsed, so later replies cannot be matched to requests.
    #[error("protocol: {0}")]
    Protocol(#[from] proto::ParseError),
}

/// A connection to the server under test.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    key: Vec<u8>,
}

impl Conn {
    /// Connects with Nagle off, since requests are small and latency is what is measured.
    pub async fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: Vec::new(),
            key: Vec::new(),
        })
    }

    /// Sends `ops` in one write, reads and checks every reply, and records each request's
    /// latency (from the batch's send to its reply) into `stats` when `measure` is set.
    pub async fn batch(
        &mut self,
        ops: &[Op],
        values: &Values,
        stats: &mut Stats,
        measure: bool,
    ) -> Result<(), ConnError> {
        self.wbuf.clear();
        for op in ops {
            match *op {
                Op::Get(i) => {
                    key_name(&mut self.key, i);
                    proto::encode_get(&mut self.wbuf, &self.key);
                }
                Op::Set(i) => {
                    key_name(&mut self.key, i);
                    proto::encode_set(&mut self.wbuf, &self.key, Values::flags(i), values.value(i));
                }
            }
        }
        let sent = Instant::now();
        self.stream.write_all(&self.wbuf).await?;
        for op in ops {
            let kind = match op {
                Op::Get(_) => ReplyKind::Get,
                Op::Set(_) => ReplyKind::Storage,
            };
            let (reply, len) = loop {
                match proto::parse_reply(&self.rbuf, kind)? {
                    Parsed::Complete { reply, len } => break (reply, len),
                    Parsed::Incomplete => {
                        if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                            return Err(ConnError::Closed);
                        }
                    }
                }
            };
            let done = Instant::now();
            self.check(*op, reply, values, stats);
            self.rbuf.advance(len);
            if measure {
                let ns = done
                    .duration_since(sent)
                    .as_nanos()
                    .clamp(1, u128::from(u64::MAX)) as u64;
                stats.hist.saturating_record(ns);
                stats.last_done = Some(done);
            }
        }
        Ok(())
    }

    /// Classifies one reply (whose bytes are still at the front of `rbuf`).
    fn check(&mut self, op: Op, reply: Reply, values: &Values, stats: &mut Stats) {
        match (op, reply) {
            (Op::Get(i), Reply::Values(items)) => {
                stats.gets += 1;
                key_name(&mut self.key, i);
                match items.as_slice() {
                    [] => stats.misses += 1,
                    [item] => {
                        let ok = self.rbuf[item.key.clone()] == self.key[..]
                            && item.flags == Values::flags(i)
                            && &self.rbuf[item.data.clone()] == values.value(i);
                        if ok {
                            stats.hits += 1;
                        } else {
                            stats.error(format!("get key:{i:08}: wrong key, flags or value"));
                        }
                    }
                    more => {
                        stats.error(format!("get key:{i:08}: {} values for one key", more.len()))
                    }
                }
            }
            (Op::Set(_), Reply::Stored) => {
                stats.sets += 1;
                stats.stored += 1;
            }
            (op, reply) => {
                match op {
                    Op::Get(_) => stats.gets += 1,
                    Op::Set(_) => stats.sets += 1,
                }
                stats.error(format!("{op:?}: {reply:?}"));
            }
        }
    }
}

/// How one connection chooses its next batch in the timed phase.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Keys are drawn uniformly from `0..keys`.
    pub keys: u64,
    /// Fraction of requests that are gets.
    pub get_ratio: f64,
    /// Requests in flight per connection.
    pub depth: usize,
}

impl Mix {
    /// Fills `ops` with `n` random requests.
    pub fn fill(&self, rng: &mut Rng, ops: &mut Vec<Op>, n: usize) {
        ops.clear();
        for _ in 0..n {
            let key = rng.below(self.keys);
            ops.push(if rng.unit() < self.get_ratio {
                Op::Get(key)
            } else {
                Op::Set(key)
            });
        }
    }
}

/// When the timed phase stops.
#[derive(Debug, Clone, Copy)]
pub enum Until<'a> {
    /// Stop sending at this instant.
    Deadline(Instant),
    /// Stop when this shared request budget is used up.
    Budget(&'a AtomicU64),
}

impl Until<'_> {
    /// Claims up to `want` requests; 0 means stop.
    fn claim(&self, want: usize) -> usize {
        match *self {
            Until::Deadline(t) => {
                if Instant::now() >= t {
                    0
                } else {
                    want
                }
            }
            Until::Budget(left) => {
                let mut cur = left.load(Ordering::Relaxed);
                loop {
                    let take = cur.min(want as u64);
                    if take == 0 {
                        return 0;
                    }
                    match left.compare_exchange_weak(
                        cur,
                        cur - take,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return take as usize,
                        Err(now) => cur = now,
                    }
                }
            }
        }
    }
}

/// Runs random batches until `until`, recording requests sent at or after `measure_from`.
pub async fn run_mix(
    conn: &mut Conn,
    mix: &Mix,
    rng: &mut Rng,
    values: &Values,
    until: Until<'_>,
    measure_from: Instant,
    stats: &mut Stats,
) -> Result<(), ConnError> {
    let mut ops = Vec::with_capacity(mix.depth);
    loop {
        let n = until.claim(mix.depth);
        if n == 0 {
            return Ok(());
        }
        mix.fill(rng, &mut ops, n);
        let measure = Instant::now() >= measure_from;
        conn.batch(&ops, values, stats, measure).await?;
    }
}

/// Sends `op(key)` for every key in `keys`, `depth` at a time.
pub async fn run_keys(
    conn: &mut Conn,
    keys: impl Iterator<Item = u64>,
    op: fn(u64) -> Op,
    depth: usize,
    values: &Values,
    stats: &mut Stats,
) -> Result<(), ConnError> {
    let mut ops = Vec::with_capacity(depth);
    for key in keys {
        ops.push(op(key));
        if ops.len() == depth {
            conn.batch(&ops, values, stats, true).await?;
            ops.clear();
        }
    }
    if !ops.is_empty() {
        conn.batch(&ops, values, stats, true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A tiny get/set server that answers `key:00000007` with a corrupted value, so the
    /// client's checks have something to catch. It exists to drive the client's batching,
    /// pipelining and counting end to end; the real peers are run by bench/cache.
    async fn toy_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            // Replies go out one write each; without this Nagle waits on delayed ACKs.
            sock.set_nodelay(true).unwrap();
            let (rd, mut wr) = sock.into_split();
            let mut rd = BufReader::new(rd);
            let mut map: HashMap<String, (String, Vec<u8>)> = HashMap::new();
            let mut line = String::new();
            loop {
                line.clear();
                if rd.read_line(&mut line).await.unwrap() == 0 {
                    return;
                }
                let toks: Vec<&str> = line.split_whitespace().collect();
                let reply = match toks.as_slice() {
                    ["get", key] => match map.get(*key) {
                        Some((flags, data)) => {
                            let mut data = data.clone();
                            if *key == "key:00000007" {
                                data[0] ^= 1;
                            }
                            let mut r =
                                format!("VALUE {key} {flags} {}\r\n", data.len()).into_bytes();
                            r.extend_from_slice(&data);
                            r.extend_from_slice(b"\r\nEND\r\n");
                            r
                        }
                        None => b"END\r\n".to_vec(),
                    },
                    ["set", key, flags, _, len] => {
                        let mut data = vec![0; len.parse::<usize>().unwrap() + 2];
                        rd.read_exact(&mut data).await.unwrap();
                        data.truncate(data.len() - 2);
                        map.insert(key.to_string(), (flags.to_string(), data));
                        b"STORED\r\n".to_vec()
                    }
                    _ => b"ERROR\r\n".to_vec(),
                };
                wr.write_all(&reply).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn counts_hits_misses_and_corruption() {
        let addr = toy_server().await;
        let values = Values::new(100);
        let mut c = Conn::connect(&addr).await.unwrap();
        let mut pre = Stats::default();
        run_keys(&mut c, 0..20, Op::Set, 4, &values, &mut pre)
            .await
            .unwrap();
        assert_eq!((pre.sets, pre.stored, pre.errors), (20, 20, 0));
        assert_eq!(pre.hist.len(), 20);

        let mut s = Stats::default();
        run_keys(&mut c, 0..25, Op::Get, 3, &values, &mut s)
            .await
            .unwrap();
        assert_eq!((s.gets, s.hits, s.misses, s.errors), (25, 19, 5, 1));
        assert!(
            s.error_samples[0].contains("key:00000007"),
            "{:?}",
            s.error_samples
        );
    }

    #[tokio::test]
    async fn budget_runs_exactly_that_many_requests() {
        let addr = toy_server().await;
        let values = Values::new(10);
        let mut c = Conn::connect(&addr).await.unwrap();
        let mut s = Stats::default();
        run_keys(&mut c, 0..50, Op::Set, 8, &values, &mut s)
            .await
            .unwrap();
        let budget = AtomicU64::new(1003);
        let mix = Mix {
            keys: 50,
            get_ratio: 0.5,
            depth: 5,
        };
        let mut rng = Rng::new(9);
        let mut s = Stats::default();
        let start = Instant::now();
        run_mix(
            &mut c,
            &mix,
            &mut rng,
            &values,
            Until::Budget(&budget),
            start,
            &mut s,
        )
        .await
        .unwrap();
        assert_eq!(s.ops(), 1003);
        assert_eq!(s.hist.len(), 1003);
        assert!(
            s.gets > 300 && s.sets > 300,
            "{} gets {} sets",
            s.gets,
            s.sets
        );
        // Key 7 is corrupted by the toy server; every other get must hit with the right value.
        assert_eq!(s.misses, 0);
        assert_eq!(s.hits + s.errors, s.gets);
        assert_eq!(s.stored, s.sets);
        assert!(s.last_done.unwrap() >= start);
    }

    #[tokio::test]
    async fn closed_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            drop(sock);
        });
        let mut c = Conn::connect(&addr).await.unwrap();
        let mut s = Stats::default();
        let r = c.batch(&[Op::Get(1)], &Values::new(1), &mut s, true).await;
        assert!(
            matches!(r, Err(ConnError::Closed | ConnError::Io(_))),
            "{r:?}"
        );
    }
}
