//! Length-encoded integers and strings, NUL-terminated strings.

use super::ProtocolError;

/// Reads a length-encoded integer at the front of `buf`: the value and its size in bytes.
pub fn get_lenenc_int(buf: &[u8]) -> Result<(u64, usize), ProtocolError> {
    let bad = || ProtocolError::malformed("length-encoded integer");
    let first = *buf.first().ok_or_else(bad)?;
    let width = match first {
        0..=0xFA => return Ok((u64::from(first), 1)),
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return Err(bad()),
    };
    let bytes = buf.get(1..1 + width).ok_or_else(bad)?;
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    Ok((v, 1 + width))
}

/// Reads a length-encoded string: the bytes and the total size taken.
pub fn get_lenenc_str(buf: &[u8]) -> Result<(&[u8], usize), ProtocolError> {
    let (len, n) = get_lenenc_int(buf)?;
    let len =
        usize::try_from(len).map_err(|_| ProtocolError::malformed("length-encoded string"))?;
    let end = n
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| ProtocolError::malformed("length-encoded string"))?;
    Ok((&buf[n..end], end))
}

/// Reads a NUL-terminated string; with `lenient`, a string running to the end of `buf`
/// without a NUL is accepted too (some clients omit the last terminator).
pub fn get_nul_str(buf: &[u8], lenient: bool) -> Result<(&[u8], usize), ProtocolError> {
    match buf.iter().position(|&b| b == 0) {
        Some(i) => Ok((&buf[..i], i + 1)),
        None if lenient => Ok((buf, buf.len())),
        None => Err(ProtocolError::malformed("NUL-terminated string")),
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(v: u64, out: &mut Vec<u8>) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_str(s: &[u8], out: &mut Vec<u8>) {
    put_lenenc_int(s.len() as u64, out);
    out.extend_from_slice(s);
}

/// A little-endian reader over a payload that reports truncation as `what`.
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    fn err(&self) -> ProtocolError {
        ProtocolError::malformed(self.what)
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn nul_str(&mut self, lenient: bool) -> Result<&'a [u8], ProtocolError> {
        let (s, n) = get_nul_str(self.rest(), lenient).map_err(|_| self.err())?;
        self.pos += n;
        Ok(s)
    }
    pub fn lenenc_int(&mut self) -> Result<u64, ProtocolError> {
        let (v, n) = get_lenenc_int(self.rest()).map_err(|_| self.err())?;
        self.pos += n;
        Ok(v)
    }
    pub fn lenenc_str(&mut self) -> Result<&'a [u8], ProtocolError> {
        let (s, n) = get_lenenc_str(self.rest()).map_err(|_| self.err())?;
        self.pos += n;
        Ok(s)
    }
}
