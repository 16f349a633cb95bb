//! A writer for the Prometheus text exposition format (version 0.0.4), so services can expose
//! their counters without a metrics registry.

use std::fmt::Write as _;

/// The type line of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Appends metric families and samples to a `String` in the text exposition format.
pub struct MetricsWriter<'a> {
    out: &'a mut String,
}

impl<'a> MetricsWriter<'a> {
    /// Writes after whatever `out` already holds.
    pub fn new(out: &'a mut String) -> Self {
        Self { out }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines. Write it once, before its samples.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) {
        debug_assert!(is_valid_name(name), "invalid metric name {name:?}");
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
    }

    /// One sample; integral values print without a fraction, non-finite ones as `NaN`,
    /// `+Inf`, `-Inf`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_start(name, labels);
        if value.is_nan() {
            self.out.push_str("NaN");
        } else if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            // Display of f64 is the shortest text that parses back, and has no ".0".
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    /// One sample of an integer that may exceed f64's 2^53 exact range (byte counters).
    pub fn sample_u64(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.sample_start(name, labels);
        let _ = writeln!(self.out, "{value}");
    }

    /// A family with a single unlabelled counter sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, help, MetricKind::Counter);
        self.sample_u64(name, &[], value);
    }

    /// A family with a single unlabelled gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help, MetricKind::Gauge);
        self.sample(name, &[], value);
    }

    fn sample_start(&mut self, name: &str, labels: &[(&str, &str)]) {
        debug_assert!(is_valid_name(name), "invalid metric name {name:?}");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                debug_assert!(
                    is_valid_name(key) && !key.contains(':'),
                    "invalid label name {key:?}"
                );
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, the metric name syntax.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_samples() {
        let mut out = String::new();
        let mut w = MetricsWriter::new(&mut out);
        w.family(
            "berth_cache_hits_total",
            "Hits.\nPer app \\ namespace.",
            MetricKind::Counter,
        );
        w.sample(
            "berth_cache_hits_total",
            &[("app", "guest\"book\\\n")],
            42.0,
        );
        w.sample(
            "berth_cache_hits_total",
            &[("app", "a"), ("kind", "meta")],
            3.0,
        );
        w.family("berth_ratio", "A gauge.", MetricKind::Gauge);
        w.sample("berth_ratio", &[], 0.25);
        w.sample("berth_ratio", &[], -0.0);
        w.sample("berth_ratio", &[], 1e21);
        w.sample("berth_ratio", &[], f64::NAN);
        w.sample("berth_ratio", &[], f64::INFINITY);
        w.sample("berth_ratio", &[], f64::NEG_INFINITY);
        w.counter("berth_bytes_total", "Bytes.", u64::MAX);
        w.gauge("berth_up", "Up.", 1.0);
        let expected = "\
# HELP berth_cache_hits_total Hits.\\nPer app \\\\ namespace.
# TYPE berth_cache_hits_total counter
berth_cache_hits_total{app=\"guest\\\"book\\\\\\n\"} 42
berth_cache_hits_total{app=\"a\",kind=\"meta\"} 3
# HELP berth_ratio A gauge.
# TYPE berth_ratio gauge
berth_ratio 0.25
berth_ratio -0
berth_ratio 1000000000000000000000
berth_ratio NaN
berth_ratio +Inf
berth_ratio -Inf
# HELP berth_bytes_total Bytes.
# TYPE berth_bytes_total counter
berth_bytes_total 18446744073709551615
# HELP berth_up Up.
# TYPE berth_up gauge
berth_up 1
";
        assert_eq!(out, expected);
    }

    #[test]
    fn metric_name_syntax() {
        assert!(is_valid_name("berth_cache:hits_total"));
        assert!(is_valid_name("_x1"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("1x"));
        assert!(!is_valid_name("a-b"));
    }
}
