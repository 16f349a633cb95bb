//! Reading an app's durable events: range queries in either order with filters, and the
//! "everything after this cursor" reads live tail is built on. Positional reads of whole
//! index blocks (~64 KiB) on the shared file handles; no lock is held while reading.

use std::borrow::Cow;
use std::fs::File;
use std::sync::Arc;

use serde::Deserialize;

use super::record::{self, Decoded};
use super::segment;
use super::AppShared;
use crate::protocol::time::format_rfc3339;

/// What to select.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Least severe level wanted (`3`: error and worse).
    pub max_severity: Option<u8>,
    /// Logger name, or a parent of it (`app` matches `app` and `app.db`).
    pub logger: Option<String>,
    /// Text in the message or exception; case-insensitive unless it has capitals.
    pub grep: Option<String>,
    /// Received at or after (Unix nanoseconds).
    pub since: Option<i64>,
    /// Received at or before (Unix nanoseconds).
    pub until: Option<i64>,
}

/// Which end first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest first; the cursor is exclusive: events after it.
    #[default]
    Asc,
    /// Newest first; the cursor is exclusive: events before it.
    Desc,
}

/// A query.
#[derive(Debug, Clone)]
pub struct Query {
    /// Selection.
    pub filter: Filter,
    /// Order.
    pub order: Order,
    /// Continue after (asc) or before (desc) this sequence number.
    pub cursor: Option<u64>,
    /// Most events returned.
    pub limit: usize,
    /// Most bytes examined before returning what was found (with `more`).
    pub max_scan_bytes: u64,
}

/// One event found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Sequence number (the cursor).
    pub seq: u64,
    /// Receive time.
    pub time: i64,
    /// The stored JSON object.
    pub payload: Vec<u8>,
}

impl Found {
    /// The event as the API returns it: the stored object with `seq` and `received` first.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 64);
        out.extend_from_slice(b"{\"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"received\":\"");
        out.extend_from_slice(format_rfc3339(self.time).as_bytes());
        out.push(b'"');
        match self.payload.get(1..) {
            Some(rest) if rest.len() > 1 => {
                out.push(b',');
                out.extend_from_slice(rest);
            }
            _ => out.push(b'}'),
        }
        out
    }
}

/// A page of results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Events, in the query's order.
    pub events: Vec<Found>,
    /// Where to continue: the last sequence number examined (or the query's cursor).
    pub cursor: Option<u64>,
    /// Whether more events may match beyond `cursor`.
    pub more: bool,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    logger: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Cow<'a, str>,
    #[serde(borrow, default)]
    exception: Option<Cow<'a, str>>,
}

struct Matcher {
    max_severity: u8,
    logger: Option<String>,
    grep: Option<(String, bool)>,
    since: i64,
    until: i64,
}

impl Matcher {
    fn new(f: &Filter) -> Matcher {
        Matcher {
            max_severity: f.max_severity.unwrap_or(7),
            logger: f.logger.clone(),
            grep: f.grep.as_ref().map(|g| {
                let smart = !g.chars().any(char::is_uppercase);
                (if smart { g.to_lowercase() } else { g.clone() }, smart)
            }),
            since: f.since.unwrap_or(i64::MIN),
            until: f.until.unwrap_or(i64::MAX),
        }
    }

    fn matches(&self, level: u8, payload: &[u8]) -> bool {
        if level > self.max_severity {
            return false;
        }
        if self.logger.is_none() && self.grep.is_none() {
            return true;
        }
        let Ok(p) = serde_json::from_slice::<Probe<'_>>(payload) else {
            return false;
        };
        if let Some(want) = &self.logger {
            let Some(l) = p.logger.as_deref() else {
                return false;
            };
            if !(l == want || (l.starts_with(want.as_str()) && l[want.len()..].starts_with('.'))) {
                return false;
            }
        }
        if let Some((needle, fold)) = &self.grep {
            let hit = |s: &str| {
                if *fold {
                    s.to_lowercase().contains(needle.as_str())
                } else {
                    s.contains(needle.as_str())
                }
            };
            if !hit(&p.message) && !p.exception.as_deref().is_some_and(hit) {
                return false;
            }
        }
        true
    }
}

struct Block {
    file: Arc<File>,
    start: u64,
    end: u64,
    first_seq: u64,
    first_time: i64,
}

fn blocks(app: &AppShared) -> Vec<Block> {
    let segs = app.segments.lock();
    let mut out = Vec::new();
    for s in segs.iter() {
        for (i, e) in s.index.iter().enumerate() {
            if e.offset >= s.durable {
                break;
            }
            let (start, end) = s.block_range(i);
            out.push(Block {
                file: s.file.clone(),
                start,
                end,
                first_seq: e.seq,
                first_time: e.time,
            });
        }
    }
    out
}

/// Runs a query over an app's durable events.
pub fn query(app: &AppShared, q: &Query) -> std::io::Result<Page> {
    let blocks = blocks(app);
    let m = Matcher::new(&q.filter);
    let limit = q.limit.max(1);
    let mut page = Page {
        cursor: q.cursor,
        ..Page::default()
    };
    let mut scanned: u64 = 0;
    match q.order {
        Order::Asc => {
            let after = q.cursor.unwrap_or(0);
            let by_seq = blocks.partition_point(|b| b.first_seq <= after.saturating_add(1));
            let by_time = blocks.partition_point(|b| b.first_time <= m.since);
            let start = by_seq.max(by_time).saturating_sub(1);
            for (bi, b) in blocks.iter().enumerate().skip(start) {
                let data = segment::read_range(&b.file, b.start, b.end)?;
                scanned += data.len() as u64;
                let mut pos = 0;
                while let Decoded::Record(r, n) = record::decode(&data[pos..]) {
                    pos += n;
                    if r.seq <= after || r.time < m.since {
                        continue;
                    }
                    if r.time > m.until {
                        return Ok(page);
                    }
                    page.cursor = Some(r.seq);
                    if m.matches(r.level, r.payload) {
                        page.events.push(Found {
                            seq: r.seq,
                            time: r.time,
                            payload: r.payload.to_vec(),
                        });
                        if page.events.len() >= limit {
                            page.more = true;
                            return Ok(page);
                        }
                    }
                }
                if scanned >= q.max_scan_bytes && bi + 1 < blocks.len() {
                    page.more = true;
                    return Ok(page);
                }
            }
        }
        Order::Desc => {
            let before = q.cursor.unwrap_or(u64::MAX);
            let by_seq = blocks.partition_point(|b| b.first_seq < before);
            let by_time = blocks.partition_point(|b| b.first_time <= m.until);
            let end = by_seq.min(by_time);
            for bi in (0..end).rev() {
                let b = &blocks[bi];
                let data = segment::read_range(&b.file, b.start, b.end)?;
                scanned += data.len() as u64;
                let mut recs = Vec::new();
                let mut pos = 0;
                while let Decoded::Record(r, n) = record::decode(&data[pos..]) {
                    pos += n;
                    recs.push(r);
                }
                for r in recs.into_iter().rev() {
                    if r.seq >= before || r.time > m.until {
                        continue;
                    }
                    if r.time < m.since {
                        return Ok(page);
                    }
                    page.cursor = Some(r.seq);
                    if m.matches(r.level, r.payload) {
                        page.events.push(Found {
                            seq: r.seq,
                            time: r.time,
                            payload: r.payload.to_vec(),
                        });
                        if page.events.len() >= limit {
                            page.more = bi > 0 || r.seq > 1;
                            return Ok(page);
                        }
                    }
                }
                if scanned >= q.max_scan_bytes && bi > 0 {
                    page.more = true;
                    return Ok(page);
                }
            }
        }
    }
    Ok(page)
}
