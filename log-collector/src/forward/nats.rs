//! The NATS client protocol, as pure code: the commands the forwarder sends and the server
//! operations it reads (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`).

/// A server operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// `INFO {json}`.
    Info(String),
    /// `MSG subject sid [reply] len` + payload (also `HMSG`, headers dropped).
    Msg {
        /// Subject the message was sent to.
        subject: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// `PING`: answer `PONG`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK`.
    Ok,
    /// `-ERR 'text'`.
    Err(String),
}

/// Why a server's bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsError {
    /// Not a NATS server operation.
    #[error("unexpected data from the NATS server: {0}")]
    Protocol(String),
}

/// Parses the operation at the start of `buf`: `Ok(None)` when incomplete, else the
/// operation and the bytes it used.
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(ServerOp, usize)>, NatsError> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else {
        if buf.len() > 64 << 10 {
            return Err(NatsError::Protocol("line too long".into()));
        }
        return Ok(None);
    };
    let line =
        std::str::from_utf8(&buf[..eol]).map_err(|_| NatsError::Protocol("not UTF-8".into()))?;
    let after = eol + 2;
    let (op, rest) = line.split_once(' ').unwrap_or((line, ""));
    let simple = |o| Ok(Some((o, after)));
    match op.to_ascii_uppercase().as_str() {
        "PING" => simple(ServerOp::Ping),
        "PONG" => simple(ServerOp::Pong),
        "+OK" => simple(ServerOp::Ok),
        "-ERR" => simple(ServerOp::Err(rest.trim().trim_matches('\'').to_owned())),
        "INFO" => simple(ServerOp::Info(rest.to_owned())),
        "MSG" | "HMSG" => {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            let bad = || NatsError::Protocol(format!("bad {op} line"));
            let total: usize = parts.last().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let header_len: usize = if op.eq_ignore_ascii_case("HMSG") {
                parts
                    .get(parts.len().wrapping_sub(2))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?
            } else {
                0
            };
            if parts.len() < 3 || total > max_payload || header_len > total {
                return Err(bad());
            }
            if buf.len() < after + total + 2 {
                return Ok(None);
            }
            Ok(Some((
                ServerOp::Msg {
                    subject: parts[0].to_owned(),
                    payload: buf[after + header_len..after + total].to_vec(),
                },
                after + total + 2,
            )))
        }
        _ => Err(NatsError::Protocol(line.chars().take(80).collect())),
    }
}

/// `CONNECT` for this client (no echo, no verbose `+OK`s, headers on).
pub fn connect() -> Vec<u8> {
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"berth-log-collector\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1,\"headers\":true,\"no_responders\":true}\r\n".to_vec()
}

/// `SUB subject sid`.
pub fn sub(subject: &str, sid: u32) -> Vec<u8> {
    format!("SUB {subject} {sid}\r\n").into_bytes()
}

/// `HPUB subject reply` with one `Nats-Msg-Id` header (JetStream deduplicates on it).
pub fn hpub(subject: &str, reply: &str, msg_id: &str, payload: &[u8], out: &mut Vec<u8>) {
    let headers = format!("NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n\r\n");
    let total = headers.len() + payload.len();
    out.extend_from_slice(
        format!("HPUB {subject} {reply} {} {total}\r\n", headers.len()).as_bytes(),
    );
    out.extend_from_slice(headers.as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// `PUB subject reply len` + payload.
pub fn publish(subject: &str, reply: &str, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("PUB {subject} {reply} {}\r\n", payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ops_and_prefixes() {
        let msg = b"MSG _INBOX.x.7 1 35\r\n{\"stream\":\"BERTH_LOGS\",\"seq\":12345}\r\n";
        let (op, n) = parse(msg, 1 << 20).unwrap().unwrap();
        assert_eq!(n, msg.len());
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "_INBOX.x.7".into(),
                payload: b"{\"stream\":\"BERTH_LOGS\",\"seq\":12345}".to_vec()
            }
        );
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut], 1 << 20).unwrap(), None);
        }
        let h = b"HMSG a 1 r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n";
        let (op, _) = parse(h, 100).unwrap().unwrap();
        assert_eq!(
            op,
            ServerOp::Msg {
                subject: "a".into(),
                payload: b"hi".to_vec()
            }
        );
        assert_eq!(parse(b"PING\r\n", 10).unwrap().unwrap().0, ServerOp::Ping);
        assert_eq!(
            parse(b"-ERR 'Authorization Violation'\r\n", 10)
                .unwrap()
                .unwrap()
                .0,
            ServerOp::Err("Authorization Violation".into())
        );
        assert!(parse(b"BOGUS\r\n", 10).is_err());
        assert!(parse(b"MSG a 1 99999\r\n", 10).is_err());
    }

    #[test]
    fn commands() {
        let mut out = Vec::new();
        hpub("berth.logs.shop", "_INBOX.a.1", "shop:7", b"{}", &mut out);
        assert_eq!(
            out,
            b"HPUB berth.logs.shop _INBOX.a.1 33 35\r\nNATS/1.0\r\nNats-Msg-Id: shop:7\r\n\r\n{}\r\n"
        );
    }
}
