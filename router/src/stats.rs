//! Request metrics per app (kept across table swaps, keyed by app name) and router-wide
//! counters, written as Prometheus text for the admin endpoint's `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_common::admin::{MetricKind, MetricsWriter};
use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why the router answered for an app itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 503: `max_concurrent_requests` in flight.
    Concurrency,
    /// 413: body over `max_body_bytes`.
    BodyTooLarge,
    /// 504: no response headers within `request_timeout`.
    Timeout,
    /// 503: no backend could be reached.
    NoBackend,
    /// 502: the backend failed after the request was sent.
    BackendFailed,
    /// 400: the client's request could not be read or forwarded.
    ClientFailed,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::Concurrency,
        Refusal::BodyTooLarge,
        Refusal::Timeout,
        Refusal::NoBackend,
        Refusal::BackendFailed,
        Refusal::ClientFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Concurrency => "concurrency",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::Timeout => "timeout",
            Refusal::NoBackend => "no_backend",
            Refusal::BackendFailed => "backend_failed",
            Refusal::ClientFailed => "client_failed",
        }
    }
}

/// One app's counters.
#[derive(Debug, Default)]
pub struct AppStats {
    /// Responses by status class 1xx…5xx (index 0…4).
    pub by_class: [AtomicU64; 5],
    /// Requests in flight (also the concurrency limit's count).
    pub in_flight: AtomicU64,
    latency: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Request body bytes received.
    pub bytes_in: AtomicU64,
    /// Response body bytes sent.
    pub bytes_out: AtomicU64,
    /// Requests sent a second time on a fresh connection.
    pub retries: AtomicU64,
    refusals: [AtomicU64; 6],
}

impl AppStats {
    /// Counts a request in if fewer than `limit` are in flight; the guard counts it out.
    pub fn try_enter(self: &Arc<Self>, limit: u32) -> Option<InFlight> {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= u64::from(limit) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlight(self.clone()))
    }

    /// Records a finished request.
    pub fn record(&self, status: u16, took: Duration, bytes_out: u64) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.latency[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
    }

    /// Counts a refusal.
    pub fn refused(&self, why: Refusal) {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// A request counted in flight for its app until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<AppStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Router-wide counters.
#[derive(Debug, Default)]
pub struct Global {
    /// Requests for a host/path no app serves (404).
    pub unrouted: AtomicU64,
    /// Route tables accepted.
    pub tables_applied: AtomicU64,
    /// Route tables refused.
    pub tables_refused: AtomicU64,
    /// Generation of the table in use.
    pub generation: AtomicU64,
    /// Access events sent to log collectors.
    pub access_sent: AtomicU64,
    /// Access events dropped (queue full, collector unreachable or refusing).
    pub access_dropped: AtomicU64,
}

/// Every app's stats, by name.
#[derive(Debug, Default)]
pub struct Stats {
    apps: Mutex<BTreeMap<String, Arc<AppStats>>>,
    /// Router-wide counters.
    pub global: Global,
}

impl Stats {
    /// The stats of `app`, created on first use.
    pub fn app(&self, app: &str) -> Arc<AppStats> {
        self.apps.lock().entry(app.to_owned()).or_default().clone()
    }

    /// Writes every metric family.
    pub fn write(&self, out: &mut String) {
        let apps: Vec<(String, Arc<AppStats>)> = self
            .apps
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = &self.global;
        let mut w = MetricsWriter::new(out);
        w.counter(
            "berth_router_unrouted_total",
            "Requests for a host and path no app serves (404).",
            load(&g.unrouted),
        );
        w.counter(
            "berth_router_tables_applied_total",
            "Route tables accepted.",
            load(&g.tables_applied),
        );
        w.counter(
            "berth_router_tables_refused_total",
            "Route tables refused.",
            load(&g.tables_refused),
        );
        w.family(
            "berth_router_table_generation",
            "Generation of the route table in use.",
            MetricKind::Gauge,
        );
        w.sample_u64("berth_router_table_generation", &[], load(&g.generation));
        w.counter(
            "berth_router_access_log_sent_total",
            "Access events sent to log collectors.",
            load(&g.access_sent),
        );
        w.counter(
            "berth_router_access_log_dropped_total",
            "Access events dropped: queue full, collector unreachable or refusing.",
            load(&g.access_dropped),
        );

        w.family(
            "berth_router_requests_total",
            "Requests answered, by app and status class.",
            MetricKind::Counter,
        );
        for (app, s) in &apps {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                w.sample_u64(
                    "berth_router_requests_total",
                    &[("app", app), ("class", class)],
                    load(&s.by_class[i]),
                );
            }
        }
        w.family(
            "berth_router_requests_in_flight",
            "Requests being served, by app.",
            MetricKind::Gauge,
        );
        for (app, s) in &apps {
            w.sample_u64(
                "berth_router_requests_in_flight",
                &[("app", app)],
                load(&s.in_flight),
            );
        }
        for (name, help, pick) in [
            (
                "berth_router_request_bytes_total",
                "Request body bytes received, by app.",
                0,
            ),
            (
                "berth_router_response_bytes_total",
                "Response body bytes sent, by app.",
                1,
            ),
            (
                "berth_router_retries_total",
                "Requests sent again on a fresh connection after a backend connection failed.",
                2,
            ),
        ] {
            w.family(name, help, MetricKind::Counter);
            for (app, s) in &apps {
                let v = [&s.bytes_in, &s.bytes_out, &s.retries][pick];
                w.sample_u64(name, &[("app", app)], load(v));
            }
        }
        w.family(
            "berth_router_refused_total",
            "Requests the router answered itself, by app and reason.",
            MetricKind::Counter,
        );
        for (app, s) in &apps {
            for (i, r) in Refusal::ALL.iter().enumerate() {
                w.sample_u64(
                    "berth_router_refused_total",
                    &[("app", app), ("reason", r.label())],
                    load(&s.refusals[i]),
                );
            }
        }
        // MetricsWriter knows counters and gauges only: the histogram is written by hand.
        let name = "berth_router_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request to the end of the response body, by app.\n# TYPE {name} histogram"
        );
        for (app, s) in &apps {
            let app = escape(app);
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += load(&s.latency[i]);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{app=\"{app}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = load(&s.latency_count);
            let _ = writeln!(out, "{name}_bucket{{app=\"{app}\",le=\"+Inf\"}} {count}");
            let sum = load(&s.latency_sum_us) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{app=\"{app}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{app=\"{app}\"}} {count}");
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_guard_counts_in_and_out() {
        let s = Arc::new(AppStats::default());
        let a = s.try_enter(2).unwrap();
        let b = s.try_enter(2).unwrap();
        assert!(s.try_enter(2).is_none());
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 2);
        drop(a);
        let c = s.try_enter(2).unwrap();
        drop((b, c));
        assert_eq!(s.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn metrics_text_has_classes_and_cumulative_buckets() {
        let stats = Stats::default();
        let s = stats.app("shop");
        s.record(200, Duration::from_micros(800), 10);
        s.record(503, Duration::from_millis(30), 5);
        s.refused(Refusal::Concurrency);
        let mut out = String::new();
        stats.write(&mut out);
        for want in [
            "berth_router_requests_total{app=\"shop\",class=\"2xx\"} 1",
            "berth_router_requests_total{app=\"shop\",class=\"5xx\"} 1",
            "berth_router_response_bytes_total{app=\"shop\"} 15",
            "berth_router_refused_total{app=\"shop\",reason=\"concurrency\"} 1",
            "berth_router_request_duration_seconds_bucket{app=\"shop\",le=\"0.001\"} 1",
            "berth_router_request_duration_seconds_bucket{app=\"shop\",le=\"0.05\"} 2",
            "berth_router_request_duration_seconds_bucket{app=\"shop\",le=\"+Inf\"} 2",
            "berth_router_request_duration_seconds_count{app=\"shop\"} 2",
            "# TYPE berth_router_request_duration_seconds histogram",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
    }
}
