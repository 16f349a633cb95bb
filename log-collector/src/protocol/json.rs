//! JSON lines: one object per line, either an event or, first on a connection, a hello
//! `{"hello": {"app": "guestbook", "token": "…", "ack": true}}`. Replies (also JSON lines)
//! are built here too, so the connection code only moves bytes.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{parse_level, python_level, time, Credential, Event};

/// Why a JSON line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not UTF-8.
    #[error("line is not valid UTF-8")]
    InvalidUtf8,
    /// Not a JSON object, or a field of the wrong type.
    #[error("invalid JSON: {0}")]
    Invalid(String),
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// The connection's hello: who it is and whether it wants acknowledgements.
    Hello {
        /// The credential (`app`, `token`).
        credential: Credential,
        /// Acknowledge each batch once durable.
        ack: bool,
    },
    /// An event, and the `app` it named (used only without tenants).
    Event(Box<Event>, Option<String>),
}

#[derive(Deserialize)]
struct HelloBody {
    app: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    ack: bool,
}

/// The well-known keys of an event; everything else goes to `extra`.
const KNOWN: [&str; 13] = [
    "timestamp",
    "time",
    "app",
    "version",
    "instance",
    "stream",
    "level",
    "levelname",
    "logger",
    "name",
    "message",
    "msg",
    "exception",
];

/// Parses one line (without its LF).
pub fn parse_line(line: &[u8]) -> Result<Line, JsonError> {
    let text = std::str::from_utf8(line).map_err(|_| JsonError::InvalidUtf8)?;
    let mut obj: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(JsonError::Invalid("expected a JSON object".into())),
        Err(e) => return Err(JsonError::Invalid(e.to_string())),
    };
    if let Some(hello) = obj.remove("hello") {
        let body: HelloBody =
            serde_json::from_value(hello).map_err(|e| JsonError::Invalid(format!("hello: {e}")))?;
        let credential = Credential {
            app: body.app,
            token: body.token,
        };
        return Ok(Line::Hello {
            credential,
            ack: body.ack,
        });
    }
    let timestamp = match obj.remove("timestamp").or_else(|| obj.remove("time")) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().map(time::secs_to_nanos),
        Some(Value::String(s)) => Some(
            time::parse_rfc3339(&s)
                .ok_or_else(|| JsonError::Invalid(format!("timestamp {s:?} is not RFC 3339")))?,
        ),
        Some(_) => {
            return Err(JsonError::Invalid(
                "timestamp must be a number or string".into(),
            ))
        }
    };
    let mut event = Event {
        timestamp,
        ..Event::default()
    };
    event.severity = match obj.remove("level").or_else(|| obj.remove("levelname")) {
        None | Some(Value::Null) => 6,
        Some(Value::Number(n)) => python_level(n.as_i64().unwrap_or(20)),
        Some(Value::String(s)) => {
            parse_level(&s).ok_or_else(|| JsonError::Invalid(format!("unknown level {s:?}")))?
        }
        Some(_) => {
            return Err(JsonError::Invalid(
                "level must be a string or number".into(),
            ))
        }
    };
    let mut take = |keys: &[&str]| -> Result<Option<String>, JsonError> {
        for k in keys {
            match obj.remove(*k) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => return Ok(Some(s)),
                Some(other) if *k == "message" || *k == "msg" => {
                    return Ok(Some(other.to_string()))
                }
                Some(_) => return Err(JsonError::Invalid(format!("{k} must be a string"))),
            }
        }
        Ok(None)
    };
    let app = take(&["app"])?;
    event.version = take(&["version"])?;
    event.instance = take(&["instance"])?;
    event.stream = take(&["stream"])?;
    event.logger = take(&["logger", "name"])?;
    event.message = take(&["message", "msg"])?.unwrap_or_default();
    event.exception = take(&["exception", "exc_text"])?;
    event.host = take(&["host"])?;
    debug_assert!(KNOWN.iter().all(|k| !obj.contains_key(*k)));
    if let Some(Value::Object(extra)) = obj.remove("extra") {
        event.extra = extra;
    }
    for (k, v) in obj {
        event.extra.entry(k).or_insert(v);
    }
    Ok(Line::Event(Box::new(event), app))
}

/// `{"ok":"hello","app":…,"ack":…}`: the answer to an accepted hello.
pub fn hello_reply(app: &str, ack: bool) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({"ok": "hello", "app": app, "ack": ack}))
        .unwrap_or_default();
    v.push(b'\n');
    v
}

/// `{"ack":N}`: every line up to the N-th of the connection (hello excluded) is durable or
/// was answered with an error.
pub fn ack_reply(lines: u64) -> Vec<u8> {
    format!("{{\"ack\":{lines}}}\n").into_bytes()
}

/// `{"error":…,"line":N}`: line N (1-based, hello excluded; 0 for the connection as a whole)
/// was refused.
pub fn error_reply(line: u64, message: &str) -> Vec<u8> {
    let mut v = serde_json::to_vec(&serde_json::json!({"error": message, "line": line}))
        .unwrap_or_default();
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields() {
        let line = br#"{"timestamp": 1700000000.5, "app": "guestbook", "version": "1.2.0", "instance": "web.1", "stream": "logging", "level": "ERROR", "logger": "app.db", "message": "boom", "exception": "Traceback...", "extra": {"user": 7}, "request_id": "r1"}"#;
        let Line::Event(ev, app) = parse_line(line).unwrap() else {
            panic!("not an event")
        };
        assert_eq!(app.as_deref(), Some("guestbook"));
        assert_eq!(ev.timestamp, Some(1_700_000_000_500_000_000));
        assert_eq!(ev.severity, 3);
        assert_eq!(ev.logger.as_deref(), Some("app.db"));
        assert_eq!(ev.version.as_deref(), Some("1.2.0"));
        assert_eq!(ev.exception.as_deref(), Some("Traceback..."));
        assert_eq!(ev.extra["user"], 7);
        assert_eq!(ev.extra["request_id"], "r1");
    }

    #[test]
    fn python_numeric_levels_and_rfc3339() {
        let Line::Event(ev, _) =
            parse_line(br#"{"level": 30, "timestamp": "2026-01-01T00:00:00Z", "msg": "w"}"#)
                .unwrap()
        else {
            panic!()
        };
        assert_eq!(ev.severity, 4);
        assert_eq!(ev.message, "w");
        assert!(ev.timestamp.is_some());
    }

    #[test]
    fn hello() {
        let l = parse_line(br#"{"hello": {"app": "a", "token": "t", "ack": true}}"#).unwrap();
        assert_eq!(
            l,
            Line::Hello {
                credential: Credential {
                    app: "a".into(),
                    token: Some("t".into())
                },
                ack: true
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_line(b"{\"m\": \"\xff\"}"),
            Err(JsonError::InvalidUtf8)
        );
        assert!(matches!(parse_line(b"{broken"), Err(JsonError::Invalid(_))));
        assert!(matches!(parse_line(b"[1]"), Err(JsonError::Invalid(_))));
        assert!(matches!(
            parse_line(br#"{"level": "loud"}"#),
            Err(JsonError::Invalid(_))
        ));
        assert!(matches!(
            parse_line(br#"{"hello": {"token": "x"}}"#),
            Err(JsonError::Invalid(_))
        ));
    }

    #[test]
    fn replies() {
        assert_eq!(ack_reply(3), b"{\"ack\":3}\n");
        let v: Value = serde_json::from_slice(&error_reply(2, "bad \"x\"")).unwrap();
        assert_eq!(v["line"], 2);
    }
}
