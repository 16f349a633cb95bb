//! `/metrics`: Prometheus text for the admin endpoint.

use std::sync::atomic::Ordering;

use berth_common::admin::{MetricKind, MetricsWriter};

use super::Shared;

/// Appends every metric.
pub fn write(s: &Shared, out: &mut String) {
    let mut w = MetricsWriter::new(out);
    let c = &s.counters;
    let st = &s.store.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let globals: [(&str, &str, u64); 18] = [
        (
            "log_app_purges_total",
            "Apps purged through DELETE /v1/apps/{app}/data.",
            super::purge::PURGES.load(Ordering::Relaxed),
        ),
        (
            "log_forward_loki_events_total",
            "Events pushed to Loki (2xx answers).",
            load(&c.forwarded_loki),
        ),
        (
            "log_forward_loki_errors_total",
            "Loki pushes that failed and are retried.",
            load(&c.forward_loki_errors),
        ),
        (
            "log_forward_nats_events_total",
            "Events forwarded to NATS JetStream and acknowledged by it.",
            load(&c.forwarded),
        ),
        (
            "log_forward_nats_errors_total",
            "NATS forwarding sessions interrupted by an error.",
            load(&c.forward_errors),
        ),
        (
            "log_unauthenticated_total",
            "Input refused for a missing or wrong token.",
            load(&c.unauthenticated),
        ),
        (
            "log_bad_frames_total",
            "Frames over the size limit or with a bad octet count, skipped.",
            load(&c.bad_frames),
        ),
        (
            "log_invalid_json_total",
            "JSON lines refused as invalid.",
            load(&c.invalid_json),
        ),
        (
            "log_invalid_syslog_total",
            "Syslog messages refused as unparsable.",
            load(&c.invalid_syslog),
        ),
        (
            "log_otlp_requests_total",
            "OTLP Export requests received.",
            load(&c.otlp_requests),
        ),
        (
            "log_otlp_invalid_requests_total",
            "OTLP requests refused as malformed or over otlp_max_message_bytes.",
            load(&c.otlp_invalid),
        ),
        (
            "log_udp_datagrams_total",
            "Syslog UDP datagrams received.",
            load(&c.udp_datagrams),
        ),
        (
            "log_commits_total",
            "Group commits (fsync rounds).",
            load(&st.commits),
        ),
        (
            "log_disk_full_total",
            "Write rounds refused because the disk was full.",
            load(&st.disk_full),
        ),
        (
            "log_io_errors_total",
            "Write rounds refused for other I/O errors.",
            load(&st.io_errors),
        ),
        (
            "log_recovered_truncated_bytes_total",
            "Bytes of torn tail truncated at start.",
            load(&st.recovered_truncated_bytes),
        ),
        (
            "log_recovered_set_aside_total",
            "Segment files set aside at start.",
            load(&st.recovered_set_aside),
        ),
        (
            "log_retention_deleted_segments_total",
            "Segments deleted by retention.",
            load(&st.retention_deleted),
        ),
    ];
    for (name, help, v) in globals {
        w.counter(name, help, v);
    }
    w.gauge(
        "log_buffered_bytes",
        "Bytes of events waiting to be written.",
        s.store.buffered_bytes() as f64,
    );
    c.json_conns.write_metrics(&mut w, "log_json");
    c.syslog_conns.write_metrics(&mut w, "log_syslog");
    c.otlp_conns.write_metrics(&mut w, "log_otlp");
    let stats: Vec<_> = {
        let apps = s.apps.read();
        let mut v: Vec<_> = apps.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    w.family(
        "log_events_accepted_total",
        "Events accepted for storage, per app.",
        MetricKind::Counter,
    );
    for (app, a) in &stats {
        w.sample_u64(
            "log_events_accepted_total",
            &[("app", app)],
            load(&a.accepted),
        );
    }
    w.family(
        "log_events_dropped_total",
        "Events dropped per app and reason (rate_limit, invalid, buffer_full, store).",
        MetricKind::Counter,
    );
    let stores = s.store.apps();
    for (app, a) in &stats {
        for (reason, v) in [
            ("rate_limit", load(&a.dropped_rate)),
            ("invalid", load(&a.dropped_invalid)),
            ("buffer_full", load(&a.dropped_full)),
        ] {
            w.sample_u64(
                "log_events_dropped_total",
                &[("app", app), ("reason", reason)],
                v,
            );
        }
    }
    for (app, a) in &stores {
        let v = load(&a.refused_events);
        w.sample_u64(
            "log_events_dropped_total",
            &[("app", app), ("reason", "store")],
            v,
        );
    }
    w.family(
        "log_events_stored_total",
        "Events stored durably since start, per app.",
        MetricKind::Counter,
    );
    for (app, a) in &stores {
        w.sample_u64(
            "log_events_stored_total",
            &[("app", app)],
            load(&a.stored_events),
        );
    }
    w.family(
        "log_disk_bytes",
        "Bytes of segments on disk, per app.",
        MetricKind::Gauge,
    );
    for (app, a) in &stores {
        w.sample_u64("log_disk_bytes", &[("app", app)], load(&a.disk_bytes));
    }
    w.family(
        "log_last_seq",
        "Last durable sequence number, per app.",
        MetricKind::Gauge,
    );
    for (app, a) in &stores {
        w.sample_u64("log_last_seq", &[("app", app)], *a.durable.borrow());
    }
}
