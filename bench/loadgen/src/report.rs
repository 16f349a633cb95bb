//! Turns merged counters into the human summary and the flat `--json` object the bench scripts
//! read (hand-written JSON: one flat object does not justify a serializer dependency).

use std::fmt::Write as _;
use std::time::Duration;

use crate::conn::Stats;

/// Everything one invocation reports.
#[derive(Debug)]
pub struct Report {
    /// Server address.
    pub server: String,
    /// Connections opened.
    pub connections: usize,
    /// Client threads.
    pub threads: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Key space size.
    pub keys: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Fraction of gets.
    pub get_ratio: f64,
    /// Preload counters and wall time (None when skipped).
    pub preload: Option<(Stats, Duration)>,
    /// Timed-phase counters and the measured window (None with `--load-only`).
    pub run: Option<(Stats, Duration)>,
    /// Verification counters (None when not asked for).
    pub verify: Option<Stats>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn per_sec(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Report {
    /// Errors of every phase, connections lost, and verified keys that were missing.
    pub fn problems(&self) -> (u64, u64, u64) {
        let phases = [
            self.preload.as_ref().map(|p| &p.0),
            self.run.as_ref().map(|r| &r.0),
            self.verify.as_ref(),
        ];
        let errors = phases.iter().flatten().map(|s| s.errors).sum();
        let failed = phases.iter().flatten().map(|s| s.failed_conns).sum();
        let missing = self.verify.as_ref().map_or(0, |v| v.misses);
        (errors, failed, missing)
    }

    fn error_samples(&self) -> Vec<String> {
        let phases = [
            self.preload.as_ref().map(|p| &p.0),
            self.run.as_ref().map(|r| &r.0),
            self.verify.as_ref(),
        ];
        phases
            .iter()
            .flatten()
            .flat_map(|s| s.error_samples.iter().cloned())
            .take(5)
            .collect()
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "server {}  connections {} on {} threads, depth {}  keys {}  value {} B  get ratio {:.2}",
            self.server, self.connections, self.threads, self.depth, self.keys, self.value_size, self.get_ratio
        );
        if let Some((s, d)) = &self.preload {
            let _ = writeln!(
                o,
                "preload   {} sets, {} stored in {:.2} s ({:.0} sets/s)",
                s.sets,
                s.stored,
                d.as_secs_f64(),
                per_sec(s.sets, *d)
            );
        }
        if let Some((s, d)) = &self.run {
            let _ = writeln!(o, "run       {:.2} s measured", d.as_secs_f64());
            let _ = writeln!(
                o,
                "ops       {}  ({:.0} ops/s)",
                s.ops(),
                per_sec(s.ops(), *d)
            );
            let _ = writeln!(
                o,
                "gets      {}  hits {}  misses {}  hit ratio {:.4}",
                s.gets,
                s.hits,
                s.misses,
                ratio(s.hits, s.gets)
            );
            let _ = writeln!(o, "sets      {}  stored {}", s.sets, s.stored);
            let h = &s.hist;
            let _ = writeln!(
                o,
                "latency   p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us  max {:.1} us  mean {:.1} us",
                us(h.value_at_quantile(0.50)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.max()),
                h.mean() / 1000.0
            );
        }
        if let Some(v) = &self.verify {
            let _ = writeln!(
                o,
                "verify    {} keys read: {} correct, {} missing",
                v.gets, v.hits, v.misses
            );
        }
        let (errors, failed, _) = self.problems();
        let _ = writeln!(o, "errors    {errors}  failed connections {failed}");
        for e in self.error_samples() {
            let _ = writeln!(o, "  e.g. {e}");
        }
        o
    }

    /// One flat JSON object; absent phases give zeros so scripts can read fields blindly.
    pub fn json(&self) -> String {
        let empty = Stats::default();
        let (pre, pre_d) = self
            .preload
            .as_ref()
            .map_or((&empty, Duration::ZERO), |(s, d)| (s, *d));
        let (run, run_d) = self
            .run
            .as_ref()
            .map_or((&empty, Duration::ZERO), |(s, d)| (s, *d));
        let ver = self.verify.as_ref().unwrap_or(&empty);
        let (errors, failed, _) = self.problems();
        let h = &run.hist;
        let q = |x: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(x))
            }
        };
        let samples: Vec<String> = self.error_samples().iter().map(|s| json_str(s)).collect();
        let fields: Vec<(&str, String)> = vec![
            ("server", json_str(&self.server)),
            ("connections", self.connections.to_string()),
            ("threads", self.threads.to_string()),
            ("depth", self.depth.to_string()),
            ("keys", self.keys.to_string()),
            ("value_size", self.value_size.to_string()),
            ("get_ratio", self.get_ratio.to_string()),
            ("preload_sets", pre.sets.to_string()),
            ("preload_stored", pre.stored.to_string()),
            ("preload_secs", format!("{:.3}", pre_d.as_secs_f64())),
            ("run_secs", format!("{:.3}", run_d.as_secs_f64())),
            ("ops", run.ops().to_string()),
            ("ops_per_sec", format!("{:.1}", per_sec(run.ops(), run_d))),
            ("gets", run.gets.to_string()),
            ("get_hits", run.hits.to_string()),
            ("get_misses", run.misses.to_string()),
            ("hit_ratio", format!("{:.6}", ratio(run.hits, run.gets))),
            ("sets", run.sets.to_string()),
            ("stored", run.stored.to_string()),
            ("p50_us", format!("{:.1}", q(0.50))),
            ("p99_us", format!("{:.1}", q(0.99))),
            ("p999_us", format!("{:.1}", q(0.999))),
            ("max_us", format!("{:.1}", us(h.max()))),
            ("mean_us", format!("{:.1}", h.mean() / 1000.0)),
            ("verify_reads", ver.gets.to_string()),
            ("verify_ok", ver.hits.to_string()),
            ("verify_missing", ver.misses.to_string()),
            ("errors", errors.to_string()),
            ("failed_connections", failed.to_string()),
            ("error_samples", format!("[{}]", samples.join(", "))),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("  \"{k}\": {v}"))
            .collect();
        format!("{{\n{}\n}}\n", body.join(",\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_lists_fields() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let mut run = Stats {
            gets: 9,
            hits: 9,
            sets: 1,
            stored: 1,
            errors: 1,
            ..Stats::default()
        };
        run.hist.record(2_000).unwrap();
        run.error_samples.push("x\"y".into());
        let r = Report {
            server: "127.0.0.1:1".into(),
            connections: 2,
            threads: 1,
            depth: 1,
            keys: 10,
            value_size: 100,
            get_ratio: 0.9,
            preload: None,
            run: Some((run, Duration::from_secs(2))),
            verify: None,
        };
        let j = r.json();
        assert!(j.contains("\"ops\": 10,"), "{j}");
        assert!(j.contains("\"ops_per_sec\": 5.0,"), "{j}");
        assert!(j.contains("\"p99_us\": 2.0,"), "{j}");
        assert!(j.contains("\"errors\": 1,"), "{j}");
        assert!(j.contains("\"error_samples\": [\"x\\\"y\"]"), "{j}");
        assert_eq!(r.problems(), (1, 0, 0));
    }
}
