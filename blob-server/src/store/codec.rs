//! A tiny length-prefixed binary encoding for metadata values and keys. Hand-written so the
//! format is fixed by this file (documented in docs/blob-store-design.md), not by a library.

use crate::store::Error;

/// Appends fields to a byte vector.
#[derive(Default)]
pub(crate) struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn raw(mut self, v: &[u8]) -> Self {
        self.0.extend_from_slice(v);
        self
    }
    /// A u32 length then the bytes.
    pub fn bytes(self, v: &[u8]) -> Self {
        self.u32(v.len() as u32).raw(v)
    }
}

/// Reads fields back; any shortfall is metadata corruption.
pub(crate) struct Dec<'a>(pub &'a [u8]);

fn short() -> Error {
    Error::Corrupt("truncated metadata value".into())
}

impl<'a> Dec<'a> {
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(short());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.raw(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.raw(4)?.try_into().map_err(|_| short())?,
        ))
    }
    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(
            self.raw(8)?.try_into().map_err(|_| short())?,
        ))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.raw(n)
    }
    pub fn string(&mut self) -> Result<String, Error> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| Error::Corrupt("metadata string is not UTF-8".into()))
    }
    pub fn id(&mut self) -> Result<[u8; 32], Error> {
        self.raw(32)?.try_into().map_err(|_| short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let v = Enc::default()
            .u8(7)
            .u32(9)
            .u64(u64::MAX)
            .bytes(b"hi")
            .raw(&[1; 32])
            .0;
        let mut d = Dec(&v);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u32().unwrap(), 9);
        assert_eq!(d.u64().unwrap(), u64::MAX);
        assert_eq!(d.string().unwrap(), "hi");
        assert_eq!(d.id().unwrap(), [1; 32]);
        assert!(d.0.is_empty());
        for cut in 0..v.len() {
            let mut d = Dec(&v[..cut]);
            let r = (|| {
                d.u8()?;
                d.u32()?;
                d.u64()?;
                d.string()?;
                d.id()
            })();
            assert!(matches!(r, Err(Error::Corrupt(_))), "cut {cut}");
        }
    }
}
