//! Command counters with memcached's `stats` names. Connections count into a plain local array
//! and flush it into the app's shared atomics once per batch of requests, so the hot path does
//! no atomic read-modify-write per command.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($variant:ident => $name:literal,)*) => {
        /// One command counter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Ctr { $($variant,)* }

        /// memcached's stat name of each counter, in [`Ctr`] order.
        pub const NAMES: &[&str] = &[$($name,)*];
    };
}

counters! {
    CmdGet => "cmd_get",
    CmdSet => "cmd_set",
    CmdFlush => "cmd_flush",
    CmdTouch => "cmd_touch",
    CmdMeta => "cmd_meta",
    GetHits => "get_hits",
    GetMisses => "get_misses",
    DeleteMisses => "delete_misses",
    DeleteHits => "delete_hits",
    IncrMisses => "incr_misses",
    IncrHits => "incr_hits",
    DecrMisses => "decr_misses",
    DecrHits => "decr_hits",
    CasMisses => "cas_misses",
    CasHits => "cas_hits",
    CasBadval => "cas_badval",
    TouchHits => "touch_hits",
    TouchMisses => "touch_misses",
    StoreTooLarge => "store_too_large",
    StoreNoMemory => "store_no_memory",
    AuthCmds => "auth_cmds",
    AuthErrors => "auth_errors",
    BytesRead => "bytes_read",
    BytesWritten => "bytes_written",
    ConnYields => "conn_yields",
}

/// Number of counters.
pub const N: usize = NAMES.len();

/// Shared counters of one app (or of the anonymous namespace).
#[derive(Debug)]
pub struct Counters {
    v: [AtomicU64; N],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            v: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    /// Current value of `c`.
    pub fn get(&self, c: Ctr) -> u64 {
        self.v[c as usize].load(Ordering::Relaxed)
    }

    /// All values in [`NAMES`] order.
    pub fn snapshot(&self) -> [u64; N] {
        std::array::from_fn(|i| self.v[i].load(Ordering::Relaxed))
    }

    /// Add a connection's local counts.
    pub fn absorb(&self, local: &mut Local) {
        if !local.dirty {
            return;
        }
        for (i, n) in local.v.iter_mut().enumerate() {
            if *n != 0 {
                self.v[i].fetch_add(*n, Ordering::Relaxed);
                *n = 0;
            }
        }
        local.dirty = false;
    }

    /// `stats reset`.
    pub fn reset(&self) {
        for a in &self.v {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// A connection's not-yet-published counts.
#[derive(Debug, Default)]
pub struct Local {
    v: [u64; N],
    dirty: bool,
}

impl Local {
    /// Count `n` more of `c`.
    #[inline]
    pub fn add(&mut self, c: Ctr, n: u64) {
        self.v[c as usize] += n;
        self.dirty = true;
    }

    /// Count one more of `c`.
    #[inline]
    pub fn incr(&mut self, c: Ctr) {
        self.add(c, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorb_moves_local_counts() {
        let shared = Counters::default();
        let mut local = Local::default();
        local.incr(Ctr::GetHits);
        local.add(Ctr::BytesRead, 10);
        shared.absorb(&mut local);
        shared.absorb(&mut local);
        assert_eq!(shared.get(Ctr::GetHits), 1);
        assert_eq!(shared.get(Ctr::BytesRead), 10);
        assert_eq!(NAMES[Ctr::CmdGet as usize], "cmd_get");
        shared.reset();
        assert_eq!(shared.get(Ctr::GetHits), 0);
    }
}
