//! `stats` and its sub-commands with memcached's field names, scoped to the caller (an app sees
//! only its own figures), and the Prometheus metrics of the admin endpoint.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use berth_common::admin::{MetricKind, MetricsWriter};

use super::conn::{Conn, Session};
use super::counters::{self, Ctr};
use super::{App, Shared};
use crate::protocol::Words;
use crate::store::NamespaceStats;

/// What `version` and `stats` report: memcached's protocol level, then ours, so clients that
/// parse `major.minor.patch` see a 1.6 server.
pub const VERSION: &str = concat!("1.6.21-berth-", env!("CARGO_PKG_VERSION"));

/// Appends `STAT name value\r\n` lines.
struct StatWriter<'o>(&'o mut Vec<u8>);

impl StatWriter<'_> {
    fn stat(&mut self, name: impl std::fmt::Display, value: impl std::fmt::Display) {
        let mut line = String::with_capacity(48);
        let _ = write!(line, "STAT {name} {value}\r\n");
        self.0.extend_from_slice(line.as_bytes());
    }
}

/// Process CPU time as `seconds.micros`.
fn rusage() -> (String, String) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer it is given; the buffer
    // is valid, zero-initialised and only read after a successful call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return ("0.000000".into(), "0.000000".into());
    }
    // SAFETY: getrusage returned 0, so it initialised the struct.
    let ru = unsafe { ru.assume_init() };
    let t = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    (t(ru.ru_utime), t(ru.ru_stime))
}

/// Store figures summed over namespaces.
fn sum_ns(apps: &[std::sync::Arc<App>]) -> NamespaceStats {
    let mut total = NamespaceStats::default();
    for a in apps {
        let s = a.stats();
        total.curr_items += s.curr_items;
        total.total_items += s.total_items;
        total.bytes += s.bytes;
        total.budget += s.budget;
        total.segments_bytes += s.segments_bytes;
        total.evictions += s.evictions;
        total.evicted_unfetched += s.evicted_unfetched;
        total.expired_unfetched += s.expired_unfetched;
        total.reclaimed += s.reclaimed;
        total.expired += s.expired;
        total.flushed += s.flushed;
        total.segment_count += s.segment_count;
        total.compactions += s.compactions;
    }
    total
}

impl Conn<'_> {
    /// The namespaces this session's `stats` speaks for.
    fn scope(&self) -> Vec<std::sync::Arc<App>> {
        match &self.session {
            Session::Operator => self.shared.all_apps(),
            _ => self.app().into_iter().collect(),
        }
    }

    /// `stats [args]`.
    pub(super) fn stats(&mut self, mut args: Words<'_>) {
        let sub = args.next();
        match sub {
            None => self.stats_general(),
            Some(b"settings") => self.stats_settings(),
            Some(b"items") => self.stats_items(),
            Some(b"slabs") => self.stats_slabs(),
            Some(b"sizes") => {
                StatWriter(&mut self.out).stat("sizes_status", "disabled");
                self.out.extend_from_slice(b"END\r\n");
            }
            Some(b"conns") => self.stats_conns(),
            Some(b"reset") => {
                for app in self.scope() {
                    app.reset_stats();
                }
                if self.is_admin() {
                    self.shared.unauth.reset();
                }
                self.out.extend_from_slice(b"RESET\r\n");
            }
            Some(b"detail") => self.stats_detail(args.next()),
            Some(b"cachedump") => self.stats_cachedump(args),
            Some(_) => self.out.extend_from_slice(b"ERROR\r\n"),
        }
    }

    fn stats_general(&mut self) {
        let shared = self.shared;
        let apps = self.scope();
        let admin = self.is_admin();
        let mut totals = [0u64; counters::N];
        for a in &apps {
            for (t, v) in totals.iter_mut().zip(a.counters.snapshot()) {
                *t += v;
            }
        }
        if admin {
            for (t, v) in totals.iter_mut().zip(shared.unauth.snapshot()) {
                *t += v;
            }
        }
        let ns = sum_ns(&apps);
        let now = self.now;
        let (curr, total_conns) = if admin {
            let c = &shared.conn_counters;
            (
                c.current.load(Ordering::Relaxed),
                c.total.load(Ordering::Relaxed),
            )
        } else {
            apps.iter().fold((0, 0), |(c, t), a| {
                (
                    c + a.conns.load(Ordering::Relaxed),
                    t + a.total_conns.load(Ordering::Relaxed),
                )
            })
        };
        let limit = if admin && shared.tenants.is_none() {
            shared.store.config().max_bytes
        } else {
            ns.budget
        };
        let mut w = StatWriter(&mut self.out);
        w.stat("pid", std::process::id());
        w.stat("uptime", now.saturating_sub(2));
        w.stat("time", shared.clock.unix_now());
        w.stat("version", VERSION);
        w.stat("pointer_size", usize::BITS);
        if admin {
            let (user, sys) = rusage();
            w.stat("rusage_user", user);
            w.stat("rusage_system", sys);
        }
        w.stat("max_connections", shared.cfg.max_connections);
        w.stat("curr_connections", curr);
        w.stat("total_connections", total_conns);
        if admin {
            w.stat(
                "rejected_connections",
                shared.conn_counters.rejected.load(Ordering::Relaxed),
            );
        }
        w.stat("connection_structures", curr);
        for (name, v) in counters::NAMES.iter().zip(totals) {
            w.stat(name, v);
        }
        w.stat("limit_maxbytes", limit);
        w.stat("accepting_conns", 1);
        w.stat("threads", shared.cfg.threads);
        w.stat("bytes", ns.bytes);
        w.stat("curr_items", ns.curr_items);
        w.stat("total_items", ns.total_items);
        w.stat("expired_unfetched", ns.expired_unfetched);
        w.stat("evicted_unfetched", ns.evicted_unfetched);
        w.stat("evictions", ns.evictions);
        w.stat("reclaimed", ns.reclaimed);
        w.stat("segments", ns.segment_count);
        w.stat("segment_bytes", ns.segments_bytes);
        self.out.extend_from_slice(b"END\r\n");
    }

    fn stats_settings(&mut self) {
        let cfg = &self.shared.cfg;
        let store = self.shared.store.config();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut w = StatWriter(&mut self.out);
        w.stat("maxbytes", store.max_bytes);
        w.stat("maxconns", cfg.max_connections);
        let port = cfg
            .listen
            .first()
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("0");
        w.stat("tcpport", port);
        w.stat("udpport", 0);
        w.stat("inter", cfg.listen.join(","));
        w.stat("verbosity", self.shared.verbosity.load(Ordering::Relaxed));
        w.stat("oldest", 0);
        w.stat(
            "evictions",
            if cfg.disable_evictions { "off" } else { "on" },
        );
        w.stat(
            "domain_socket",
            cfg.unix_socket
                .as_ref()
                .map_or("NULL".into(), |p| p.display().to_string()),
        );
        w.stat("umask", &cfg.unix_mask);
        w.stat("num_threads", cfg.threads);
        w.stat("stat_key_prefix", ":");
        w.stat(
            "detail_enabled",
            yes(self.shared.detail_on.load(Ordering::Relaxed)),
        );
        w.stat("reqs_per_event", cfg.max_reqs_per_event);
        w.stat("cas_enabled", yes(!cfg.disable_cas));
        w.stat("binding_protocol", "ascii");
        w.stat("auth_enabled_sasl", "no");
        w.stat("auth_enabled_ascii", yes(self.shared.tenants.is_some()));
        w.stat("item_size_max", store.item_size_max);
        w.stat("maxconns_fast", "yes");
        w.stat("flush_enabled", yes(!cfg.disable_flush_all));
        w.stat("shutdown_enabled", yes(cfg.enable_shutdown));
        w.stat("idle_timeout", cfg.idle_timeout.0.as_secs());
        w.stat("segment_size", store.segment_size);
        w.stat("store_shards", store.shards);
        self.out.extend_from_slice(b"END\r\n");
    }

    fn stats_items(&mut self) {
        let ns = sum_ns(&self.scope());
        let now = self.now;
        let mut w = StatWriter(&mut self.out);
        if ns.curr_items > 0 {
            w.stat("items:1:number", ns.curr_items);
            w.stat("items:1:age", now.saturating_sub(2));
            w.stat("items:1:evicted", ns.evictions);
            w.stat("items:1:evicted_unfetched", ns.evicted_unfetched);
            w.stat("items:1:expired_unfetched", ns.expired_unfetched);
            w.stat("items:1:reclaimed", ns.reclaimed);
            w.stat("items:1:outofmemory", 0);
        }
        self.out.extend_from_slice(b"END\r\n");
    }

    fn stats_slabs(&mut self) {
        let ns = sum_ns(&self.scope());
        let seg = self.shared.store.config().segment_size;
        let mut w = StatWriter(&mut self.out);
        if ns.segment_count > 0 {
            w.stat("1:chunk_size", seg);
            w.stat("1:chunks_per_page", 1);
            w.stat("1:total_pages", ns.segment_count);
            w.stat("1:total_chunks", ns.segment_count);
            w.stat("1:used_chunks", ns.segment_count);
            w.stat("1:free_chunks", 0);
            w.stat("1:mem_requested", ns.bytes);
        }
        w.stat("active_slabs", u8::from(ns.segment_count > 0));
        w.stat("total_malloced", ns.segments_bytes);
        self.out.extend_from_slice(b"END\r\n");
    }

    fn stats_conns(&mut self) {
        let admin = self.is_admin();
        let mine = self.app().map(|a| a.name.clone());
        let list = self.shared.registry.list(self.now, |c| {
            admin || c.app.lock().as_deref() == mine.as_deref()
        });
        let mut w = StatWriter(&mut self.out);
        for (id, addr, state, idle) in list {
            w.stat(format_args!("{id}:addr"), addr);
            w.stat(format_args!("{id}:state"), state);
            w.stat(format_args!("{id}:secs_since_last_cmd"), idle);
        }
        self.out.extend_from_slice(b"END\r\n");
    }

    fn stats_detail(&mut self, arg: Option<&[u8]>) {
        if !self.is_admin() {
            self.out
                .extend_from_slice(b"CLIENT_ERROR permission denied\r\n");
            return;
        }
        match arg {
            Some(b"on") => {
                self.shared
                    .detail
                    .lock()
                    .get_or_insert_with(Default::default);
                self.shared.detail_on.store(true, Ordering::Relaxed);
                self.out.extend_from_slice(b"OK\r\n");
            }
            Some(b"off") => {
                self.shared.detail_on.store(false, Ordering::Relaxed);
                *self.shared.detail.lock() = None;
                self.out.extend_from_slice(b"OK\r\n");
            }
            Some(b"dump") => {
                let mut lines: Vec<(Vec<u8>, super::PrefixStats)> = self
                    .shared
                    .detail
                    .lock()
                    .as_ref()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default();
                lines.sort_by(|a, b| a.0.cmp(&b.0));
                for (prefix, s) in lines {
                    self.out.extend_from_slice(b"PREFIX ");
                    self.out.extend_from_slice(&prefix);
                    let tail = format!(
                        " get {} hit {} set {} del {}\r\n",
                        s.get, s.hit, s.set, s.del
                    );
                    self.out.extend_from_slice(tail.as_bytes());
                }
                self.out.extend_from_slice(b"END\r\n");
            }
            _ => self
                .out
                .extend_from_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"),
        }
    }

    fn stats_cachedump(&mut self, mut args: Words<'_>) {
        let class = args
            .next()
            .and_then(|a| std::str::from_utf8(a).ok()?.parse::<u32>().ok());
        let limit = args
            .next()
            .and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok());
        let (Some(class), Some(limit)) = (class, limit) else {
            self.out
                .extend_from_slice(b"CLIENT_ERROR bad command line format\r\n");
            return;
        };
        if class == 1 {
            let clock = self.shared.clock.clone();
            let now = self.now;
            if let Some(app) = self.app() {
                let out = &mut self.out;
                app.ns.dump(limit, now, |key, len, exptime| {
                    out.extend_from_slice(b"ITEM ");
                    out.extend_from_slice(key);
                    let abs = if exptime == 0 {
                        0
                    } else {
                        clock.to_unix(exptime)
                    };
                    out.extend_from_slice(format!(" [{len} b; {abs} s]\r\n").as_bytes());
                });
            }
        }
        self.out.extend_from_slice(b"END\r\n");
    }
}

/// Prometheus metrics: per app (label `app`, `_anonymous` without tenants) and server-wide.
pub(super) fn metrics(shared: &Shared, out: &mut String) {
    let apps = shared.all_apps();
    let rows: Vec<(String, NamespaceStats, [u64; counters::N], u64)> = apps
        .iter()
        .map(|a| {
            let label = if a.name.is_empty() {
                "_anonymous".to_string()
            } else {
                a.name.clone()
            };
            (
                label,
                a.ns.stats(),
                a.counters.snapshot(),
                a.conns.load(Ordering::Relaxed),
            )
        })
        .collect();
    let mut w = MetricsWriter::new(out);
    type Pick = fn(&NamespaceStats, &[u64; counters::N], u64) -> u64;
    let families: [(&str, &str, MetricKind, Pick); 10] = [
        (
            "berth_cache_items",
            "Items stored.",
            MetricKind::Gauge,
            |s, _, _| s.curr_items,
        ),
        (
            "berth_cache_bytes",
            "Bytes of live items.",
            MetricKind::Gauge,
            |s, _, _| s.bytes,
        ),
        (
            "berth_cache_memory_bytes",
            "Bytes of segments allocated.",
            MetricKind::Gauge,
            |s, _, _| s.segments_bytes,
        ),
        (
            "berth_cache_budget_bytes",
            "Memory budget of the namespace.",
            MetricKind::Gauge,
            |s, _, _| s.budget,
        ),
        (
            "berth_cache_hits_total",
            "Lookups that found their item.",
            MetricKind::Counter,
            |_, c, _| c[Ctr::GetHits as usize] + c[Ctr::TouchHits as usize],
        ),
        (
            "berth_cache_misses_total",
            "Lookups that found nothing.",
            MetricKind::Counter,
            |_, c, _| c[Ctr::GetMisses as usize] + c[Ctr::TouchMisses as usize],
        ),
        (
            "berth_cache_evictions_total",
            "Items evicted to stay within budget.",
            MetricKind::Counter,
            |s, _, _| s.evictions,
        ),
        (
            "berth_cache_expired_total",
            "Items that expired.",
            MetricKind::Counter,
            |s, _, _| s.expired,
        ),
        (
            "berth_cache_sets_total",
            "Storage commands.",
            MetricKind::Counter,
            |_, c, _| c[Ctr::CmdSet as usize],
        ),
        (
            "berth_cache_connections",
            "Open connections.",
            MetricKind::Gauge,
            |_, _, n| n,
        ),
    ];
    for (name, help, kind, pick) in families {
        w.family(name, help, kind);
        for (app, s, c, conns) in &rows {
            w.sample(name, &[("app", app)], pick(s, c, *conns) as f64);
        }
    }
    let cc = &shared.conn_counters;
    let globals: [(&str, &str, MetricKind, u64); 5] = [
        (
            "berth_cache_server_connections",
            "Open connections, all apps.",
            MetricKind::Gauge,
            cc.current.load(Ordering::Relaxed),
        ),
        (
            "berth_cache_server_connections_total",
            "Connections accepted.",
            MetricKind::Counter,
            cc.total.load(Ordering::Relaxed),
        ),
        (
            "berth_cache_server_rejected_connections_total",
            "Connections refused at the limit.",
            MetricKind::Counter,
            cc.rejected.load(Ordering::Relaxed),
        ),
        (
            "berth_cache_server_memory_limit_bytes",
            "Item memory limit (-m).",
            MetricKind::Gauge,
            shared.store.config().max_bytes,
        ),
        (
            "berth_cache_server_memory_used_bytes",
            "Segment memory allocated, all apps.",
            MetricKind::Gauge,
            shared.store.memory_used(),
        ),
    ];
    for (name, help, kind, v) in globals {
        w.family(name, help, kind);
        w.sample(name, &[], v as f64);
    }
    let auth_errors = shared.unauth.get(Ctr::AuthErrors);
    w.family(
        "berth_cache_auth_failures_total",
        "Failed logins.",
        MetricKind::Counter,
    );
    w.sample("berth_cache_auth_failures_total", &[], auth_errors as f64);
}
