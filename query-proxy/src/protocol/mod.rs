//! The MySQL client/server protocol as pure functions: bytes in, values out, values in, bytes
//! out. No sockets, no tokio: the server and the backend client drive it.
//!
//! Every decoder answers [`Decode::Incomplete`] when it needs more bytes and an error when the
//! bytes can never become valid, and enforces its own size limit before allocating.

mod codec;
pub mod command;
pub mod handshake;
mod invariants;
pub mod reply;
pub mod response;
#[cfg(test)]
mod tests;

pub use codec::{get_lenenc_int, get_lenenc_str, get_nul_str, put_lenenc_int, put_lenenc_str};
#[doc(hidden)]
pub use invariants::check_invariants;

/// Largest payload of one physical packet; a payload this long continues in the next one.
pub const MAX_FRAME: usize = 0xFF_FFFF;

/// Capability flags (`CLIENT_*`).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What the proxy offers its clients. Not offered: compression, `LOCAL INFILE` (the server
    /// could be asked to read client files, and the policy refuses `LOAD DATA` anyway),
    /// `IGNORE_SPACE` (changes how function names lex), TLS (not implemented yet).
    pub const PROXY_SERVER: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | ODBC
        | PROTOCOL_41
        | INTERACTIVE
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Flags that change what the backend sends back; the backend session gets exactly the
    /// client's choice of these, so its replies can be relayed byte for byte.
    pub const RELAYED: u32 = FOUND_ROWS
        | LONG_FLAG
        | ODBC
        | INTERACTIVE
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// Flags the proxy always uses towards the backend.
    pub const BACKEND_BASE: u32 = LONG_PASSWORD
        | CONNECT_WITH_DB
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | PLUGIN_AUTH
        | PLUGIN_AUTH_LENENC_CLIENT_DATA;

    /// The capabilities both sides share, given what the server offered.
    pub fn negotiate(server: u32, client: u32) -> u32 {
        server & client
    }
}

/// Server status flags (`SERVER_*`).
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const CURSOR_EXISTS: u16 = 0x40;
}

/// Why bytes cannot be read as the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("packet of {declared} bytes is larger than the limit of {limit} bytes")]
    TooLarge { declared: usize, limit: usize },
    #[error("packet sequence out of order: expected {expected}, got {got}")]
    Sequence { expected: u8, got: u8 },
    #[error("malformed {what}")]
    Malformed { what: &'static str },
    #[error("the server asked for a local file (LOCAL INFILE), which the proxy never allows")]
    LocalInfile,
}

impl ProtocolError {
    pub(crate) fn malformed(what: &'static str) -> ProtocolError {
        ProtocolError::Malformed { what }
    }
}

/// A decoder's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode<T> {
    /// More bytes are needed.
    Incomplete,
    /// A value, and how many bytes of the input it took.
    Done(T, usize),
}

/// One logical packet: the payloads of one or more physical packets joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of the first physical packet.
    pub seq: u8,
    /// Sequence id of the last physical packet (the next one expected is this + 1).
    pub last_seq: u8,
    /// The joined payload.
    pub payload: Vec<u8>,
}

/// Reads one physical packet header: payload length and sequence id.
pub fn frame_header(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    Some((len, buf[3]))
}

/// Decodes one logical packet from the front of `buf`, joining physical packets of
/// [`MAX_FRAME`] bytes with their continuations. The payload may be at most `limit` bytes; a
/// larger declared length is refused as soon as its header is seen, before any allocation.
pub fn decode_packet(buf: &[u8], limit: usize) -> Result<Decode<Packet>, ProtocolError> {
    let mut pos = 0;
    let mut total = 0usize;
    let mut first_seq = None;
    let mut expected = 0u8;
    // First pass: check that the whole packet is there and within the limit.
    loop {
        let Some((len, seq)) = frame_header(&buf[pos..]) else {
            return Ok(Decode::Incomplete);
        };
        match first_seq {
            None => first_seq = Some(seq),
            Some(_) if seq != expected => {
                return Err(ProtocolError::Sequence { expected, got: seq })
            }
            Some(_) => {}
        }
        expected = seq.wrapping_add(1);
        total += len;
        if total > limit {
            return Err(ProtocolError::TooLarge {
                declared: total,
                limit,
            });
        }
        if buf.len() < pos + 4 + len {
            return Ok(Decode::Incomplete);
        }
        pos += 4 + len;
        if len < MAX_FRAME {
            break;
        }
    }
    let mut payload = Vec::with_capacity(total);
    let mut p = 0;
    while p < pos {
        let (len, _) = frame_header(&buf[p..]).unwrap_or((0, 0));
        payload.extend_from_slice(&buf[p + 4..p + 4 + len]);
        p += 4 + len;
    }
    Ok(Decode::Done(
        Packet {
            seq: first_seq.unwrap_or(0),
            last_seq: expected.wrapping_sub(1),
            payload,
        },
        pos,
    ))
}

/// Appends `payload` as physical packets starting at sequence id `seq`; returns the sequence
/// id the next packet must use. A payload that is a multiple of [`MAX_FRAME`] long ends with
/// an empty packet, as the protocol requires.
pub fn encode_packet(seq: u8, payload: &[u8], out: &mut Vec<u8>) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_FRAME);
        out.reserve(4 + n);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_FRAME {
            return seq;
        }
    }
}
