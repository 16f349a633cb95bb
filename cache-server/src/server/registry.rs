//! The open connections, for `stats conns`: address, state and idle time of each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// A connection's state as `stats conns` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Waiting for the next command.
    Waiting = 0,
    /// Reading the rest of a request.
    Read = 1,
    /// Executing.
    ParseCmd = 2,
    /// Writing replies.
    Write = 3,
}

impl ConnState {
    fn name(v: u8) -> &'static str {
        match v {
            1 => "conn_nread",
            2 => "conn_parse_cmd",
            3 => "conn_write",
            _ => "conn_waiting",
        }
    }
}

/// What one connection publishes about itself.
#[derive(Debug)]
pub struct ConnInfo {
    /// `tcp:127.0.0.1:5555` or `unix:`.
    pub addr: String,
    /// The app it logged in as, once it did ("" anonymous).
    pub app: Mutex<Option<String>>,
    state: AtomicU8,
    /// Relative time of the last command.
    pub last_cmd: AtomicU32,
}

impl ConnInfo {
    /// Publish a state change.
    pub fn set_state(&self, s: ConnState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

/// Every open connection, keyed by a connection id.
#[derive(Debug, Default)]
pub struct ConnRegistry {
    next: AtomicU64,
    conns: Mutex<BTreeMap<u64, Arc<ConnInfo>>>,
}

/// Removes its connection from the registry when dropped.
#[derive(Debug)]
pub struct Registration<'a> {
    registry: &'a ConnRegistry,
    id: u64,
    /// The registered entry.
    pub info: Arc<ConnInfo>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.registry.conns.lock().remove(&self.id);
    }
}

impl ConnRegistry {
    /// Register a connection from `addr` at relative time `now`.
    pub fn register(&self, addr: String, now: u32) -> Registration<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ConnInfo {
            addr,
            app: Mutex::new(None),
            state: AtomicU8::new(ConnState::Waiting as u8),
            last_cmd: AtomicU32::new(now),
        });
        self.conns.lock().insert(id, info.clone());
        Registration {
            registry: self,
            id,
            info,
        }
    }

    /// `(id, addr, state name, seconds since last command)` of the connections `visible`
    /// accepts (a tenant sees only its own).
    pub fn list(
        &self,
        now: u32,
        visible: impl Fn(&ConnInfo) -> bool,
    ) -> Vec<(u64, String, &'static str, u32)> {
        self.conns
            .lock()
            .iter()
            .filter(|(_, c)| visible(c))
            .map(|(id, c)| {
                let last = c.last_cmd.load(Ordering::Relaxed);
                (
                    *id,
                    c.addr.clone(),
                    ConnState::name(c.state.load(Ordering::Relaxed)),
                    now.saturating_sub(last),
                )
            })
            .collect()
    }
}
