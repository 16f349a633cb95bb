//! Knowing where a command's response ends without decoding it: a small state machine over
//! packet headers and the first bytes of each packet (OK/ERR/EOF, column and parameter counts,
//! `SERVER_MORE_RESULTS_EXISTS`, `CLIENT_DEPRECATE_EOF`). The relay forwards bytes as soon as
//! the tracker has seen the part of a packet it needs; rows are never decoded, and a packet of
//! any size streams through.

use super::codec::get_lenenc_int;
use super::{frame_header, status, ProtocolError, MAX_FRAME};

/// What response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No response (`COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`).
    Nothing,
    /// Exactly one packet (OK, ERR or EOF).
    OnePacket,
    /// Result sets, OK or ERR (`COM_QUERY`, `COM_STMT_EXECUTE`).
    ResultSets,
    /// `COM_STMT_PREPARE`'s answer.
    Prepare,
    /// `COM_FIELD_LIST`: column definitions up to an EOF, or ERR.
    FieldList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    First,
    Columns { left: u64 },
    ColumnsEof,
    Rows,
    PrepareFirst,
    Params { left: u64, columns: u64 },
    ParamsEof { columns: u64 },
    PrepColumns { left: u64 },
    PrepColumnsEof,
    UntilEnd,
    OnePacket,
    Done,
}

/// How far a [`Tracker::feed`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes from the front of the input that belong to the response and may be forwarded.
    pub consumed: usize,
    /// The response is complete (it ends exactly at `consumed`).
    pub done: bool,
    /// The next packet would take the response past the byte limit; nothing from it on may be
    /// forwarded.
    pub over_limit: bool,
}

/// Tracks one command's response.
#[derive(Debug, Clone)]
pub struct Tracker {
    state: State,
    deprecate_eof: bool,
    /// Bytes of the current physical packet still to pass.
    skip: usize,
    /// The current physical packet is `MAX_FRAME` long: the next one continues it.
    continuing: bool,
    /// The packet being passed ends the response.
    finishing: bool,
    next_seq: u8,
    bytes: u64,
    limit: Option<u64>,
    error: bool,
    prepared: Option<u32>,
}

/// Bytes of a packet's payload the tracker needs to classify it (an OK's two length-encoded
/// integers and status, or `COM_STMT_PREPARE`'s 12-byte answer).
const PEEK: usize = 21;

impl Tracker {
    /// A tracker for `expect`; `deprecate_eof` is the session's `CLIENT_DEPRECATE_EOF`;
    /// `limit` bounds the response's payload bytes.
    pub fn new(expect: Expect, deprecate_eof: bool, limit: Option<u64>) -> Tracker {
        let state = match expect {
            Expect::Nothing => State::Done,
            Expect::OnePacket => State::OnePacket,
            Expect::ResultSets => State::First,
            Expect::Prepare => State::PrepareFirst,
            Expect::FieldList => State::UntilEnd,
        };
        Tracker {
            state,
            deprecate_eof,
            skip: 0,
            continuing: false,
            finishing: false,
            next_seq: 1,
            bytes: 0,
            limit,
            error: false,
            prepared: None,
        }
    }

    /// Whether the response is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done && self.skip == 0 && !self.continuing
    }

    /// The sequence id the packet after the last one seen must carry.
    pub fn next_seq(&self) -> u8 {
        self.next_seq
    }

    /// Payload and header bytes seen so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The response ended with (or contained) an ERR packet.
    pub fn saw_error(&self) -> bool {
        self.error
    }

    /// The statement id of a successful `COM_STMT_PREPARE`.
    pub fn prepared_id(&self) -> Option<u32> {
        self.prepared
    }

    /// Stops enforcing the byte limit (to drain an aborted response).
    pub fn clear_limit(&mut self) {
        self.limit = None;
    }

    /// Reads as far into `buf` (the bytes after what was consumed before) as possible.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Progress, ProtocolError> {
        let mut pos = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - pos);
                self.skip -= n;
                pos += n;
                if self.skip > 0 {
                    break;
                }
            }
            if self.is_done() {
                return Ok(Progress {
                    consumed: pos,
                    done: true,
                    over_limit: false,
                });
            }
            if self.finishing && !self.continuing {
                self.state = State::Done;
                continue;
            }
            let Some((len, seq)) = frame_header(&buf[pos..]) else {
                break;
            };
            let peek = len.min(PEEK);
            if !self.continuing && buf.len() - pos < 4 + peek {
                break;
            }
            if let Some(limit) = self.limit {
                if self.bytes + 4 + len as u64 > limit {
                    return Ok(Progress {
                        consumed: pos,
                        done: false,
                        over_limit: true,
                    });
                }
            }
            self.bytes += 4 + len as u64;
            self.next_seq = seq.wrapping_add(1);
            if !self.continuing {
                self.classify(&buf[pos + 4..pos + 4 + peek], len)?;
            }
            self.continuing = len == MAX_FRAME;
            self.skip = 4 + len;
        }
        Ok(Progress {
            consumed: pos,
            done: false,
            over_limit: false,
        })
    }

    /// Moves the state machine on by one packet whose payload starts with `head` and is `len`
    /// bytes long.
    fn classify(&mut self, head: &[u8], len: usize) -> Result<(), ProtocolError> {
        let first = head.first().copied();
        if first == Some(0xFF) {
            // ERR ends any response, rows included (a row never starts with 0xFF).
            self.error = true;
            self.finishing = true;
            return Ok(());
        }
        let is_end = first == Some(0xFE) && len < MAX_FRAME && (len < 9 || self.deprecate_eof);
        match self.state {
            State::OnePacket => self.finishing = true,
            State::First => match first {
                Some(0x00) => self.after_result(ok_status(head)?),
                Some(0xFB) => return Err(ProtocolError::LocalInfile),
                _ => {
                    let (n, _) = get_lenenc_int(head)?;
                    if n == 0 {
                        return Err(ProtocolError::malformed("result set with no columns"));
                    }
                    self.state = State::Columns { left: n };
                }
            },
            State::Columns { left } => {
                self.state = if left > 1 {
                    State::Columns { left: left - 1 }
                } else if self.deprecate_eof {
                    State::Rows
                } else {
                    State::ColumnsEof
                };
            }
            State::ColumnsEof => {
                if !is_end {
                    return Err(ProtocolError::malformed("EOF after column definitions"));
                }
                let st = eof_status(head)?;
                if st & status::CURSOR_EXISTS != 0 {
                    self.after_result(st);
                } else {
                    self.state = State::Rows;
                }
            }
            State::Rows => {
                if is_end {
                    let st = if self.deprecate_eof {
                        ok_status(head)?
                    } else {
                        eof_status(head)?
                    };
                    self.after_result(st);
                }
            }
            State::PrepareFirst => {
                if first != Some(0x00) || head.len() < 9 {
                    return Err(ProtocolError::malformed("COM_STMT_PREPARE answer"));
                }
                self.prepared = Some(u32::from_le_bytes([head[1], head[2], head[3], head[4]]));
                let columns = u64::from(u16::from_le_bytes([head[5], head[6]]));
                let params = u64::from(u16::from_le_bytes([head[7], head[8]]));
                if params > 0 {
                    self.state = State::Params {
                        left: params,
                        columns,
                    };
                } else {
                    self.prepare_columns(columns);
                }
            }
            State::Params { left, columns } => {
                if left > 1 {
                    self.state = State::Params {
                        left: left - 1,
                        columns,
                    };
                } else if self.deprecate_eof {
                    self.prepare_columns(columns);
                } else {
                    self.state = State::ParamsEof { columns };
                }
            }
            State::ParamsEof { columns } => {
                if !is_end {
                    return Err(ProtocolError::malformed("EOF after parameter definitions"));
                }
                self.prepare_columns(columns);
            }
            State::PrepColumns { left } => {
                if left > 1 {
                    self.state = State::PrepColumns { left: left - 1 };
                } else if self.deprecate_eof {
                    self.finishing = true;
                } else {
                    self.state = State::PrepColumnsEof;
                }
            }
            State::PrepColumnsEof => {
                if !is_end {
                    return Err(ProtocolError::malformed("EOF after column definitions"));
                }
                self.finishing = true;
            }
            State::UntilEnd => {
                if is_end {
                    self.finishing = true;
                }
            }
            State::Done => return Err(ProtocolError::malformed("packet after the response")),
        }
        Ok(())
    }

    fn after_result(&mut self, st: u16) {
        if st & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::First;
        } else {
            self.finishing = true;
        }
    }

    fn prepare_columns(&mut self, columns: u64) {
        if columns > 0 {
            self.state = State::PrepColumns { left: columns };
        } else {
            self.finishing = true;
        }
    }
}

fn ok_status(head: &[u8]) -> Result<u16, ProtocolError> {
    let bad = || ProtocolError::malformed("OK packet");
    let mut pos = 1;
    for _ in 0..2 {
        let (_, n) = get_lenenc_int(head.get(pos..).ok_or_else(bad)?)?;
        pos += n;
    }
    let b = head.get(pos..pos + 2).ok_or_else(bad)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn eof_status(head: &[u8]) -> Result<u16, ProtocolError> {
    let b = head
        .get(3..5)
        .ok_or_else(|| ProtocolError::malformed("EOF packet"))?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}
