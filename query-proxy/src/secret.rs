//! The backend password of an app's MariaDB account: `hex(HMAC-SHA256(backend secret, app
//! name))`. The app never sees it; anyone holding the backend secret (the proxy, the deployer)
//! can derive it, so no per-app password has to be stored or synchronised.

use berth_common::tenants::AppName;
use sha2::{Digest, Sha256};

/// The backend secret: at least 16 bytes, read from a file or the environment, never logged.
#[derive(Clone)]
pub struct BackendSecret(Vec<u8>);

impl std::fmt::Debug for BackendSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendSecret(..)")
    }
}

/// Shortest backend secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

impl BackendSecret {
    /// A secret from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Result<BackendSecret, String> {
        let t = text.trim();
        if t.len() < MIN_SECRET_LEN {
            return Err(format!(
                "the backend secret must be at least {MIN_SECRET_LEN} characters"
            ));
        }
        Ok(BackendSecret(t.as_bytes().to_vec()))
    }

    /// The password of `app_<name>` on the backend.
    pub fn backend_password(&self, app: &AppName) -> String {
        hex::encode(hmac_sha256(&self.0, app.as_str().as_bytes()))
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5C).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xAA; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn passwords_differ_per_app_and_secret() {
        let s = BackendSecret::new("0123456789abcdef0123").unwrap();
        let a = AppName::parse("alpha").unwrap();
        let b = AppName::parse("beta").unwrap();
        assert_eq!(s.backend_password(&a).len(), 64);
        assert_ne!(s.backend_password(&a), s.backend_password(&b));
        let t = BackendSecret::new("another-secret-value").unwrap();
        assert_ne!(s.backend_password(&a), t.backend_password(&a));
        assert!(BackendSecret::new("short").is_err());
        // The example in docs/protocols/query.md (`openssl dgst -sha256 -hmac`).
        assert_eq!(
            s.backend_password(&AppName::parse("guestbook").unwrap()),
            "7eadfe35996dcbd2ccc7b515d32d9aecc7ba7e977f0c4995117524c2638c20eb"
        );
    }
}
