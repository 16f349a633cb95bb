//! Command-phase requests: the first byte of a packet names the command.

use super::codec::Reader;
use super::{caps, ProtocolError};

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1A;
pub const COM_SET_OPTION: u8 = 0x1B;
pub const COM_STMT_FETCH: u8 = 0x1C;
pub const COM_RESET_CONNECTION: u8 = 0x1F;

/// A decoded command; borrowed from the packet payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Quit,
    InitDb(&'a [u8]),
    Query(&'a [u8]),
    FieldList {
        table: &'a [u8],
    },
    Ping,
    ChangeUser(ChangeUser),
    ResetConnection,
    /// `COM_SET_OPTION`: 0 turns multi-statements on, 1 off.
    SetOption(u16),
    StmtPrepare(&'a [u8]),
    /// `COM_STMT_EXECUTE`; `flags` carries the cursor type (0: no cursor).
    StmtExecute {
        stmt_id: u32,
        flags: u8,
    },
    StmtSendLongData {
        stmt_id: u32,
    },
    StmtClose {
        stmt_id: u32,
    },
    StmtReset {
        stmt_id: u32,
    },
    StmtFetch {
        stmt_id: u32,
    },
    /// A command the proxy never forwards (administration, replication, unknown bytes).
    Refused {
        code: u8,
        name: &'static str,
    },
}

/// `COM_CHANGE_USER`'s fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    pub username: Vec<u8>,
    pub auth_response: Vec<u8>,
    pub database: Vec<u8>,
    pub collation: Option<u16>,
    pub auth_plugin: Option<String>,
}

impl<'a> Command<'a> {
    /// Decodes a command packet's payload; `capabilities` are the session's negotiated ones.
    pub fn decode(payload: &'a [u8], capabilities: u32) -> Result<Command<'a>, ProtocolError> {
        let (&code, body) = payload
            .split_first()
            .ok_or_else(|| ProtocolError::malformed("empty command packet"))?;
        let mut r = Reader::new(body, "command");
        Ok(match code {
            COM_QUIT => Command::Quit,
            COM_INIT_DB => Command::InitDb(body),
            COM_QUERY => Command::Query(body),
            COM_FIELD_LIST => Command::FieldList {
                table: r.nul_str(true)?,
            },
            COM_PING => Command::Ping,
            COM_CHANGE_USER => Command::ChangeUser(decode_change_user(body, capabilities)?),
            COM_RESET_CONNECTION => Command::ResetConnection,
            COM_SET_OPTION => Command::SetOption(r.u16()?),
            COM_STMT_PREPARE => Command::StmtPrepare(body),
            COM_STMT_EXECUTE => {
                let stmt_id = r.u32()?;
                let flags = r.u8()?;
                Command::StmtExecute { stmt_id, flags }
            }
            COM_STMT_SEND_LONG_DATA => Command::StmtSendLongData { stmt_id: r.u32()? },
            COM_STMT_CLOSE => Command::StmtClose { stmt_id: r.u32()? },
            COM_STMT_RESET => Command::StmtReset { stmt_id: r.u32()? },
            COM_STMT_FETCH => Command::StmtFetch { stmt_id: r.u32()? },
            other => Command::Refused {
                code: other,
                name: refused_name(other),
            },
        })
    }
}

/// The name of a command the proxy refuses, for the error message.
pub fn refused_name(code: u8) -> &'static str {
    match code {
        0x00 => "COM_SLEEP",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x08 => "COM_SHUTDOWN",
        COM_STATISTICS => "COM_STATISTICS",
        0x0A => "COM_PROCESS_INFO",
        0x0B => "COM_CONNECT",
        0x0C => "COM_PROCESS_KILL",
        0x0D => "COM_DEBUG",
        0x0F => "COM_TIME",
        0x10 => "COM_DELAYED_INSERT",
        0x12 => "COM_BINLOG_DUMP",
        0x13 => "COM_TABLE_DUMP",
        0x14 => "COM_CONNECT_OUT",
        0x15 => "COM_REGISTER_SLAVE",
        0x1D => "COM_DAEMON",
        0x1E => "COM_BINLOG_DUMP_GTID",
        0xFA => "COM_STMT_BULK_EXECUTE",
        _ => "an unknown command",
    }
}

fn decode_change_user(body: &[u8], capabilities: u32) -> Result<ChangeUser, ProtocolError> {
    let mut r = Reader::new(body, "COM_CHANGE_USER");
    let username = r.nul_str(false)?.to_vec();
    let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = usize::from(r.u8()?);
        r.bytes(n)?.to_vec()
    } else {
        r.nul_str(true)?.to_vec()
    };
    let database = r.nul_str(true)?.to_vec();
    let collation = if r.rest().len() >= 2 {
        Some(r.u16()?)
    } else {
        None
    };
    let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
        Some(String::from_utf8_lossy(r.nul_str(true)?).into_owned())
    } else {
        None
    };
    Ok(ChangeUser {
        username,
        auth_response,
        database,
        collation,
        auth_plugin,
    })
}
