//! The item store: Segcache-style segments (items appended to fixed-size buffers, whole
//! segments evicted oldest first with a second chance for accessed items) indexed by compact
//! cuckoo hash tables, split into per-app namespaces with their own budgets inside `-m`.
//!
//! Layout: `Store` (global budget, namespaces) -> `Namespace` (budget, shards) -> `Shard`
//! (mutex around a `Table` and `Segments`). `item.rs` is the byte layout of one item.

mod item;
mod maint;
mod namespace;
mod ops;
mod segments;
mod shard;
mod table;
mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_budget;
#[cfg(test)]
mod tests_model;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use namespace::Namespace;
pub use types::{
    ArithOpts, ArithOutcome, DeleteOpts, DeleteOutcome, GetFlags, GetOpts, ItemView,
    NamespaceStats, StoreMode, StoreOutcome, StoreReq,
};

/// Largest regular segment: entry offsets have 20 bits.
const MAX_SEGMENT: usize = table::MAX_OFFSET;
/// Smallest configurable segment size.
const MIN_SEGMENT_CONFIG: usize = 4 << 10;
/// Largest value (memcached's `-I` tops out at 1 GiB; lengths are stored as u32).
const MAX_ITEM_SIZE: usize = 1 << 30;
/// Most shards per namespace (the shard is picked from 10 hash bits).
const MAX_SHARDS: usize = 1024;

/// Store-wide settings (memcached's `-m`, `-I`, `-M`, `-C`) and tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Memory limit for items in bytes (`-m`): the sum of namespace budgets may not exceed it.
    pub max_bytes: u64,
    /// Largest value in bytes (`-I`, at most 1 GiB).
    pub item_size_max: usize,
    /// Evict when a namespace is full; false (`-M`) fails stores with `OutOfMemory` instead.
    pub evict: bool,
    /// Keep cas values; false (`-C`) saves 8 bytes per item and reports cas 0.
    pub use_cas: bool,
    /// Shards per namespace (1..=1024), each behind its own lock; a namespace gets at most
    /// one per 256 KiB of budget.
    pub shards: usize,
    /// Largest regular segment size in bytes (4 KiB..=1 MiB); small budgets use smaller ones.
    pub segment_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_bytes: 64 << 20,
            item_size_max: 1 << 20,
            evict: true,
            use_cas: true,
            shards: 16,
            segment_size: 1 << 20,
        }
    }
}

/// A set of namespace budgets that does not fit.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// The budgets add up to more than the memory limit.
    #[error(
        "cache budgets add up to {total} bytes, {over} more than the server's memory limit of {max} bytes"
    )]
    Over {
        /// Sum of the budgets.
        total: u64,
        /// The memory limit.
        max: u64,
        /// `total - max`.
        over: u64,
    },
    /// The same namespace is listed twice.
    #[error("cache budget for {name:?} is listed more than once")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
}

/// The whole item store: the memory limit and the namespaces reserved inside it.
pub struct Store {
    cfg: Mutex<StoreConfig>,
    cas: Arc<AtomicU64>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("cfg", &*self.cfg.lock())
            .finish_non_exhaustive()
    }
}

fn over(total: u64, max: u64) -> Result<(), BudgetError> {
    if total > max {
        Err(BudgetError::Over {
            total,
            max,
            over: total - max,
        })
    } else {
        Ok(())
    }
}

impl Store {
    /// A store with no namespaces yet; the server creates "" (anonymous mode) or one per app
    /// with [`Store::ensure_namespace`] / [`Store::apply_budgets`].
    pub fn new(cfg: StoreConfig) -> Arc<Store> {
        let cfg = StoreConfig {
            shards: cfg.shards.clamp(1, MAX_SHARDS),
            segment_size: cfg.segment_size.clamp(MIN_SEGMENT_CONFIG, MAX_SEGMENT),
            item_size_max: cfg.item_size_max.min(MAX_ITEM_SIZE),
            ..cfg
        };
        Arc::new(Store {
            cfg: Mutex::new(cfg),
            cas: Arc::new(AtomicU64::new(0)),
            namespaces: RwLock::new(HashMap::new()),
        })
    }

    /// Current settings (`max_bytes` follows `cache_memlimit`).
    pub fn config(&self) -> StoreConfig {
        *self.cfg.lock()
    }

    fn params(&self) -> namespace::Params {
        let cfg = self.config();
        namespace::Params {
            shards: cfg.shards,
            max_segment: cfg.segment_size,
            use_cas: cfg.use_cas,
            evict: cfg.evict,
            item_size_max: cfg.item_size_max,
            cas: Arc::clone(&self.cas),
        }
    }

    /// Create or resize the namespace `name` with `budget` bytes reserved inside max_bytes.
    pub fn ensure_namespace(&self, name: &str, budget: u64) -> Result<Arc<Namespace>, BudgetError> {
        let mut map = self.namespaces.write();
        let others: u64 = map
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(_, ns)| ns.budget())
            .sum();
        over(others + budget, self.config().max_bytes)?;
        Ok(self.upsert(&mut map, name, budget))
    }

    fn upsert(
        &self,
        map: &mut HashMap<String, Arc<Namespace>>,
        name: &str,
        budget: u64,
    ) -> Arc<Namespace> {
        match map.get(name) {
            Some(ns) => {
                ns.set_budget(budget, 0);
                Arc::clone(ns)
            }
            None => {
                let ns = Arc::new(Namespace::new(name, budget, &self.params()));
                map.insert(name.to_owned(), Arc::clone(&ns));
                ns
            }
        }
    }

    /// The namespace called `name`, if any.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(name).cloned()
    }

    fn check_locked(
        &self,
        map: &HashMap<String, Arc<Namespace>>,
        budgets: &[(String, u64)],
    ) -> Result<(), BudgetError> {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        for (name, bytes) in budgets {
            if !seen.insert(name.as_str()) {
                return Err(BudgetError::Duplicate { name: name.clone() });
            }
            total = total.saturating_add(*bytes);
        }
        // "" is never dropped, so when it is not listed its current budget still counts.
        if !seen.contains("") {
            total = total.saturating_add(map.get("").map_or(0, |ns| ns.budget()));
        }
        over(total, self.config().max_bytes)
    }

    /// Check a whole new set of budgets (name, bytes) against max_bytes without applying it.
    /// An existing "" namespace that is not listed keeps (and counts with) its budget.
    pub fn check_budgets(&self, budgets: &[(String, u64)]) -> Result<(), BudgetError> {
        self.check_locked(&self.namespaces.read(), budgets)
    }

    /// Apply a new set: create/resize listed namespaces, drop (free) the unlisted ones,
    /// except "".
    pub fn apply_budgets(&self, budgets: &[(String, u64)]) -> Result<(), BudgetError> {
        let mut map = self.namespaces.write();
        self.check_locked(&map, budgets)?;
        let listed: std::collections::HashSet<&str> =
            budgets.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<String> = map
            .keys()
            .filter(|n| !n.is_empty() && !listed.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(ns) = map.remove(&name) {
                ns.close();
            }
        }
        // Shrink before growing so memory is released before it is handed out again.
        let mut order: Vec<&(String, u64)> = budgets.iter().collect();
        order.sort_by_key(|(n, b)| *b as i128 - map.get(n).map_or(0, |ns| ns.budget()) as i128);
        for (name, bytes) in order {
            self.upsert(&mut map, name, *bytes);
        }
        Ok(())
    }

    /// Change the memory limit (`cache_memlimit`). In anonymous mode (only "" exists) the ""
    /// namespace follows; otherwise the budgets must still fit.
    pub fn set_max_bytes(&self, bytes: u64) -> Result<(), BudgetError> {
        let map = self.namespaces.write();
        let anonymous = map.len() == 1 && map.contains_key("");
        if anonymous {
            map[""].set_budget(bytes, 0);
        } else {
            over(map.values().map(|ns| ns.budget()).sum(), bytes)?;
        }
        self.cfg.lock().max_bytes = bytes;
        Ok(())
    }

    /// All namespaces, sorted by name.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        let mut v: Vec<_> = self.namespaces.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Bounded background work: free dead segments, compact mostly-dead ones, reclaim expired
    /// and flushed items. Call about once a second.
    pub fn maintain(&self, now: u32) {
        for ns in self.namespaces() {
            ns.maintain(now);
        }
    }

    /// Bytes of segments allocated across namespaces.
    pub fn memory_used(&self) -> u64 {
        self.namespaces
            .read()
            .values()
            .map(|ns| ns.memory_used())
            .sum()
    }
}
