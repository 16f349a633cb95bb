//! Turns one buffered command line (plus its data block) into a [`Request`] or an error reply,
//! mirroring memcached 1.6's `proto_text.c` (tokenizer, token counts, number parsing, reply
//! strings and `noreply` handling) so clients cannot tell the two servers apart.

use super::meta::{Meta, MetaCmd, MetaFlags, KNOWN_FLAGS};
use super::{GetCmd, Limits, Parse, Request, StoreCmd, Words};

const ERROR: &[u8] = b"ERROR\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";
const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
const LINE_TOO_LONG: &[u8] = b"CLIENT_ERROR line too long\r\n";
const DELETE_USAGE: &[u8] =
    b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
const BAD_DELTA: &[u8] = b"CLIENT_ERROR invalid numeric delta argument\r\n";
const BAD_EXPTIME: &[u8] = b"CLIENT_ERROR invalid exptime argument\r\n";
const BAD_SHUTDOWN: &[u8] = b"CLIENT_ERROR invalid shutdown mode\r\n";
const OPAQUE_TOO_LONG: &[u8] = b"CLIENT_ERROR opaque token too long\r\n";
// memcached words this limit differently for `mg` and for `ms`/`md`/`ma`.
const MG_FLAGS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags are too long\r\n";
const FLAGS_TOO_LONG: &[u8] = b"CLIENT_ERROR options flags too long\r\n";

/// Tokens memcached's tokenizer keeps from a line (its `MAX_TOKENS` of 24 counts a terminator).
/// Only `get`-style commands read further, and they do so through [`Words`].
const MAX_TOKENS: usize = 23;

/// memcached refuses a meta line of 20 tokens or more (`MFLAG_MAX_OPT_LENGTH` counts the
/// terminator token too).
const META_MAX_TOKENS: usize = 19;

/// Longest opaque flag token, its `O` included (`MFLAG_MAX_OPAQUE_LENGTH`).
const MAX_OPAQUE_LEN: usize = 32;

/// Largest data block length memcached accepts before checking the item size (`INT_MAX - 2`).
const MAX_DATA_LEN: i64 = i32::MAX as i64 - 2;

/// Parse one request from the front of `buf`; see [`super::parse`].
pub(super) fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Parse<'a> {
    match Line::frame(buf, limits) {
        Ok(line) => Cmd { line, buf, limits }.dispatch(),
        Err(Unframed::Incomplete) => Parse::Incomplete,
        // The connection closes, so everything buffered is dropped.
        Err(Unframed::TooLong) => Parse::Error {
            reply: LINE_TOO_LONG,
            consumed: buf.len(),
            swallow: 0,
            noreply: false,
            close: true,
        },
    }
}

/// Why there is no line to parse.
enum Unframed {
    Incomplete,
    /// The line is over `max_line_len`.
    TooLong,
}

/// One command line split into tokens the way memcached's `tokenize_command` does it.
struct Line<'a> {
    /// The line without `\r\n`, cut at the first NUL as memcached's C strings are.
    text: &'a [u8],
    tokens: [&'a [u8]; MAX_TOKENS],
    /// Offset in `text` just past each token.
    ends: [usize; MAX_TOKENS],
    /// Tokens kept (at most [`MAX_TOKENS`]).
    n: usize,
    /// Bytes of the buffer up to and including the `\n`.
    len: usize,
}

impl<'a> Line<'a> {
    fn frame(buf: &'a [u8], limits: &Limits) -> Result<Self, Unframed> {
        let max = limits.max_line_len;
        // A line is never scanned past the point where it is known to be too long, so a peer
        // trickling bytes without a newline costs O(max_line_len) per call, not O(buffer).
        let window = &buf[..buf.len().min(max.saturating_add(2))];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            // A trailing `\r` may still turn out to be the terminator's.
            let content = window.len() - usize::from(window.last() == Some(&b'\r'));
            return Err(if content > max {
                Unframed::TooLong
            } else {
                Unframed::Incomplete
            });
        };
        let mut text = &window[..nl];
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        if text.len() > max {
            return Err(Unframed::TooLong);
        }
        if let Some(nul) = text.iter().position(|&b| b == 0) {
            text = &text[..nul];
        }
        Ok(Line::tokenize(text, nl + 1))
    }

    fn tokenize(text: &'a [u8], len: usize) -> Self {
        let mut line = Line {
            text,
            tokens: [&[]; MAX_TOKENS],
            ends: [0; MAX_TOKENS],
            n: 0,
            len,
        };
        let mut i = 0;
        while line.n < MAX_TOKENS {
            while text.get(i) == Some(&b' ') {
                i += 1;
            }
            if i >= text.len() {
                break;
            }
            let start = i;
            while text.get(i).is_some_and(|&b| b != b' ') {
                i += 1;
            }
            line.tokens[line.n] = &text[start..i];
            line.ends[line.n] = i;
            line.n += 1;
        }
        line
    }

    /// Token `i`, or empty past the last one.
    fn tok(&self, i: usize) -> &'a [u8] {
        if i < self.n {
            self.tokens[i]
        } else {
            &[]
        }
    }

    /// The words of the line after token `i`, however many there are.
    fn words_after(&self, i: usize) -> Words<'a> {
        let end = if i < self.n {
            self.ends[i]
        } else {
            self.text.len()
        };
        Words::new(&self.text[end..])
    }

    /// memcached's `set_noreply_maybe`: the last token kept decides, whatever its position.
    fn noreply(&self) -> bool {
        self.n > 0 && self.tokens[self.n - 1] == b"noreply"
    }

    /// The meta flag tokens, which start after token `first`.
    fn flag_tokens(&self, first: usize) -> &[&'a [u8]] {
        self.tokens.get(first..self.n).unwrap_or(&[])
    }
}

/// The data block after a command line.
enum Block<'a> {
    Incomplete,
    /// Not followed by `\r\n`; the number is what the request used up.
    Bad(usize),
    Data(&'a [u8], usize),
}

fn data_block(buf: &[u8], start: usize, len: usize) -> Block<'_> {
    let Some(end) = start.checked_add(len).and_then(|e| e.checked_add(2)) else {
        return Block::Incomplete;
    };
    let Some(block) = buf.get(start..end) else {
        return Block::Incomplete;
    };
    let (data, crlf) = block.split_at(len);
    if crlf == b"\r\n" {
        Block::Data(data, end)
    } else {
        Block::Bad(end)
    }
}

/// A framed line being turned into a request.
struct Cmd<'a, 'l> {
    line: Line<'a>,
    buf: &'a [u8],
    limits: &'l Limits,
}

impl<'a> Cmd<'a, '_> {
    fn ok(&self, req: Request<'a>) -> Parse<'a> {
        Parse::Request {
            req,
            consumed: self.line.len,
        }
    }

    fn fail(&self, reply: &'static [u8], swallow: usize, noreply: bool) -> Parse<'a> {
        Parse::Error {
            reply,
            consumed: self.line.len,
            swallow,
            noreply,
            close: false,
        }
    }

    fn error(&self) -> Parse<'a> {
        self.fail(ERROR, 0, false)
    }

    /// memcached's `process_command_ascii`: the first letter picks a family, then the exact
    /// name, and each family checks its token count before anything else.
    fn dispatch(&self) -> Parse<'a> {
        let line = &self.line;
        let name = line.tok(0);
        if line.n == 0 || name.len() < 2 {
            return self.error();
        }
        let n = line.n;
        match name {
            [b'm', c] => match c {
                b'g' => self.meta(MetaCmd::Get),
                b's' => self.meta_set(),
                b'd' => self.meta(MetaCmd::Delete),
                b'a' => self.meta(MetaCmd::Arith),
                b'e' => self.meta_debug(),
                b'n' => self.ok(Request::MetaNoop),
                _ => self.error(),
            },
            [b'g', ..] if n < 2 => self.error(),
            b"get" => self.get(GetCmd::Get),
            b"gets" => self.get(GetCmd::Gets),
            b"gat" => self.get(GetCmd::Gat),
            b"gats" => self.get(GetCmd::Gats),
            b"set" => self.store(StoreCmd::Set),
            b"stats" => self.ok(Request::Stats {
                args: line.words_after(0),
            }),
            b"shutdown" => self.shutdown(),
            b"add" => self.store(StoreCmd::Add),
            b"append" => self.store(StoreCmd::Append),
            b"cas" => self.store(StoreCmd::Cas),
            b"cache_memlimit" => self.memlimit(),
            b"incr" => self.arith(true),
            b"delete" => self.delete(),
            b"decr" => self.arith(false),
            b"touch" => self.touch(),
            // Every other name under these letters is unknown to memcached too, and it answers
            // `ERROR` without the HTTP check below.
            [b'g' | b's' | b'a' | b'c' | b'i' | b'd' | b't', ..] => self.error(),
            b"replace" => self.store(StoreCmd::Replace),
            b"prepend" => self.store(StoreCmd::Prepend),
            // The long-undocumented binary get, still accepted by memcached.
            b"bget" if n >= 2 => self.get(GetCmd::Get),
            b"flush_all" => self.flush_all(),
            b"version" => self.ok(Request::Version),
            b"quit" => self.ok(Request::Quit),
            b"verbosity" => self.verbosity(),
            // memcached admin commands Berth does not offer, answered before the HTTP check.
            b"lru_crawler" | b"watch" | b"lru" => self.error(),
            // memcached hangs up on what looks like an HTTP request line.
            _ if line.tok(n - 1).starts_with(b"HTTP/") => Parse::Error {
                reply: b"",
                consumed: line.len,
                swallow: 0,
                noreply: false,
                close: true,
            },
            _ => self.error(),
        }
    }

    /// `<cmd> <key> <flags> <exptime> <bytes> [cas] [noreply]` and its data block.
    fn store(&self, cmd: StoreCmd) -> Parse<'a> {
        let line = &self.line;
        let base = if cmd == StoreCmd::Cas { 6 } else { 5 };
        if line.n != base && line.n != base + 1 {
            return self.error();
        }
        let noreply = line.noreply();
        let len = parse_data_len(line.tok(4));
        // Once the length is known the data block is dropped with any refusal, so that client
        // data is never run as commands.
        let swallow = len.map_or(0, |len| len + 2);
        let key = line.tok(1);
        if key.len() > self.limits.max_key_len {
            return self.fail(BAD_FORMAT, swallow, noreply);
        }
        let (Some(flags), Some(exptime), Some(len)) =
            (parse_u32(line.tok(2)), parse_i64(line.tok(3)), len)
        else {
            return self.fail(BAD_FORMAT, swallow, noreply);
        };
        let cas = if cmd == StoreCmd::Cas {
            match parse_u64(line.tok(5)) {
                Some(cas) => cas,
                None => return self.fail(BAD_FORMAT, swallow, noreply),
            }
        } else {
            0
        };
        if len > self.limits.item_size_max {
            return Parse::TooLarge {
                unlink: (cmd == StoreCmd::Set).then_some(key),
                base64_key: false,
                consumed: line.len,
                swallow,
                noreply,
            };
        }
        match data_block(self.buf, line.len, len) {
            Block::Incomplete => Parse::Incomplete,
            Block::Bad(consumed) => Parse::Error {
                reply: BAD_CHUNK,
                consumed,
                swallow: 0,
                noreply,
                close: false,
            },
            Block::Data(data, consumed) => Parse::Request {
                req: Request::Store {
                    cmd,
                    key,
                    flags,
                    exptime,
                    data,
                    cas,
                    noreply,
                },
                consumed,
            },
        }
    }

    /// `get|gets <key>+` and `gat|gats <exptime> <key>*` (memcached answers a `gat` without
    /// keys with a bare `END`).
    fn get(&self, cmd: GetCmd) -> Parse<'a> {
        let line = &self.line;
        let (exptime, keys) = match cmd {
            GetCmd::Get | GetCmd::Gets => (0, line.words_after(0)),
            GetCmd::Gat | GetCmd::Gats => match parse_i64(line.tok(1)) {
                Some(exptime) => (exptime, line.words_after(1)),
                None => return self.fail(BAD_EXPTIME, 0, false),
            },
        };
        if keys
            .into_iter()
            .any(|key| key.len() > self.limits.max_key_len)
        {
            return self.fail(BAD_FORMAT, 0, false);
        }
        self.ok(Request::Get { cmd, exptime, keys })
    }

    /// `delete <key> [0] [noreply]`.
    fn delete(&self) -> Parse<'a> {
        let line = &self.line;
        if !(2..=4).contains(&line.n) {
            return self.error();
        }
        // memcached looks for `noreply` only when there is more than the key.
        let noreply = line.n > 2 && line.noreply();
        if line.n > 2 {
            let hold_is_zero = line.tok(2) == b"0";
            let valid = (line.n == 3 && (hold_is_zero || noreply))
                || (line.n == 4 && hold_is_zero && noreply);
            if !valid {
                return self.fail(DELETE_USAGE, 0, noreply);
            }
        }
        let key = line.tok(1);
        if key.len() > self.limits.max_key_len {
            return self.fail(BAD_FORMAT, 0, noreply);
        }
        self.ok(Request::Delete { key, noreply })
    }

    /// `incr|decr <key> <delta> [noreply]`.
    fn arith(&self, incr: bool) -> Parse<'a> {
        let line = &self.line;
        if line.n != 3 && line.n != 4 {
            return self.error();
        }
        let noreply = line.noreply();
        let key = line.tok(1);
        if key.len() > self.limits.max_key_len {
            return self.fail(BAD_FORMAT, 0, noreply);
        }
        match parse_u64(line.tok(2)) {
            Some(delta) => self.ok(Request::Arith {
                incr,
                key,
                delta,
                noreply,
            }),
            None => self.fail(BAD_DELTA, 0, noreply),
        }
    }

    /// `touch <key> <exptime> [noreply]`.
    fn touch(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n != 3 && line.n != 4 {
            return self.error();
        }
        let noreply = line.noreply();
        let key = line.tok(1);
        if key.len() > self.limits.max_key_len {
            return self.fail(BAD_FORMAT, 0, noreply);
        }
        match parse_i64(line.tok(2)) {
            Some(exptime) => self.ok(Request::Touch {
                key,
                exptime,
                noreply,
            }),
            None => self.fail(BAD_EXPTIME, 0, noreply),
        }
    }

    /// `flush_all [delay] [noreply]`.
    fn flush_all(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n > 3 {
            return self.error();
        }
        let noreply = line.noreply();
        // Like memcached, any line that is not exactly `flush_all [noreply]` has a delay.
        let delay = if line.n != 1 + usize::from(noreply) {
            match parse_i64(line.tok(1)) {
                Some(delay) => delay,
                None => return self.fail(BAD_EXPTIME, 0, noreply),
            }
        } else {
            0
        };
        self.ok(Request::FlushAll { delay, noreply })
    }

    /// `cache_memlimit <megabytes> [noreply]`; memcached answers a bad number with `ERROR`.
    fn memlimit(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n != 2 && line.n != 3 {
            return self.error();
        }
        let noreply = line.noreply();
        match parse_u32(line.tok(1)) {
            Some(mb) => self.ok(Request::CacheMemlimit {
                megabytes: u64::from(mb),
                noreply,
            }),
            None => self.fail(ERROR, 0, noreply),
        }
    }

    /// `verbosity <level> [noreply]`.
    fn verbosity(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n != 2 && line.n != 3 {
            return self.error();
        }
        let noreply = line.noreply();
        match parse_u32(line.tok(1)) {
            Some(level) => self.ok(Request::Verbosity { level, noreply }),
            None => self.fail(BAD_FORMAT, 0, noreply),
        }
    }

    /// `shutdown [graceful]`.
    fn shutdown(&self) -> Parse<'a> {
        match (self.line.n, self.line.tok(1)) {
            (1, _) => self.ok(Request::Shutdown { graceful: false }),
            (2, b"graceful") => self.ok(Request::Shutdown { graceful: true }),
            _ => self.fail(BAD_SHUTDOWN, 0, false),
        }
    }

    /// Longest key token accepted: a base64 key (`b` flag) may be as long as the encoding of
    /// the longest binary key.
    fn key_limit(&self, flag_tokens: &[&[u8]]) -> usize {
        let max = self.limits.max_key_len;
        if flag_tokens.iter().any(|t| t.first() == Some(&b'b')) {
            max.div_ceil(3).saturating_mul(4)
        } else {
            max
        }
    }

    /// `mg|md|ma <key> <flags>*`. Meta errors are always answered: memcached's `q` flag only
    /// hides nominal replies.
    fn meta(&self, cmd: MetaCmd) -> Parse<'a> {
        let line = &self.line;
        if line.n < 2 {
            return self.fail(BAD_FORMAT, 0, false);
        }
        let key = line.tok(1);
        let flag_tokens = line.flag_tokens(2);
        if key.len() > self.key_limit(flag_tokens) {
            return self.fail(BAD_FORMAT, 0, false);
        }
        if line.n > META_MAX_TOKENS {
            let reply = if cmd == MetaCmd::Get {
                MG_FLAGS_TOO_LONG
            } else {
                FLAGS_TOO_LONG
            };
            return self.fail(reply, 0, false);
        }
        match meta_flags(flag_tokens) {
            Ok(flags) => self.ok(Request::Meta(Meta {
                cmd,
                key,
                flags,
                data: &[],
            })),
            Err(reply) => self.fail(reply, 0, false),
        }
    }

    /// `ms <key> <datalen> <flags>*` and its data block.
    fn meta_set(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n < 2 {
            return self.fail(BAD_FORMAT, 0, false);
        }
        let len = if line.n >= 3 {
            parse_data_len(line.tok(2))
        } else {
            None
        };
        let swallow = len.map_or(0, |len| len + 2);
        let key = line.tok(1);
        let flag_tokens = line.flag_tokens(3);
        if key.len() > self.key_limit(flag_tokens) {
            return self.fail(BAD_FORMAT, swallow, false);
        }
        if line.n > META_MAX_TOKENS {
            return self.fail(FLAGS_TOO_LONG, swallow, false);
        }
        let Some(len) = len else {
            return self.fail(BAD_FORMAT, 0, false);
        };
        let flags = match meta_flags(flag_tokens) {
            Ok(flags) => flags,
            Err(reply) => return self.fail(reply, swallow, false),
        };
        if len > self.limits.item_size_max {
            return Parse::TooLarge {
                unlink: Some(key),
                base64_key: flags.has(b'b'),
                consumed: line.len,
                swallow,
                noreply: false,
            };
        }
        match data_block(self.buf, line.len, len) {
            Block::Incomplete => Parse::Incomplete,
            Block::Bad(consumed) => Parse::Error {
                reply: BAD_CHUNK,
                consumed,
                swallow: 0,
                noreply: false,
                close: false,
            },
            Block::Data(data, consumed) => Parse::Request {
                req: Request::Meta(Meta {
                    cmd: MetaCmd::Set,
                    key,
                    flags,
                    data,
                }),
                consumed,
            },
        }
    }

    /// `me <key> [b]`: memcached reads only an exact `b` as the third token and ignores the
    /// rest.
    fn meta_debug(&self) -> Parse<'a> {
        let line = &self.line;
        if line.n < 2 {
            return self.fail(BAD_FORMAT, 0, false);
        }
        let key = line.tok(1);
        let base64: &[&[u8]] = if line.tok(2) == b"b" {
            &[b"b".as_slice()]
        } else {
            &[]
        };
        if key.len() > self.key_limit(base64) {
            return self.fail(BAD_FORMAT, 0, false);
        }
        match meta_flags(base64) {
            Ok(flags) => self.ok(Request::Meta(Meta {
                cmd: MetaCmd::Debug,
                key,
                flags,
                data: &[],
            })),
            Err(reply) => self.fail(reply, 0, false),
        }
    }
}

/// Collect meta flag tokens (a letter, then an optional token glued on). As in memcached, a
/// bad or repeated flag is reported before an opaque that is too long.
fn meta_flags<'a>(tokens: &[&'a [u8]]) -> Result<MetaFlags<'a>, &'static [u8]> {
    let mut flags = MetaFlags::default();
    for token in tokens {
        if let Some((&flag, rest)) = token.split_first() {
            let duplicate = flags.has(flag);
            if !duplicate && !KNOWN_FLAGS.contains(&flag) {
                return Err(b"CLIENT_ERROR invalid flag\r\n");
            }
            flags.push(flag, rest)?;
        }
    }
    if tokens
        .iter()
        .any(|t| t.first() == Some(&b'O') && t.len() > MAX_OPAQUE_LEN)
    {
        return Err(OPAQUE_TOO_LONG);
    }
    Ok(flags)
}

/// Whitespace as C's `isspace` sees it in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// A decimal number read the way memcached's `safe_strto*` helpers read it with `strtol`:
/// leading whitespace and a sign are allowed, at least one digit is required, and the digits
/// may be followed only by whitespace (after which anything is ignored). Returns the sign and
/// the magnitude, `None` on overflow.
fn c_number(token: &[u8]) -> Option<(bool, u64)> {
    let start = token.iter().position(|&b| !is_c_space(b))?;
    let (negative, rest) = match &token[start..] {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        rest => (false, rest),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits).is_some_and(|&b| !is_c_space(b)) {
        return None;
    }
    let mut value: u64 = 0;
    for &d in &rest[..digits] {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((negative, value))
}

/// An unsigned 64-bit number; memcached refuses a negative one (but `-0` is zero).
fn parse_u64(token: &[u8]) -> Option<u64> {
    match c_number(token)? {
        (true, v) if v != 0 => None,
        (_, v) => Some(v),
    }
}

fn parse_u32(token: &[u8]) -> Option<u32> {
    u32::try_from(parse_u64(token)?).ok()
}

fn parse_i64(token: &[u8]) -> Option<i64> {
    match c_number(token)? {
        (false, v) => i64::try_from(v).ok(),
        (true, v) => 0i64.checked_sub_unsigned(v),
    }
}

/// A data block length: `0..=INT_MAX - 2`, as memcached checks it.
fn parse_data_len(token: &[u8]) -> Option<usize> {
    parse_i64(token)
        .filter(|len| (0..=MAX_DATA_LEN).contains(len))
        .and_then(|len| usize::try_from(len).ok())
}
