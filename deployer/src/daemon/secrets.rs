//! Secrets at rest: every secret config value (and each app's runtime token) is sealed with
//! XChaCha20-Poly1305 under berthd's secrets key before it reaches the state database, and
//! opened only to write an instance's secrets file.
//!
//! The key is 32 random bytes, hex, in the file named by `secrets_key_file` in berthd's
//! config (default `<data_dir>/secrets.key`, made at first start with mode 0600). Keep it
//! apart from backups of the state database: one without the other reveals nothing. The
//! sealed form is `v1:<base64 of nonce(24) || ciphertext>`; the app name is bound as
//! associated data, so a sealed value moved to another app does not open.

use std::path::Path;

use anyhow::{anyhow, Context};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Seals and opens secrets with berthd's key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// Loads the key from `path`, making it first if it does not exist.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Sealer> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                super::write_secret(path, &hex::encode(key))?;
                tracing::warn!(path = %path.display(), "made a new secrets key; back it up apart from the state");
                hex::encode(key)
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let key = hex::decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| anyhow!("{}: a secrets key is 64 hex digits", path.display()))?;
        Ok(Sealer {
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
        })
    }

    /// Seals `plain` for `app`.
    pub fn seal(&self, app: &str, plain: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: app.as_bytes(),
                },
            )
            .expect("encryption of a bounded message");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
        )
    }

    /// Opens what [`Sealer::seal`] made for `app`.
    pub fn open(&self, app: &str, sealed: &str) -> anyhow::Result<String> {
        let raw = sealed
            .strip_prefix("v1:")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(b)
                    .ok()
            })
            .filter(|r| r.len() > 24)
            .ok_or_else(|| anyhow!("not a sealed value"))?;
        let (nonce, ct) = raw.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: app.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("a secret of {app} does not open with this secrets key"))?;
        String::from_utf8(plain).map_err(|_| anyhow!("a secret of {app} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_app_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let s = Sealer::load_or_create(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = s.seal("shop", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            s.seal("shop", "hunter2"),
            sealed,
            "a fresh nonce every time"
        );
        assert_eq!(s.open("shop", &sealed).unwrap(), "hunter2");
        assert!(s.open("blog", &sealed).is_err());
        let again = Sealer::load_or_create(&path).unwrap();
        assert_eq!(again.open("shop", &sealed).unwrap(), "hunter2");
        let other = Sealer::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.open("shop", &sealed).is_err());
    }
}
