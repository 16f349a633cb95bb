//! Content ids: the SHA-256 of an object's bytes, written `sha256:<64 lowercase hex>`. Ids are
//! always computed by the store while writing, never taken from a client.

use std::fmt;
use std::str::FromStr;

use crate::store::Error;

const PREFIX: &str = "sha256:";

/// The id of stored content: the SHA-256 digest of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The digest as 64 lowercase hex digits (used as file name and ETag).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The id of content whose SHA-256 `digest` was just computed.
    pub(crate) fn from_digest(digest: ring::digest::Digest) -> Self {
        let mut id = [0u8; 32];
        id.copy_from_slice(digest.as_ref());
        ContentId(id)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex())
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for ContentId {
    type Err = Error;

    /// Parses `sha256:<64 hex>`; upper-case hex is refused so every id has one spelling.
    fn from_str(s: &str) -> Result<Self, Error> {
        let hex_part = s.strip_prefix(PREFIX).ok_or(Error::InvalidId)?;
        if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Error::InvalidId);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| Error::InvalidId)?;
        Ok(ContentId(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn round_trips_and_matches_sha256() {
        let id = ContentId(Sha256::digest(b"abc").into());
        let s = id.to_string();
        assert_eq!(
            s,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.parse::<ContentId>().unwrap(), id);
    }

    #[test]
    fn refuses_malformed_ids() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for bad in [
            good.to_string(),
            format!("sha1:{good}"),
            format!("sha256:{}", &good[1..]),
            format!("sha256:{}", good.to_uppercase()),
            format!("sha256:{}x", &good[1..]),
            format!("sha256:{good}00"),
            "sha256:../../etc/passwd".to_string(),
        ] {
            assert!(
                matches!(bad.parse::<ContentId>(), Err(Error::InvalidId)),
                "{bad}"
            );
        }
    }
}
