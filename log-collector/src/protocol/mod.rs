//! The wire formats, as pure code (no tokio, no sockets): framing of TCP byte streams
//! ([`framing`]), syslog messages ([`syslog`]), JSON-lines events ([`json`]), the credentials
//! each form can carry, OTLP log records ([`otlp`]), and the [`Event`] every source produces.

pub mod framing;
pub mod invariants;
pub mod json;
pub mod otlp;
pub mod syslog;
pub mod time;

/// Syslog severities (RFC 5424 §6.2.1), the one level scale of the collector: 0 is the most
/// severe. Python's levels map onto it as SysLogHandler does.
pub const LEVEL_NAMES: [&str; 8] = [
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "info",
    "debug",
];

/// The severity of a level name (`error`, `WARN`, `crit`, `fatal`, ...) or a Python level
/// number (`40`), or `None`.
pub fn parse_level(s: &str) -> Option<u8> {
    let lower = s.trim().to_ascii_lowercase();
    let sev = match lower.as_str() {
        "emerg" | "emergency" | "panic" => 0,
        "alert" => 1,
        "crit" | "critical" | "fatal" => 2,
        "err" | "error" => 3,
        "warn" | "warning" => 4,
        "notice" => 5,
        "info" | "informational" => 6,
        "debug" | "trace" => 7,
        other => return other.parse::<i64>().ok().map(python_level),
    };
    Some(sev)
}

/// Python's numeric level (10 DEBUG ... 50 CRITICAL) as a severity.
pub fn python_level(n: i64) -> u8 {
    match n {
        i64::MIN..=10 => 7,
        11..=20 => 6,
        21..=30 => 4,
        31..=40 => 3,
        _ => 2,
    }
}

/// The name of a severity.
pub fn level_name(sev: u8) -> &'static str {
    LEVEL_NAMES
        .get(usize::from(sev))
        .copied()
        .unwrap_or("debug")
}

/// Who a message says it comes from: an app name and, when the collector runs with
/// tenants, one of its tokens. Written `APP:TOKEN` (or `APP` alone without tenants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The app name as given (checked against the tenants later).
    pub app: String,
    /// The token, if one was given.
    pub token: Option<String>,
}

impl Credential {
    /// Parses `APP:TOKEN` or `APP`; `None` when empty or containing whitespace.
    pub fn parse(s: &str) -> Option<Credential> {
        if s.is_empty() || s.len() > 512 || s.bytes().any(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let (app, token) = match s.split_once(':') {
            Some((a, t)) => (a, Some(t.to_owned())),
            None => (s, None),
        };
        if app.is_empty() {
            return None;
        }
        Some(Credential {
            app: app.to_owned(),
            token,
        })
    }
}

/// Where an event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// JSON lines over TCP.
    Json,
    /// Syslog over TCP.
    SyslogTcp,
    /// Syslog over UDP.
    SyslogUdp,
    /// OTLP logs over gRPC.
    Otlp,
}

impl Source {
    /// The name stored with the event and used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Source::Json => "json",
            Source::SyslogTcp => "syslog-tcp",
            Source::SyslogUdp => "syslog-udp",
            Source::Otlp => "otlp",
        }
    }
}

/// One log event as received, before it is given a sequence number and stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// The event's own time (Unix nanoseconds), if it said.
    pub timestamp: Option<i64>,
    /// Severity, 0 (emergency) to 7 (debug).
    pub severity: u8,
    /// Logger name (Python logger, syslog APP-NAME or TAG).
    pub logger: Option<String>,
    /// The message text.
    pub message: String,
    /// Exception text (a Python traceback).
    pub exception: Option<String>,
    /// Host name the sender gave.
    pub host: Option<String>,
    /// App version.
    pub version: Option<String>,
    /// App instance (process).
    pub instance: Option<String>,
    /// `stdout`, `stderr` or `logging`.
    pub stream: Option<String>,
    /// Any other fields, as a JSON object (without braces' escaping concerns: a real map).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// Appends the stored form: one compact JSON object. `received` (Unix nanoseconds) is
    /// written as `timestamp` when the event had none.
    pub fn encode_json(&self, source: Source, received: i64, out: &mut Vec<u8>) {
        out.reserve(self.message.len() + 128);
        out.extend_from_slice(b"{\"timestamp\":\"");
        time::write_rfc3339(self.timestamp.unwrap_or(received), out);
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(level_name(self.severity).as_bytes());
        out.extend_from_slice(b"\",\"source\":\"");
        out.extend_from_slice(source.name().as_bytes());
        out.push(b'"');
        let fields = [
            ("logger", &self.logger),
            ("host", &self.host),
            ("version", &self.version),
            ("instance", &self.instance),
            ("stream", &self.stream),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                push_field(out, name, v);
            }
        }
        push_field(out, "message", &self.message);
        if let Some(e) = &self.exception {
            push_field(out, "exception", e);
        }
        if !self.extra.is_empty() {
            out.extend_from_slice(b",\"extra\":");
            // A map of JSON values always serializes.
            if serde_json::to_writer(&mut *out, &self.extra).is_err() {
                out.extend_from_slice(b"{}");
            }
        }
        out.push(b'}');
    }
}

fn push_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_str(out, value);
}

/// Appends `s` as a JSON string (quoted, escaped).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        if esc.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.extend_from_slice(esc);
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("ERROR"), Some(3));
        assert_eq!(parse_level("warn"), Some(4));
        assert_eq!(parse_level("40"), Some(3));
        assert_eq!(parse_level("10"), Some(7));
        assert_eq!(parse_level("50"), Some(2));
        assert_eq!(parse_level("bogus"), None);
        assert_eq!(level_name(3), "error");
    }

    #[test]
    fn credentials() {
        let c = Credential::parse("guestbook:abc").unwrap();
        assert_eq!(c.app, "guestbook");
        assert_eq!(c.token.as_deref(), Some("abc"));
        assert_eq!(Credential::parse("guestbook").unwrap().token, None);
        assert!(Credential::parse("").is_none());
        assert!(Credential::parse(":x").is_none());
        assert!(Credential::parse("a b").is_none());
    }

    #[test]
    fn stored_form_is_json() {
        let ev = Event {
            severity: 3,
            logger: Some("app.db".into()),
            message: "boom \"quoted\"\n".into(),
            exception: Some("Traceback".into()),
            ..Event::default()
        };
        let mut out = Vec::new();
        ev.encode_json(Source::Json, 0, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["message"], "boom \"quoted\"\n");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(v["source"], "json");
    }

    proptest::proptest! {
        #[test]
        fn json_strings_round_trip(s in ".*") {
            let mut out = Vec::new();
            write_json_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
