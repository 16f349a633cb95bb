//! Per-app byte quotas, exact under concurrency: a writer reserves bytes before writing them
//! (used + reserved never passes the limit), and the reservation is released when the write
//! fails or once its commit has turned it into usage.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::store::{Error, Result};

#[derive(Default)]
struct Account {
    used: u64,
    reserved: u64,
    limit: Option<u64>,
}

/// Usage of one app, as reported by [`crate::store::Store::usage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of distinct content the app references (committed).
    pub used: u64,
    /// Bytes reserved by writes in progress.
    pub reserved: u64,
    /// The app's quota.
    pub limit: u64,
}

/// All apps' accounts.
pub(crate) struct Quotas {
    default_limit: u64,
    accounts: Mutex<HashMap<String, Account>>,
}

impl Quotas {
    pub fn new(default_limit: u64, used: HashMap<String, u64>) -> Arc<Self> {
        let accounts = used
            .into_iter()
            .map(|(app, used)| {
                (
                    app,
                    Account {
                        used,
                        ..Account::default()
                    },
                )
            })
            .collect();
        Arc::new(Quotas {
            default_limit,
            accounts: Mutex::new(accounts),
        })
    }

    pub fn set_limit(&self, app: &str, limit: Option<u64>) {
        self.accounts
            .lock()
            .entry(app.to_string())
            .or_default()
            .limit = limit;
    }

    pub fn usage(&self, app: &str) -> Usage {
        let map = self.accounts.lock();
        match map.get(app) {
            Some(a) => Usage {
                used: a.used,
                reserved: a.reserved,
                limit: a.limit.unwrap_or(self.default_limit),
            },
            None => Usage {
                used: 0,
                reserved: 0,
                limit: self.default_limit,
            },
        }
    }

    /// An empty reservation for `app`, grown with [`Reservation::grow`].
    pub fn reservation(self: &Arc<Self>, app: &str) -> Reservation {
        Reservation {
            quotas: self.clone(),
            app: app.to_string(),
            bytes: 0,
        }
    }

    /// Applies a committed change of usage (positive: charged, negative: freed).
    pub fn apply(&self, app: &str, delta: i128) {
        if delta == 0 {
            return;
        }
        let mut map = self.accounts.lock();
        let a = map.entry(app.to_string()).or_default();
        a.used = (a.used as i128 + delta).max(0) as u64;
    }
}

/// Bytes held back from an app's quota for a write in progress; released on drop.
pub(crate) struct Reservation {
    quotas: Arc<Quotas>,
    app: String,
    bytes: u64,
}

impl Reservation {
    /// Reserves `n` more bytes, or fails without reserving anything.
    pub fn grow(&mut self, n: u64) -> Result<()> {
        let mut map = self.quotas.accounts.lock();
        let a = map.entry(self.app.clone()).or_default();
        let limit = a.limit.unwrap_or(self.quotas.default_limit);
        let after = a.used.saturating_add(a.reserved).saturating_add(n);
        if after > limit {
            return Err(Error::QuotaExceeded { limit });
        }
        a.reserved += n;
        self.bytes += n;
        Ok(())
    }

    /// Turns the reservation into committed usage `delta` in one step, so `used + reserved`
    /// never counts the same bytes twice.
    pub fn settle(mut self, delta: i128) {
        let mut map = self.quotas.accounts.lock();
        let a = map.entry(self.app.clone()).or_default();
        a.reserved -= self.bytes;
        a.used = (a.used as i128 + delta).max(0) as u64;
        self.bytes = 0;
    }

    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut map = self.quotas.accounts.lock();
            if let Some(a) = map.get_mut(&self.app) {
                a.reserved -= self.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_apply_release() {
        let q = Quotas::new(100, HashMap::from([("a".to_string(), 30)]));
        let mut r = q.reservation("a");
        r.grow(60).unwrap();
        assert!(matches!(
            r.grow(11),
            Err(Error::QuotaExceeded { limit: 100 })
        ));
        r.grow(10).unwrap();
        assert_eq!(
            q.usage("a"),
            Usage {
                used: 30,
                reserved: 70,
                limit: 100
            }
        );
        q.apply("a", 70);
        drop(r);
        assert_eq!(
            q.usage("a"),
            Usage {
                used: 100,
                reserved: 0,
                limit: 100
            }
        );
        q.apply("a", -100);
        q.set_limit("b", Some(5));
        assert_eq!(q.usage("b").limit, 5);
        let mut rb = q.reservation("b");
        assert!(rb.grow(6).is_err());
        assert_eq!(rb.bytes(), 0);
        assert_eq!(q.usage("a").used, 0);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let q = Quotas::new(1000, HashMap::new());
        let granted: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut held = Vec::new();
                        for _ in 0..100 {
                            let mut r = q.reservation("a");
                            if r.grow(7).is_ok() {
                                held.push(r);
                            }
                        }
                        let n = held.iter().map(|r| r.bytes()).sum::<u64>();
                        for r in &held {
                            q.apply("a", r.bytes() as i128);
                        }
                        n
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert!(granted <= 1000);
        assert_eq!(granted, 1000 / 7 * 7);
        assert_eq!(q.usage("a").used, granted);
        assert_eq!(q.usage("a").reserved, 0);
    }
}
