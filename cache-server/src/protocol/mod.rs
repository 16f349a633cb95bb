//! The memcached text protocol as Berth speaks it: a pure module (no I/O, no tokio) that turns
//! buffered bytes into [`Request`]s and knows the exact reply strings. The connection code and
//! the fuzzer both drive [`parse`]; `docs/protocols/cache.md` is the normative description.

mod check;
mod classic;
pub mod meta;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub use check::check_invariants;
pub use meta::{Meta, MetaCmd, MetaFlags};

/// Limits the parser enforces itself, so a declared length over a limit is refused before
/// anything is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key in bytes (memcached: 250).
    pub max_key_len: usize,
    /// Largest value in bytes (`-I`, default 1 MiB).
    pub item_size_max: usize,
    /// Longest command line (without its data block) before the connection is closed with
    /// `CLIENT_ERROR line too long`.
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_len: 250,
            item_size_max: 1024 * 1024,
            max_line_len: 64 * 1024,
        }
    }
}

/// The outcome of one [`parse`] call on the front of a buffer.
// Large because meta flags are kept inline: parsing never allocates, and a result is moved
// once per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// More bytes are needed; nothing was consumed.
    Incomplete,
    /// One complete request, which used the first `consumed` bytes of the buffer.
    Request { req: Request<'a>, consumed: usize },
    /// A request that cannot be served. The connection answers `reply` (a complete line with
    /// its `\r\n`, e.g. `b"CLIENT_ERROR bad data chunk\r\n"`; empty only with `close`, where
    /// memcached hangs up without a word, as on an HTTP request line) unless `noreply` is set,
    /// drops `consumed` bytes, then discards the next `swallow` bytes as they arrive (the data
    /// block of a refused storage command, `\r\n` included), and closes the connection if
    /// `close`.
    Error {
        reply: &'static [u8],
        consumed: usize,
        swallow: usize,
        noreply: bool,
        close: bool,
    },
    /// A storage request (`set`…`cas`, `ms`) whose declared length is over `item_size_max`:
    /// answered `SERVER_ERROR object too large for cache` unless `noreply`, the line dropped
    /// (`consumed`) and its data block discarded as it arrives (`swallow`, `\r\n` included).
    /// Like memcached, a refused `set` or `ms` also drops the key's current value, so a client
    /// never reads back the value it failed to replace: `unlink` is that key as sent (base64
    /// when `base64_key`).
    TooLarge {
        unlink: Option<&'a [u8]>,
        base64_key: bool,
        consumed: usize,
        swallow: usize,
        noreply: bool,
    },
}

/// The reply to [`Parse::TooLarge`].
pub const TOO_LARGE: &[u8] = b"SERVER_ERROR object too large for cache\r\n";

/// Classic storage commands (`<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// `cas`: the request's `cas` field holds the compare value.
    Cas,
}

/// Classic retrieval commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetCmd {
    Get,
    Gets,
    /// `gat <exptime> <key>*`
    Gat,
    /// `gats <exptime> <key>*`
    Gats,
}

/// One parsed request. Keys and data borrow from the input buffer.
// Large for the same reason as `Parse`: `Meta` holds its flags inline.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Store {
        cmd: StoreCmd,
        key: &'a [u8],
        flags: u32,
        /// As sent: 0 never, up to 30 days relative, larger absolute unix time, negative expired.
        exptime: i64,
        /// The data block, without its trailing `\r\n`.
        data: &'a [u8],
        /// Compare value for `cas`, 0 otherwise.
        cas: u64,
        noreply: bool,
    },
    Get {
        cmd: GetCmd,
        /// For `gat`/`gats`; 0 otherwise.
        exptime: i64,
        /// The keys, each checked against `max_key_len`: at least one for `get`/`gets`, possibly
        /// none for `gat`/`gats` (memcached then answers a bare `END`).
        keys: Words<'a>,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`; `delay` is 0 when absent.
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    CacheMemlimit {
        megabytes: u64,
        noreply: bool,
    },
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Version,
    Quit,
    /// `shutdown [graceful]`
    Shutdown {
        graceful: bool,
    },
    /// `stats [args…]`: the words after `stats`, possibly none.
    Stats {
        args: Words<'a>,
    },
    /// `mg`, `ms`, `md`, `ma`, `me`.
    Meta(Meta<'a>),
    /// `mn`
    MetaNoop,
}

/// The space-separated words of part of a command line (keys of a `get`, arguments of
/// `stats`), iterated without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words<'a> {
    rest: &'a [u8],
}

impl<'a> Words<'a> {
    /// Words of `line` (no `\r\n`), separated by one or more spaces.
    pub fn new(line: &'a [u8]) -> Self {
        Words { rest: line }
    }

    /// True when there is no word left.
    pub fn is_empty(&self) -> bool {
        self.rest.iter().all(|&b| b == b' ')
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// Parse one request from the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    classic::parse(buf, limits)
}
