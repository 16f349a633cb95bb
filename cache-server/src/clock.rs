//! The server's clock in memcached's "relative seconds", and expiry conversion.
//!
//! Items carry relative times (`u32` seconds since the server started, starting at 2 like
//! memcached so that 1 always lies in the past). Tests use a frozen clock that moves only when
//! told to ([`Clock::advance`]), so expiry is tested without sleeping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// memcached's `REALTIME_MAXDELTA`: exptimes up to 30 days are relative, larger ones absolute.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// Maps wall-clock and relative time for one server.
#[derive(Debug, Clone)]
pub struct Clock {
    /// None: frozen (tests).
    start: Option<Instant>,
    offset: Arc<AtomicU32>,
    /// Unix time at which relative time would be 0.
    process_started: i64,
}

impl Clock {
    /// A running clock whose relative time starts at 2 now.
    pub fn new() -> Self {
        Self::make(Some(Instant::now()))
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn frozen() -> Self {
        Self::make(None)
    }

    fn make(start: Option<Instant>) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        Clock {
            start,
            offset: Arc::new(AtomicU32::new(0)),
            process_started: unix - 2,
        }
    }

    /// Move the clock forward (every copy of it).
    pub fn advance(&self, secs: u32) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }

    /// Current relative time in seconds.
    pub fn now(&self) -> u32 {
        let elapsed = self.start.map_or(0, |s| s.elapsed().as_secs());
        let secs = elapsed + 2 + u64::from(self.offset.load(Ordering::Relaxed));
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Current unix time as the server sees it (follows the relative clock).
    pub fn unix_now(&self) -> i64 {
        self.process_started + i64::from(self.now())
    }

    /// Turn a protocol exptime into a relative expiry at relative time `now`: 0 never expires,
    /// negative is already expired (1), up to 30 days is relative, larger an absolute unix time.
    pub fn expiry_at(&self, exptime: i64, now: u32) -> u32 {
        if exptime == 0 {
            return 0;
        }
        if exptime < 0 {
            return 1;
        }
        let rel = if exptime > REALTIME_MAXDELTA {
            if exptime <= self.process_started {
                return 1;
            }
            exptime - self.process_started
        } else {
            exptime + i64::from(now)
        };
        u32::try_from(rel).unwrap_or(u32::MAX)
    }

    /// A relative time as unix time (for `stats cachedump`).
    pub fn to_unix(&self, rel: u32) -> i64 {
        self.process_started + i64::from(rel)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rules() {
        let c = Clock::frozen();
        let now = c.now();
        assert_eq!(now, 2);
        assert_eq!(c.expiry_at(0, now), 0);
        assert_eq!(c.expiry_at(-1, now), 1);
        assert_eq!(c.expiry_at(10, now), 12);
        assert_eq!(
            c.expiry_at(REALTIME_MAXDELTA, now),
            REALTIME_MAXDELTA as u32 + 2
        );
        let abs = c.unix_now() + 100;
        assert_eq!(c.expiry_at(abs, now), 102);
        assert_eq!(
            c.expiry_at(REALTIME_MAXDELTA + 1, now),
            1,
            "an absolute time long past is expired"
        );
        c.clone().advance(5);
        assert_eq!(c.now(), 7);
        assert_eq!(c.expiry_at(10, c.now()), 17);
        assert_eq!(c.to_unix(7), c.unix_now());
    }
}
