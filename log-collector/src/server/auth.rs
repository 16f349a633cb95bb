//! Who is sending: credentials checked against the tenants (with a one-entry cache per
//! connection), the app name when there are no tenants, and per-app rate limits.

use std::sync::Arc;
use std::time::Instant;

use berth_common::tenants::{AppName, TenantsHandle};

use crate::protocol::Credential;

/// Why input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The collector has tenants and the input named none.
    #[error("authentication required: send an app token (see docs/protocols/logs.md)")]
    Missing,
    /// Wrong app or token.
    #[error("authentication failed")]
    Failed,
    /// Without tenants: the app name given is not a valid app name.
    #[error("invalid app name")]
    BadName,
}

/// The app used when the collector runs without tenants and the input names no valid app.
pub const DEFAULT_APP: &str = "default";

/// Resolves credentials to app names, remembering the last one verified.
#[derive(Debug, Default)]
pub struct AuthCache {
    last: Option<(u64, Credential, String)>,
}

impl AuthCache {
    /// The app `cred` authenticates as. With tenants a credential with a valid token is
    /// required; without, the credential's app (or `fallback`, or [`DEFAULT_APP`]) is used.
    pub fn resolve(
        &mut self,
        tenants: Option<&TenantsHandle>,
        cred: Option<&Credential>,
        fallback: Option<&str>,
    ) -> Result<String, AuthError> {
        let Some(handle) = tenants else {
            if let Some(c) = cred {
                return AppName::parse(&c.app)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|_| AuthError::BadName);
            }
            return Ok(fallback
                .and_then(|f| AppName::parse(f).ok())
                .map_or_else(|| DEFAULT_APP.to_owned(), |n| n.as_str().to_owned()));
        };
        let cred = cred.ok_or(AuthError::Missing)?;
        let generation = handle.generation();
        if let Some((g, c, app)) = &self.last {
            if *g == generation && c == cred {
                return Ok(app.clone());
            }
        }
        let token = cred.token.as_deref().ok_or(AuthError::Failed)?;
        let set = handle.current();
        let tenant = set
            .authenticate(&cred.app, token)
            .ok_or(AuthError::Failed)?;
        let app = tenant.name.as_str().to_owned();
        self.last = Some((generation, cred.clone(), app.clone()));
        Ok(app)
    }
}

/// A token bucket: `rate` events per second, bursts of up to one second's worth.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: u32) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// How many of `n` events may pass now at `rate` per second (0: unlimited).
    pub fn admit(&mut self, rate: u32, n: usize, now: Instant) -> usize {
        if rate == 0 {
            return n;
        }
        let cap = f64::from(rate);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        let take = (self.tokens.floor().max(0.0) as usize).min(n);
        self.tokens -= take as f64;
        take
    }
}

/// The rate of `app`: its tenant's `log_rate`, or `default` without tenants.
pub fn rate_of(tenants: Option<&TenantsHandle>, app: &str, default: u32) -> u32 {
    match tenants {
        Some(h) => h.current().get(app).map_or(default, |t| t.log_rate),
        None => default,
    }
}

/// Shared handle type for tenants.
pub type Tenants = Option<Arc<TenantsHandle>>;

#[cfg(test)]
mod tests {
    use super::*;
    use berth_common::tenants::TenantSet;
    use std::time::Duration;

    fn cred(s: &str) -> Credential {
        Credential::parse(s).unwrap()
    }

    #[test]
    fn without_tenants_names_come_from_input() {
        let mut c = AuthCache::default();
        assert_eq!(c.resolve(None, Some(&cred("shop")), None).unwrap(), "shop");
        assert_eq!(c.resolve(None, None, Some("billing")).unwrap(), "billing");
        assert_eq!(c.resolve(None, None, Some("root")).unwrap(), DEFAULT_APP);
        assert_eq!(c.resolve(None, None, None).unwrap(), DEFAULT_APP);
        assert_eq!(
            c.resolve(None, Some(&cred("../etc")), None),
            Err(AuthError::BadName)
        );
    }

    #[test]
    fn with_tenants_a_valid_token_is_required() {
        let set = TenantSet::from_toml_str("[[app]]\nname = \"shop\"\ntoken = \"t1\"\n").unwrap();
        let h = TenantsHandle::new(set);
        let mut c = AuthCache::default();
        assert_eq!(
            c.resolve(Some(&h), None, Some("shop")),
            Err(AuthError::Missing)
        );
        assert_eq!(
            c.resolve(Some(&h), Some(&cred("shop:bad")), None),
            Err(AuthError::Failed)
        );
        assert_eq!(
            c.resolve(Some(&h), Some(&cred("shop")), None),
            Err(AuthError::Failed)
        );
        assert_eq!(
            c.resolve(Some(&h), Some(&cred("shop:t1")), None).unwrap(),
            "shop"
        );
        assert_eq!(
            c.resolve(Some(&h), Some(&cred("shop:t1")), None).unwrap(),
            "shop"
        );
        // A reload that revokes the token is noticed despite the cache.
        h.replace(TenantSet::from_toml_str("[[app]]\nname = \"shop\"\ntoken = \"t2\"\n").unwrap());
        assert_eq!(
            c.resolve(Some(&h), Some(&cred("shop:t1")), None),
            Err(AuthError::Failed)
        );
    }

    #[test]
    fn bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10);
        assert_eq!(b.admit(10, 25, t0), 10);
        assert_eq!(b.admit(10, 5, t0), 0);
        assert_eq!(b.admit(10, 5, t0 + Duration::from_millis(300)), 3);
        assert_eq!(b.admit(0, 1000, t0), 1000);
    }
}
