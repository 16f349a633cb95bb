//! Classic memcached commands (storage, retrieval, delete, incr/decr, touch) against one
//! namespace, with memcached's exact replies and `stats` counting.

use std::sync::atomic::Ordering;

use super::conn::Conn;
use super::counters::Ctr;
use super::App;
use crate::protocol::{GetCmd, Request, StoreCmd, Words};
use crate::store::{
    ArithOpts, ArithOutcome, DeleteOpts, DeleteOutcome, GetOpts, StoreMode, StoreOutcome, StoreReq,
};

/// Which per-prefix counter a command feeds (`stats detail`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Detail {
    Get { hit: bool },
    Set,
    Del,
}

/// Append `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub(super) fn write_value(
    out: &mut Vec<u8>,
    key: &[u8],
    flags: u32,
    data: &[u8],
    cas: Option<u64>,
) {
    let mut num = itoa::Buffer::new();
    out.reserve(key.len() + data.len() + 48);
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(num.format(flags).as_bytes());
    out.push(b' ');
    out.extend_from_slice(num.format(data.len()).as_bytes());
    if let Some(cas) = cas {
        out.push(b' ');
        out.extend_from_slice(num.format(cas).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

impl Conn<'_> {
    /// Execute a classic item command.
    pub(super) fn classic(&mut self, app: &App, req: Request<'_>) {
        match req {
            Request::Get { cmd, exptime, keys } => self.get(app, cmd, exptime, keys),
            Request::Store {
                cmd,
                key,
                flags,
                exptime,
                data,
                cas,
                noreply,
            } => {
                let reply = self.store(app, cmd, key, flags, exptime, data, cas);
                self.reply(reply, noreply);
            }
            Request::Delete { key, noreply } => {
                let reply: &[u8] = match app.ns.delete(key, &DeleteOpts::default(), self.now) {
                    DeleteOutcome::Deleted => {
                        self.local.incr(Ctr::DeleteHits);
                        b"DELETED\r\n"
                    }
                    DeleteOutcome::NotFound | DeleteOutcome::Exists => {
                        self.local.incr(Ctr::DeleteMisses);
                        b"NOT_FOUND\r\n"
                    }
                };
                self.detail(key, Detail::Del);
                self.reply(reply, noreply);
            }
            Request::Arith {
                incr,
                key,
                delta,
                noreply,
            } => self.arith(app, incr, key, delta, noreply),
            Request::Touch {
                key,
                exptime,
                noreply,
            } => {
                self.local.incr(Ctr::CmdTouch);
                let exp = self.shared.clock.expiry_at(exptime, self.now);
                let reply: &[u8] = if app.ns.touch(key, exp, self.now) {
                    self.local.incr(Ctr::TouchHits);
                    b"TOUCHED\r\n"
                } else {
                    self.local.incr(Ctr::TouchMisses);
                    b"NOT_FOUND\r\n"
                };
                self.reply(reply, noreply);
            }
            // Everything else is dispatched before reaching here.
            _ => self.out.extend_from_slice(b"ERROR\r\n"),
        }
    }

    fn get(&mut self, app: &App, cmd: GetCmd, exptime: i64, keys: Words<'_>) {
        let now = self.now;
        let touch = matches!(cmd, GetCmd::Gat | GetCmd::Gats)
            .then(|| self.shared.clock.expiry_at(exptime, now));
        let with_cas = matches!(cmd, GetCmd::Gets | GetCmd::Gats);
        let opts = GetOpts {
            touch,
            ..GetOpts::default()
        };
        for key in keys {
            let out = &mut self.out;
            let hit = app.ns.get(key, now, &opts, |found| match found {
                Some((item, _)) => {
                    write_value(
                        out,
                        key,
                        item.flags,
                        item.value,
                        with_cas.then_some(item.cas),
                    );
                    true
                }
                None => false,
            });
            self.local.incr(Ctr::CmdGet);
            match (touch.is_some(), hit) {
                (false, true) => self.local.incr(Ctr::GetHits),
                (false, false) => self.local.incr(Ctr::GetMisses),
                (true, true) => {
                    self.local.incr(Ctr::CmdTouch);
                    self.local.incr(Ctr::TouchHits);
                }
                (true, false) => {
                    self.local.incr(Ctr::CmdTouch);
                    self.local.incr(Ctr::TouchMisses);
                }
            }
            self.detail(key, Detail::Get { hit });
        }
        self.out.extend_from_slice(b"END\r\n");
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        app: &App,
        cmd: StoreCmd,
        key: &[u8],
        flags: u32,
        exptime: i64,
        data: &[u8],
        cas: u64,
    ) -> &'static [u8] {
        self.local.incr(Ctr::CmdSet);
        self.detail(key, Detail::Set);
        let mode = match cmd {
            StoreCmd::Set | StoreCmd::Cas => StoreMode::Set,
            StoreCmd::Add => StoreMode::Add,
            StoreCmd::Replace => StoreMode::Replace,
            StoreCmd::Append => StoreMode::Append,
            StoreCmd::Prepend => StoreMode::Prepend,
        };
        let req = StoreReq {
            mode,
            key,
            value: data,
            flags,
            exptime: self.shared.clock.expiry_at(exptime, self.now),
            compare_cas: (cmd == StoreCmd::Cas).then_some(cas),
            new_cas: None,
            invalidate: false,
            vivify: None,
            binary_key: false,
        };
        let outcome = app.ns.store(&req, self.now);
        self.count_store(cmd == StoreCmd::Cas, &outcome);
        match outcome {
            StoreOutcome::Stored { .. } => b"STORED\r\n",
            StoreOutcome::NotStored => b"NOT_STORED\r\n",
            StoreOutcome::Exists => b"EXISTS\r\n",
            StoreOutcome::NotFound => b"NOT_FOUND\r\n",
            StoreOutcome::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            StoreOutcome::OutOfMemory => b"SERVER_ERROR out of memory storing object\r\n",
        }
    }

    /// Count a store's outcome in memcached's counters.
    pub(super) fn count_store(&mut self, is_cas: bool, outcome: &StoreOutcome) {
        match outcome {
            StoreOutcome::Stored { .. } if is_cas => self.local.incr(Ctr::CasHits),
            StoreOutcome::Exists => self.local.incr(Ctr::CasBadval),
            StoreOutcome::NotFound if is_cas => self.local.incr(Ctr::CasMisses),
            StoreOutcome::TooLarge => self.local.incr(Ctr::StoreTooLarge),
            StoreOutcome::OutOfMemory => self.local.incr(Ctr::StoreNoMemory),
            _ => {}
        }
    }

    fn arith(&mut self, app: &App, incr: bool, key: &[u8], delta: u64, noreply: bool) {
        let opts = ArithOpts {
            incr,
            delta,
            compare_cas: None,
            new_cas: None,
            vivify: None,
            touch: None,
        };
        let outcome = app.ns.arith(key, &opts, self.now);
        self.count_arith(incr, &outcome);
        match outcome {
            ArithOutcome::Value { value, .. } => {
                if !noreply {
                    let mut num = itoa::Buffer::new();
                    self.out.extend_from_slice(num.format(value).as_bytes());
                    self.out.extend_from_slice(b"\r\n");
                }
            }
            ArithOutcome::NotFound | ArithOutcome::Exists => self.reply(b"NOT_FOUND\r\n", noreply),
            ArithOutcome::NonNumeric => self.reply(
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
                noreply,
            ),
            ArithOutcome::OutOfMemory => self.reply(b"SERVER_ERROR out of memory\r\n", noreply),
        }
    }

    /// Count an incr/decr outcome.
    pub(super) fn count_arith(&mut self, incr: bool, outcome: &ArithOutcome) {
        let hit = matches!(outcome, ArithOutcome::Value { .. });
        let miss = matches!(outcome, ArithOutcome::NotFound);
        match (incr, hit, miss) {
            (true, true, _) => self.local.incr(Ctr::IncrHits),
            (false, true, _) => self.local.incr(Ctr::DecrHits),
            (true, _, true) => self.local.incr(Ctr::IncrMisses),
            (false, _, true) => self.local.incr(Ctr::DecrMisses),
            _ => {}
        }
    }

    /// Feed `stats detail` when it is on (memcached `-D`; prefix delimiter `:`).
    pub(super) fn detail(&self, key: &[u8], what: Detail) {
        if !self.shared.detail_on.load(Ordering::Relaxed) {
            return;
        }
        let Some(pos) = key.iter().position(|&b| b == b':') else {
            return;
        };
        let mut guard = self.shared.detail.lock();
        let Some(map) = guard.as_mut() else { return };
        let e = map.entry(key[..pos].to_vec()).or_default();
        match what {
            Detail::Get { hit } => {
                e.get += 1;
                e.hit += u64::from(hit);
            }
            Detail::Set => e.set += 1,
            Detail::Del => e.del += 1,
        }
    }
}
