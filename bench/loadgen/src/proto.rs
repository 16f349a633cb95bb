//! Pure memcached text-protocol pieces the load generator needs: request encoding and reply
//! parsing. No sockets here, so every reply shape and every truncation of it is unit-tested.

use std::ops::Range;

/// Longest reply line accepted before the stream is declared unparseable; real replies are
/// under 300 bytes (a 250-byte key plus numbers), so anything longer is a desync.
const MAX_LINE: usize = 2048;
/// Largest value a reply may announce; far above anything the benchmarks store.
const MAX_VALUE: usize = 64 << 20;

/// Which reply the next bytes on the wire answer, so the parser knows what is legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// A `get`: zero or more `VALUE` blocks then `END`.
    Get,
    /// A storage command (`set`): a single status line.
    Storage,
}

/// One `VALUE` block of a get reply, as ranges into the parsed buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The key echoed by the server.
    pub key: Range<usize>,
    /// The client flags.
    pub flags: u32,
    /// The data block, without its trailing `\r\n`.
    pub data: Range<usize>,
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A get reply: the items sent before `END` (empty on a miss).
    Values(Vec<Item>),
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`: the whole line.
    Error(String),
}

/// Outcome of trying to parse one reply from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A reply occupying the first `len` bytes.
    Complete {
        /// The reply.
        reply: Reply,
        /// How many bytes it used.
        len: usize,
    },
}

/// The bytes cannot be a reply to the command sent; the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No `\r\n` within [`MAX_LINE`] bytes.
    #[error("reply line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// A line that is not legal here.
    #[error("unexpected reply line {0:?}")]
    Unexpected(String),
    /// A `VALUE` header that does not parse.
    #[error("malformed VALUE line {0:?}")]
    BadValueLine(String),
    /// A data block not followed by `\r\n`.
    #[error("data block not terminated by CRLF")]
    BadDataTerminator,
}

/// Appends `get <key>\r\n`.
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `set <key> <flags> 0 <len>\r\n<value>\r\n`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], flags: u32, value: &[u8]) {
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" {flags} 0 {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Finds the next line starting at `from`: returns the line's end (before `\r\n`).
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ParseError> {
    let window = &buf[from..buf.len().min(from + MAX_LINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(p) => Ok(Some(from + p)),
        None if window.len() >= MAX_LINE => Err(ParseError::LineTooLong),
        None => Ok(None),
    }
}

fn lossy(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// An error line any command may get instead of its normal reply.
fn error_line(line: &[u8]) -> Option<Reply> {
    let is_error = line == b"ERROR"
        || line.starts_with(b"ERROR ")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR");
    is_error.then(|| Reply::Error(lossy(line)))
}

fn parse_num<T: std::str::FromStr>(tok: &[u8]) -> Option<T> {
    std::str::from_utf8(tok).ok()?.parse().ok()
}

/// Parses `VALUE <key> <flags> <bytes> [<cas>]` whose first byte is at `start`.
fn value_header(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<(Range<usize>, u32, usize), ParseError> {
    let bad = || ParseError::BadValueLine(lossy(&buf[start..end]));
    let line = &buf[start..end];
    let mut toks = line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    if toks.next() != Some(b"VALUE") {
        return Err(bad());
    }
    let key = toks.next().ok_or_else(bad)?;
    let flags = toks.next().and_then(parse_num::<u32>).ok_or_else(bad)?;
    let bytes = toks.next().and_then(parse_num::<usize>).ok_or_else(bad)?;
    if let Some(cas) = toks.next() {
        parse_num::<u64>(cas).ok_or_else(bad)?;
    }
    if toks.next().is_some() || bytes > MAX_VALUE {
        return Err(bad());
    }
    let key_start = key.as_ptr() as usize - buf.as_ptr() as usize;
    Ok((key_start..key_start + key.len(), flags, bytes))
}

/// Parses one reply of `kind` from the front of `buf`.
pub fn parse_reply(buf: &[u8], kind: ReplyKind) -> Result<Parsed, ParseError> {
    match kind {
        ReplyKind::Storage => parse_storage(buf),
        ReplyKind::Get => parse_get(buf),
    }
}

fn parse_storage(buf: &[u8]) -> Result<Parsed, ParseError> {
    let Some(end) = line_end(buf, 0)? else {
        return Ok(Parsed::Incomplete);
    };
    let line = &buf[..end];
    let reply = match line {
        b"STORED" => Reply::Stored,
        b"NOT_STORED" => Reply::NotStored,
        b"EXISTS" => Reply::Exists,
        b"NOT_FOUND" => Reply::NotFound,
        _ => error_line(line).ok_or_else(|| ParseError::Unexpected(lossy(line)))?,
    };
    Ok(Parsed::Complete {
        reply,
        len: end + 2,
    })
}

fn parse_get(buf: &[u8]) -> Result<Parsed, ParseError> {
    let mut items = Vec::new();
    let mut pos = 0;
    loop {
        let Some(end) = line_end(buf, pos)? else {
            return Ok(Parsed::Incomplete);
        };
        let line = &buf[pos..end];
        if line == b"END" {
            return Ok(Parsed::Complete {
                reply: Reply::Values(items),
                len: end + 2,
            });
        }
        if line.starts_with(b"VALUE ") {
            let (key, flags, bytes) = value_header(buf, pos, end)?;
            let data_start = end + 2;
            let data_end = data_start + bytes;
            if buf.len() < data_end + 2 {
                return Ok(Parsed::Incomplete);
            }
            if &buf[data_end..data_end + 2] != b"\r\n" {
                return Err(ParseError::BadDataTerminator);
            }
            items.push(Item {
                key,
                flags,
                data: data_start..data_end,
            });
            pos = data_end + 2;
            continue;
        }
        // An error line is only a whole reply on its own, not after VALUE blocks.
        if items.is_empty() {
            if let Some(reply) = error_line(line) {
                return Ok(Parsed::Complete {
                    reply,
                    len: end + 2,
                });
            }
        }
        return Err(ParseError::Unexpected(lossy(line)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8], kind: ReplyKind) -> (Reply, usize) {
        match parse_reply(buf, kind).expect("parses") {
            Parsed::Complete { reply, len } => (reply, len),
            Parsed::Incomplete => panic!("incomplete: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// Every proper prefix of a valid reply must ask for more bytes, never fail or complete.
    fn assert_prefixes_incomplete(buf: &[u8], kind: ReplyKind) {
        for n in 0..buf.len() {
            assert_eq!(
                parse_reply(&buf[..n], kind),
                Ok(Parsed::Incomplete),
                "prefix {n} of {:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn encodes_requests() {
        let mut out = Vec::new();
        encode_get(&mut out, b"key:00000001");
        encode_set(&mut out, b"k", 7, b"abc");
        assert_eq!(out, b"get key:00000001\r\nset k 7 0 3\r\nabc\r\n");
    }

    #[test]
    fn storage_replies() {
        for (wire, want) in [
            (&b"STORED\r\n"[..], Reply::Stored),
            (b"NOT_STORED\r\n", Reply::NotStored),
            (b"EXISTS\r\n", Reply::Exists),
            (b"NOT_FOUND\r\n", Reply::NotFound),
            (b"ERROR\r\n", Reply::Error("ERROR".into())),
            (
                b"SERVER_ERROR out of memory storing object\r\n",
                Reply::Error("SERVER_ERROR out of memory storing object".into()),
            ),
        ] {
            assert_eq!(complete(wire, ReplyKind::Storage), (want, wire.len()));
            assert_prefixes_incomplete(wire, ReplyKind::Storage);
        }
    }

    #[test]
    fn storage_reply_leaves_following_bytes() {
        let (reply, len) = complete(b"STORED\r\nSTORED\r\n", ReplyKind::Storage);
        assert_eq!((reply, len), (Reply::Stored, 8));
    }

    #[test]
    fn get_miss_and_hit() {
        assert_eq!(
            complete(b"END\r\n", ReplyKind::Get),
            (Reply::Values(vec![]), 5)
        );
        let wire = b"VALUE key:1 5 3\r\na\r\n\r\nEND\r\nVALUE";
        let (reply, len) = complete(wire, ReplyKind::Get);
        assert_eq!(len, wire.len() - 5);
        let Reply::Values(items) = reply else {
            panic!("not values")
        };
        assert_eq!(items.len(), 1);
        assert_eq!(&wire[items[0].key.clone()], b"key:1");
        assert_eq!(items[0].flags, 5);
        // The data may itself contain CRLF: only the declared length counts.
        assert_eq!(&wire[items[0].data.clone()], b"a\r\n");
        assert_prefixes_incomplete(&wire[..len], ReplyKind::Get);
    }

    #[test]
    fn get_with_cas_and_several_values() {
        let wire = b"VALUE a 0 1 99\r\nx\r\nVALUE b 1 2\r\nyz\r\nEND\r\n";
        let (reply, len) = complete(wire, ReplyKind::Get);
        assert_eq!(len, wire.len());
        let Reply::Values(items) = reply else {
            panic!("not values")
        };
        let datas: Vec<&[u8]> = items.iter().map(|i| &wire[i.data.clone()]).collect();
        assert_eq!(datas, vec![&b"x"[..], b"yz"]);
        assert_prefixes_incomplete(wire, ReplyKind::Get);
    }

    #[test]
    fn get_error_line() {
        let wire = b"SERVER_ERROR busy\r\n";
        assert_eq!(
            complete(wire, ReplyKind::Get),
            (Reply::Error("SERVER_ERROR busy".into()), wire.len())
        );
    }

    #[test]
    fn rejects_desynced_streams() {
        assert!(matches!(
            parse_reply(b"STORED\r\n", ReplyKind::Get),
            Err(ParseError::Unexpected(_))
        ));
        assert!(matches!(
            parse_reply(b"END\r\n", ReplyKind::Storage),
            Err(ParseError::Unexpected(_))
        ));
        assert_eq!(
            parse_reply(b"VALUE a 0 1\r\nxyEND\r\n", ReplyKind::Get),
            Err(ParseError::BadDataTerminator)
        );
        for bad in [
            &b"VALUE a x 1\r\n"[..],
            b"VALUE a 0\r\n",
            b"VALUE a 0 1 2 3\r\n",
            b"VALUE a 0 -1\r\n",
        ] {
            assert!(
                matches!(
                    parse_reply(bad, ReplyKind::Get),
                    Err(ParseError::BadValueLine(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // An error line after a VALUE block is a broken reply, not an error reply.
        assert!(parse_reply(b"VALUE a 0 1\r\nx\r\nERROR\r\n", ReplyKind::Get).is_err());
        let long = vec![b'A'; MAX_LINE + 10];
        assert_eq!(
            parse_reply(&long, ReplyKind::Storage),
            Err(ParseError::LineTooLong)
        );
    }
}
