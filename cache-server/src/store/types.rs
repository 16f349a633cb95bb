//! Requests, outcomes and views the store exchanges with the server; plain data, so the
//! protocol layer can build and match them without knowing the storage layout.

/// A stored item as a get sees it, borrowed from its segment while the shard lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemView<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value bytes.
    pub value: &'a [u8],
    /// Opaque client flags.
    pub flags: u32,
    /// Cas unique (0 when cas is disabled).
    pub cas: u64,
    /// Expiry in relative seconds, 0 = never (after any touch by this get).
    pub exptime: u32,
    /// Last access in relative seconds (after any bump by this get).
    pub atime: u32,
    /// Fetched before or by this get.
    pub fetched: bool,
    /// The key was stored base64-encoded (meta `b`).
    pub binary_key: bool,
    /// Marked stale by an invalidation.
    pub stale: bool,
    /// A win token has been handed out (including by this get).
    pub win_sent: bool,
}

/// Options of a get (meta `mg` flags; classic get/gets use the default, gat/gats set `touch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOpts {
    /// New exptime (relative seconds, 0 = never) to set on a hit.
    pub touch: Option<u32>,
    /// Set the fetched/accessed bits and last-access time (false for meta `u`).
    pub bump: bool,
    /// Meta `N`: on a miss create an empty item with this exptime and win it.
    pub vivify: Option<u32>,
    /// Meta `R`: win a recache if the remaining TTL is below this many seconds.
    pub recache_below: Option<u32>,
}

impl Default for GetOpts {
    fn default() -> Self {
        GetOpts {
            touch: None,
            bump: true,
            vivify: None,
            recache_below: None,
        }
    }
}

/// What a get did besides returning the item: the meta flags W, X, Z, h and l.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GetFlags {
    /// This client won the right to recache (W).
    pub won: bool,
    /// The item is stale (X).
    pub stale: bool,
    /// A win token had already been sent before this get (Z).
    pub win_sent: bool,
    /// The item had been fetched before this get (h).
    pub hit_before: bool,
    /// Seconds since the last access before this get (l).
    pub last_access: u32,
}

/// Storage command kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if absent.
    Add,
    /// Store only if present.
    Replace,
    /// Add data after the existing value.
    Append,
    /// Add data before the existing value.
    Prepend,
}

/// One storage request (classic set/add/replace/append/prepend/cas or meta `ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreReq<'a> {
    /// Kind of store.
    pub mode: StoreMode,
    /// Key (at most 250 bytes).
    pub key: &'a [u8],
    /// Value (may be empty).
    pub value: &'a [u8],
    /// Client flags (ignored by append/prepend, which keep the old ones).
    pub flags: u32,
    /// Expiry in relative seconds, 0 = never (ignored by append/prepend).
    pub exptime: u32,
    /// Classic `cas` / meta `C`: EXISTS when different, NOT_FOUND when missing.
    pub compare_cas: Option<u64>,
    /// Meta `E`: the cas value to give the stored item.
    pub new_cas: Option<u64>,
    /// Meta `I`: if `compare_cas` is older than the item's cas, store anyway but mark stale.
    pub invalidate: bool,
    /// Meta `N`: append/prepend on a miss creates the item with this exptime.
    pub vivify: Option<u32>,
    /// Meta `b`: the key arrived base64-encoded, and meta replies return it encoded.
    pub binary_key: bool,
}

impl<'a> StoreReq<'a> {
    /// A plain request with no cas or meta options.
    pub fn new(mode: StoreMode, key: &'a [u8], value: &'a [u8], flags: u32, exptime: u32) -> Self {
        StoreReq {
            mode,
            key,
            value,
            flags,
            exptime,
            compare_cas: None,
            new_cas: None,
            invalidate: false,
            vivify: None,
            binary_key: false,
        }
    }
}

/// Result of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored; the new item's cas.
    Stored {
        /// Cas unique of the stored item (0 when cas is disabled).
        cas: u64,
    },
    /// Condition not met (add of a present key, replace/append/prepend of a missing one).
    NotStored,
    /// Cas mismatch.
    Exists,
    /// Cas store of a missing key.
    NotFound,
    /// Value longer than the item size limit (`-I`), or item larger than the namespace budget.
    TooLarge,
    /// No memory: eviction disabled (`-M`) or nothing left to evict.
    OutOfMemory,
}

/// Options of a delete (classic delete uses the default; meta `md` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteOpts {
    /// Meta `C`: only delete if the cas matches.
    pub compare_cas: Option<u64>,
    /// Meta `E`: cas to give the item when it is kept (invalidate / drop value).
    pub new_cas: Option<u64>,
    /// Meta `I`: mark stale and bump the cas instead of removing.
    pub invalidate: bool,
    /// Meta `T`: new exptime for the kept item (with `invalidate` or `drop_value`).
    pub invalidate_ttl: Option<u32>,
    /// Meta `x`: keep the item but empty its value and zero its client flags.
    pub drop_value: bool,
}

/// Result of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted (or invalidated / emptied).
    Deleted,
    /// No such item.
    NotFound,
    /// Cas mismatch.
    Exists,
}

/// Options of incr/decr (classic incr/decr and meta `ma`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArithOpts {
    /// Increment (true) or decrement.
    pub incr: bool,
    /// Amount.
    pub delta: u64,
    /// Meta `C`: only apply if the cas matches (0 = no check, like memcached).
    pub compare_cas: Option<u64>,
    /// Meta `E`: cas to give the updated item.
    pub new_cas: Option<u64>,
    /// Meta `N`/`J`: on a miss create the item with (initial value, exptime).
    pub vivify: Option<(u64, u32)>,
    /// Meta `T`: new exptime.
    pub touch: Option<u32>,
}

impl ArithOpts {
    /// A plain incr (`incr = true`) or decr by `delta`.
    pub fn new(incr: bool, delta: u64) -> Self {
        ArithOpts {
            incr,
            delta,
            compare_cas: None,
            new_cas: None,
            vivify: None,
            touch: None,
        }
    }
}

/// Result of incr/decr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value (or the initial value of a vivified item).
    Value {
        /// New numeric value.
        value: u64,
        /// New cas.
        cas: u64,
        /// Exptime of the item afterwards.
        exptime: u32,
    },
    /// No such item.
    NotFound,
    /// The stored value is not a decimal number.
    NonNumeric,
    /// Cas mismatch.
    Exists,
    /// No memory to store a longer value.
    OutOfMemory,
}

/// Counters and sizes of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NamespaceStats {
    /// Items in the index (like memcached, includes expired ones not yet reclaimed).
    pub curr_items: u64,
    /// Successful stores ever.
    pub total_items: u64,
    /// Sum of live item sizes (header + key + value).
    pub bytes: u64,
    /// The namespace's byte budget.
    pub budget: u64,
    /// Bytes of segments allocated (charged to the budget).
    pub segments_bytes: u64,
    /// Items evicted to make room.
    pub evictions: u64,
    /// Evicted items that were never fetched.
    pub evicted_unfetched: u64,
    /// Expired items removed that were never fetched.
    pub expired_unfetched: u64,
    /// Expired or flushed items whose space the maintenance pass reclaimed.
    pub reclaimed: u64,
    /// Expired items removed (on access, by maintenance or during eviction).
    pub expired: u64,
    /// Items removed by flushes.
    pub flushed: u64,
    /// Segments allocated.
    pub segment_count: u64,
    /// Mostly-dead segments compacted by maintenance.
    pub compactions: u64,
    /// Heap bytes of the hash tables (not charged to the budget).
    pub hash_bytes: u64,
}
