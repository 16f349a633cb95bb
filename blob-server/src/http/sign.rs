//! Signed URLs: an app mints a time-limited URL for one object or blob (`POST /sign`), so a
//! browser can fetch it without the token. The signature is an HMAC-SHA256, under the server's
//! signing key, of the app, the object's canonical path and the expiry time.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::Sha256;

use crate::http::parse::{self, NameLimits};
use crate::http::{json, Api, ApiError, Body, Caller};
use crate::store::ContentId;

type HmacSha256 = Hmac<Sha256>;

/// Largest `POST /sign` body accepted.
const MAX_SIGN_BODY: usize = 16 << 10;

/// Signs and checks URLs with one secret key.
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: <secret> }")
    }
}

impl Signer {
    /// A signer with this key.
    pub fn new(key: [u8; 32]) -> Self {
        Signer { key }
    }

    /// Loads the key from `path` (32 bytes, or 64 hex digits), creating it with fresh random
    /// bytes (mode 0600) if the file does not exist. Servers sharing one store share the file.
    pub fn load_or_create(path: &Path) -> std::io::Result<Signer> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_file_bytes(&bytes).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: a signing key is 32 bytes or 64 hex digits",
                        path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::Rng::fill(&mut rand::rngs::OsRng, &mut key[..]);
                let hex_key = hex::encode(key);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_0600()
                    .open(path)?;
                f.write_all(hex_key.as_bytes())?;
                f.sync_all()?;
                Ok(Signer { key })
            }
            Err(e) => Err(e),
        }
    }

    fn from_file_bytes(bytes: &[u8]) -> Option<Signer> {
        let text = std::str::from_utf8(bytes).ok().map(str::trim);
        let mut key = [0u8; 32];
        if let Some(t) = text {
            if t.len() == 64 && hex::decode_to_slice(t, &mut key).is_ok() {
                return Some(Signer { key });
            }
        }
        (bytes.len() == 32).then(|| {
            key.copy_from_slice(bytes);
            Signer { key }
        })
    }

    fn mac(&self, app: &str, path: &str, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("berth-blob-url-v1\n{app}\n{path}\n{expires}").as_bytes());
        mac
    }

    /// The query string that makes `path` readable by anyone until `expires` (Unix seconds).
    pub fn sign(&self, app: &str, path: &str, expires: u64) -> String {
        let sig = hex::encode(self.mac(app, path, expires).finalize().into_bytes());
        format!(
            "app={}&expires={expires}&signature={sig}",
            parse::encode_name(app)
        )
    }

    /// Checks a signature (in constant time) and the expiry.
    pub fn verify(
        &self,
        app: &str,
        path: &str,
        expires: u64,
        signature: &str,
    ) -> Result<(), ApiError> {
        let invalid = || ApiError::forbidden("invalid signature");
        let sig = hex::decode(signature).map_err(|_| invalid())?;
        self.mac(app, path, expires)
            .verify_slice(&sig)
            .map_err(|_| invalid())?;
        if expires < unix_now() {
            return Err(ApiError::new(403, "expired", "this signed URL has expired"));
        }
        Ok(())
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `POST /sign` body: one object (`bucket` + `key`) or one `blob`, and a lifetime.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    bucket: Option<String>,
    key: Option<String>,
    blob: Option<String>,
    /// Seconds the URL stays valid (default one hour).
    expires_in: Option<u64>,
}

/// Mints a signed URL: answers `{"url": "/buckets/…?app=…&expires=…&signature=…",
/// "expires": UNIX_SECONDS}`, a path relative to the server.
pub async fn mint(
    api: &Arc<Api>,
    caller: &Caller,
    app: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if let Caller::Signed(_) = caller {
        return Err(ApiError::forbidden("a signed URL cannot mint others"));
    }
    let body = http_body_util::Limited::new(req.into_body(), MAX_SIGN_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("invalid_body", "the body is not a small JSON object"))?
        .to_bytes();
    let r: SignRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_body", &format!("invalid sign request: {e}"))
    })?;
    let limits = NameLimits {
        max_name_bytes: api.limits.max_name_bytes,
    };
    let path = match (r.bucket, r.key, r.blob) {
        (Some(b), Some(k), None) => {
            // Validate the decoded names with the same rules as paths.
            let b = parse::name("bucket", &parse::encode_name(&b), limits)?;
            let k = parse::name("key", &parse::encode_name(&k), limits)?;
            parse::object_path(&b, &k)
        }
        (None, None, Some(id)) => {
            let id: ContentId = id.parse().map_err(|_| ApiError::invalid_id())?;
            format!("/blobs/{id}")
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "name either bucket and key, or blob",
            ))
        }
    };
    let ttl = Duration::from_secs(r.expires_in.unwrap_or(3600));
    if ttl.is_zero() || ttl > api.limits.max_signed_ttl {
        return Err(ApiError::bad_request(
            "invalid_body",
            &format!(
                "expires_in must be between 1 and {} seconds",
                api.limits.max_signed_ttl.as_secs()
            ),
        ));
    }
    let expires = unix_now() + ttl.as_secs();
    let query = api.signer.sign(app, &path, expires);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "url": format!("{path}?{query}"), "expires": expires }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_app_path_and_expiry() {
        let s = Signer::new([7; 32]);
        let exp = unix_now() + 60;
        let q = s.sign("app", "/buckets/b/keys/k", exp);
        let sig = q.rsplit_once("signature=").unwrap().1;
        assert!(s.verify("app", "/buckets/b/keys/k", exp, sig).is_ok());
        assert!(s.verify("other", "/buckets/b/keys/k", exp, sig).is_err());
        assert!(s.verify("app", "/buckets/b/keys/k2", exp, sig).is_err());
        assert!(s.verify("app", "/buckets/b/keys/k", exp + 1, sig).is_err());
        assert!(s.verify("app", "/buckets/b/keys/k", exp, "zz").is_err());
        let other = Signer::new([8; 32]);
        assert!(other.verify("app", "/buckets/b/keys/k", exp, sig).is_err());
        let past = unix_now() - 1;
        let q = s.sign("app", "/p", past);
        let sig = q.rsplit_once("signature=").unwrap().1;
        assert_eq!(
            s.verify("app", "/p", past, sig).unwrap_err().code,
            "expired"
        );
    }

    #[test]
    fn key_files_are_created_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("signing.key");
        let a = Signer::load_or_create(&p).unwrap();
        let b = Signer::load_or_create(&p).unwrap();
        assert_eq!(a.key, b.key);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&p, "short").unwrap();
        assert!(Signer::load_or_create(&p).is_err());
    }
}
