//! OK, ERR and EOF packets: encoded by the proxy for its own answers, decoded on the control
//! path (the relay never decodes them beyond what the response tracker needs).

use super::codec::Reader;
use super::{caps, put_lenenc_int, ProtocolError};

/// An OK packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ok {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

impl Ok {
    /// Encodes an OK packet (header 0x00).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11);
        out.push(0x00);
        put_lenenc_int(self.affected_rows, &mut out);
        put_lenenc_int(self.last_insert_id, &mut out);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        out
    }

    /// Decodes an OK packet (header 0x00, or 0xFE when it ends a result set under
    /// `CLIENT_DEPRECATE_EOF`). Only the fixed fields are read.
    pub fn decode(payload: &[u8]) -> Result<Ok, ProtocolError> {
        let mut r = Reader::new(payload, "OK packet");
        let header = r.u8()?;
        if header != 0x00 && header != 0xFE {
            return Err(ProtocolError::malformed("OK packet"));
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status = r.u16()?;
        let warnings = if r.rest().len() >= 2 { r.u16()? } else { 0 };
        Ok(Ok {
            affected_rows,
            last_insert_id,
            status,
            warnings,
        })
    }
}

/// An ERR packet's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Err {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: String,
}

impl Err {
    /// An error with `sqlstate` (5 ASCII characters; anything else becomes `HY000`).
    pub fn new(code: u16, sqlstate: &str, message: impl Into<String>) -> Err {
        let mut state = *b"HY000";
        if sqlstate.len() == 5 && sqlstate.is_ascii() {
            state.copy_from_slice(sqlstate.as_bytes());
        }
        Err {
            code,
            sqlstate: state,
            message: message.into(),
        }
    }

    /// Encodes the ERR packet (protocol 4.1 form, with the SQLSTATE marker).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.message.len());
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        out.extend_from_slice(&self.sqlstate);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Decodes an ERR packet.
    pub fn decode(payload: &[u8]) -> Result<Err, ProtocolError> {
        let mut r = Reader::new(payload, "ERR packet");
        if r.u8()? != 0xFF {
            return Err(ProtocolError::malformed("ERR packet"));
        }
        let code = r.u16()?;
        let mut sqlstate = *b"HY000";
        if r.rest().first() == Some(&b'#') && r.rest().len() >= 6 {
            r.u8()?;
            sqlstate.copy_from_slice(r.bytes(5)?);
        }
        Ok(Err {
            code,
            sqlstate,
            message: String::from_utf8_lossy(r.rest()).into_owned(),
        })
    }
}

/// An EOF packet (`0xFE`, warnings, status).
pub fn encode_eof(warnings: u16, status: u16) -> Vec<u8> {
    let mut out = vec![0xFE];
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// The packet that ends a result set or answers `COM_SET_OPTION`: an EOF packet, or under
/// `CLIENT_DEPRECATE_EOF` an OK packet with the 0xFE header.
pub fn encode_end(capabilities: u32, status: u16) -> Vec<u8> {
    if capabilities & caps::DEPRECATE_EOF != 0 {
        let mut out = Ok {
            status,
            ..Ok::default()
        }
        .encode();
        out[0] = 0xFE;
        out
    } else {
        encode_eof(0, status)
    }
}
