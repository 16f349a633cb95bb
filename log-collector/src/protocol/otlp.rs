//! OTLP logs: how an `ExportLogsServiceRequest` (already decoded by prost) becomes the
//! collector's [`Event`]s. Pure code; the mapping is specified in `docs/protocols/logs.md`.

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Value};

use super::{parse_level, Event};

/// The gRPC method path of `LogsService/Export`.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The events of one `ResourceLogs`, with the resource's `service.name` (which names the app
/// when the collector runs without tenants and the request did not name one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourceEvents {
    /// The resource's `service.name`, if any.
    pub service_name: Option<String>,
    /// One event per log record, in order.
    pub events: Vec<Event>,
}

/// Resource attributes that become event fields rather than part of `extra.resource`.
struct ResourceInfo {
    service_name: Option<String>,
    version: Option<String>,
    instance: Option<String>,
    host: Option<String>,
    /// The other attributes (without `telemetry.sdk.*`, which describe the SDK).
    rest: Map<String, Value>,
}

/// Maps every record of a request, grouped by resource.
pub fn map_request(req: ExportLogsServiceRequest) -> Vec<ResourceEvents> {
    let mut out = Vec::with_capacity(req.resource_logs.len());
    for rl in req.resource_logs {
        let info = resource_info(rl.resource.map(|r| r.attributes).unwrap_or_default());
        let mut events = Vec::new();
        for sl in rl.scope_logs {
            let logger = sl.scope.map(|s| s.name).filter(|n| !n.is_empty());
            for rec in sl.log_records {
                events.push(map_record(rec, &info, logger.as_deref()));
            }
        }
        out.push(ResourceEvents {
            service_name: info.service_name,
            events,
        });
    }
    out
}

fn resource_info(attrs: Vec<KeyValue>) -> ResourceInfo {
    let mut info = ResourceInfo {
        service_name: None,
        version: None,
        instance: None,
        host: None,
        rest: Map::new(),
    };
    for kv in attrs {
        let value = kv.value.as_ref().map_or(Value::Null, to_json);
        let text = || match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match kv.key.as_str() {
            "service.version" => info.version = Some(text()),
            "service.instance.id" => info.instance = Some(text()),
            "host.name" => info.host = Some(text()),
            k if k.starts_with("telemetry.sdk.") => {}
            k => {
                if k == "service.name" {
                    info.service_name = Some(text());
                }
                info.rest.insert(kv.key, value);
            }
        }
    }
    info
}

/// The collector's severity (0 emergency … 7 debug) of an OTLP severity number, or of the
/// severity text when the number is unspecified (0) or out of range.
pub fn severity(number: i32, text: &str) -> u8 {
    match number {
        1..=8 => 7,   // TRACE, DEBUG
        9..=12 => 6,  // INFO
        13..=16 => 4, // WARN
        17..=20 => 3, // ERROR
        21..=24 => 2, // FATAL
        _ => parse_level(text).unwrap_or(6),
    }
}

/// Maps one record; `logger` is its scope's name.
fn map_record(rec: LogRecord, resource: &ResourceInfo, logger: Option<&str>) -> Event {
    let timestamp = [rec.time_unix_nano, rec.observed_time_unix_nano]
        .into_iter()
        .find(|&t| t > 0)
        .and_then(|t| i64::try_from(t).ok());
    let message = match rec.body.as_ref().and_then(|b| b.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => rec.body.as_ref().map_or(Value::Null, to_json).to_string(),
    };
    let mut event = Event {
        timestamp,
        severity: severity(rec.severity_number, &rec.severity_text),
        logger: logger.map(str::to_owned),
        message,
        host: resource.host.clone(),
        version: resource.version.clone(),
        instance: resource.instance.clone(),
        ..Event::default()
    };
    let (mut exc_type, mut exc_message, mut exc_trace) = (None, None, None);
    for kv in rec.attributes {
        let value = kv.value.as_ref().map_or(Value::Null, to_json);
        let slot = match kv.key.as_str() {
            "exception.type" => &mut exc_type,
            "exception.message" => &mut exc_message,
            "exception.stacktrace" => &mut exc_trace,
            "log.iostream" => {
                if let Value::String(s) = &value {
                    event.stream = Some(s.clone());
                }
                event.extra.insert(kv.key, value);
                continue;
            }
            _ => {
                event.extra.insert(kv.key, value);
                continue;
            }
        };
        *slot = Some(match value {
            Value::String(s) => s,
            other => other.to_string(),
        });
    }
    event.exception = match (exc_trace, exc_type, exc_message) {
        (Some(trace), _, _) => Some(trace),
        (None, Some(t), Some(m)) => Some(format!("{t}: {m}")),
        (None, Some(one), None) | (None, None, Some(one)) => Some(one),
        (None, None, None) => None,
    };
    if rec.trace_id.iter().any(|&b| b != 0) {
        event
            .extra
            .insert("trace_id".into(), Value::String(hex(&rec.trace_id)));
    }
    if rec.span_id.iter().any(|&b| b != 0) {
        event
            .extra
            .insert("span_id".into(), Value::String(hex(&rec.span_id)));
    }
    if !rec.event_name.is_empty() {
        event
            .extra
            .insert("event_name".into(), Value::String(rec.event_name));
    }
    if !resource.rest.is_empty() {
        event
            .extra
            .insert("resource".into(), Value::Object(resource.rest.clone()));
    }
    event
}

/// An `AnyValue` as JSON: bytes as base64, non-finite doubles as strings, key-value lists as
/// objects (a repeated key keeps its last value).
pub fn to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kvs)) => Value::Object(
            kvs.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map_or(Value::Null, to_json),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        // Profiles-only string-table references mean nothing in a log record.
        Some(_) => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Source;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn s(v: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }
    }

    fn kv(k: &str, v: AnyValue) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(v),
            ..KeyValue::default()
        }
    }

    fn request(
        resource: Vec<KeyValue>,
        scope: &str,
        records: Vec<LogRecord>,
    ) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: scope.into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    /// What a Python `logging` call through OpenTelemetry's LoggingHandler looks like.
    #[test]
    fn python_style_record_maps_to_every_field() {
        let rec = LogRecord {
            time_unix_nano: 1_700_000_000_123_456_789,
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(s("payment failed")),
            attributes: vec![
                kv("exception.type", s("ValueError")),
                kv("exception.message", s("boom")),
                kv(
                    "exception.stacktrace",
                    s("Traceback (most recent call last):\nValueError: boom"),
                ),
                kv(
                    "code.lineno",
                    AnyValue {
                        value: Some(any_value::Value::IntValue(42)),
                    },
                ),
                kv("order", s("o-1")),
            ],
            trace_id: vec![0xab; 16],
            span_id: vec![0; 8],
            ..LogRecord::default()
        };
        let req = request(
            vec![
                kv("service.name", s("shop")),
                kv("service.version", s("1.4.2")),
                kv("service.instance.id", s("web.3")),
                kv("host.name", s("node7")),
                kv("telemetry.sdk.language", s("python")),
                kv("deployment.environment", s("prod")),
            ],
            "shop.payments",
            vec![rec],
        );
        let out = map_request(req);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].service_name.as_deref(), Some("shop"));
        let ev = &out[0].events[0];
        assert_eq!(ev.timestamp, Some(1_700_000_000_123_456_789));
        assert_eq!(ev.severity, 3);
        assert_eq!(ev.message, "payment failed");
        assert_eq!(ev.logger.as_deref(), Some("shop.payments"));
        assert_eq!(ev.version.as_deref(), Some("1.4.2"));
        assert_eq!(ev.instance.as_deref(), Some("web.3"));
        assert_eq!(ev.host.as_deref(), Some("node7"));
        assert_eq!(
            ev.exception.as_deref(),
            Some("Traceback (most recent call last):\nValueError: boom")
        );
        assert_eq!(ev.extra["code.lineno"], 42);
        assert_eq!(ev.extra["order"], "o-1");
        assert_eq!(ev.extra["trace_id"], "ab".repeat(16));
        assert!(
            !ev.extra.contains_key("span_id"),
            "all-zero span id is absent"
        );
        assert!(!ev.extra.contains_key("exception.type"));
        assert_eq!(
            ev.extra["resource"],
            serde_json::json!({"service.name": "shop", "deployment.environment": "prod"})
        );
        // And the stored form is the same JSON object every source writes.
        let mut bytes = Vec::new();
        ev.encode_json(Source::Otlp, 0, &mut bytes);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["source"], "otlp");
        assert_eq!(v["level"], "error");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["extra"]["order"], "o-1");
    }

    #[test]
    fn severity_numbers_and_text() {
        assert_eq!(severity(1, ""), 7); // TRACE
        assert_eq!(severity(5, ""), 7); // DEBUG
        assert_eq!(severity(9, ""), 6); // INFO
        assert_eq!(severity(13, ""), 4); // WARN
        assert_eq!(severity(17, ""), 3); // ERROR
        assert_eq!(severity(21, ""), 2); // FATAL
        assert_eq!(severity(24, "debug"), 2, "the number wins over the text");
        assert_eq!(severity(0, "warning"), 4);
        assert_eq!(severity(0, "CRITICAL"), 2);
        assert_eq!(severity(0, ""), 6);
        assert_eq!(severity(99, "nonsense"), 6);
        assert_eq!(severity(-3, "error"), 3);
    }

    #[test]
    fn times_fall_back_to_observed_then_to_receipt() {
        let at = |t, o| {
            map_record(
                LogRecord {
                    time_unix_nano: t,
                    observed_time_unix_nano: o,
                    ..LogRecord::default()
                },
                &resource_info(Vec::new()),
                None,
            )
            .timestamp
        };
        assert_eq!(at(5, 7), Some(5));
        assert_eq!(at(0, 7), Some(7));
        assert_eq!(at(0, 0), None);
        assert_eq!(
            at(u64::MAX, 0),
            None,
            "beyond i64: the receive time is used"
        );
    }

    #[test]
    fn structured_bodies_become_json_text() {
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv(
                        "user",
                        AnyValue {
                            value: Some(any_value::Value::IntValue(7)),
                        },
                    ),
                    kv(
                        "tags",
                        AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    s("a"),
                                    AnyValue {
                                        value: Some(any_value::Value::BoolValue(true)),
                                    },
                                ],
                            })),
                        },
                    ),
                    kv(
                        "raw",
                        AnyValue {
                            value: Some(any_value::Value::BytesValue(vec![0, 255])),
                        },
                    ),
                    kv(
                        "ratio",
                        AnyValue {
                            value: Some(any_value::Value::DoubleValue(f64::NAN)),
                        },
                    ),
                ],
            })),
        };
        let ev = map_record(
            LogRecord {
                body: Some(body),
                ..LogRecord::default()
            },
            &resource_info(Vec::new()),
            None,
        );
        let v: Value = serde_json::from_str(&ev.message).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user": 7, "tags": ["a", true], "raw": "AP8=", "ratio": "NaN"})
        );
        // No body at all is an empty message, not an error.
        let ev = map_record(LogRecord::default(), &resource_info(Vec::new()), None);
        assert_eq!(ev.message, "");
        assert_eq!(ev.severity, 6);
        assert!(ev.extra.is_empty());
    }

    #[test]
    fn exception_without_stacktrace_and_iostream() {
        let ev = map_record(
            LogRecord {
                attributes: vec![
                    kv("exception.type", s("KeyError")),
                    kv("exception.message", s("'x'")),
                    kv("log.iostream", s("stderr")),
                ],
                event_name: "checkout.done".into(),
                ..LogRecord::default()
            },
            &resource_info(Vec::new()),
            None,
        );
        assert_eq!(ev.exception.as_deref(), Some("KeyError: 'x'"));
        assert_eq!(ev.stream.as_deref(), Some("stderr"));
        assert_eq!(ev.extra["event_name"], "checkout.done");
    }

    #[test]
    fn records_keep_their_resource_and_order() {
        let mut req = request(
            vec![kv("service.name", s("a"))],
            "",
            vec![LogRecord::default(); 2],
        );
        req.resource_logs.push(ResourceLogs::default());
        let out = map_request(req);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].events.len(), 2);
        assert_eq!(
            out[0].events[0].logger, None,
            "an empty scope name is no logger"
        );
        assert_eq!(out[1].service_name, None);
        assert!(out[1].events.is_empty());
    }
}
