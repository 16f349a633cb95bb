//! Syslog messages: RFC 5424 and RFC 3164 (including the bare `<PRI>message` Python's
//! `SysLogHandler` sends), and where each carries the sender's credential:
//! - a frame that is only `@berth APP:TOKEN` (the first line of a TCP stream);
//! - `@berth APP:TOKEN ` right after the PRI (the `ident` of Python's `SysLogHandler`);
//! - RFC 5424 structured data `[berth@32473 token="APP:TOKEN"]` (or `app="APP" token="TOKEN"`).

use super::{time, Credential, Event};

/// The structured-data ID (and our private enterprise-number placeholder) carrying tokens.
pub const SD_ID: &str = "berth@32473";
/// The marker that starts a credential line or ident prefix.
pub const AUTH_PREFIX: &[u8] = b"@berth ";

/// Why a syslog message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    /// No `<PRI>` at the start.
    #[error("missing or bad <PRI>")]
    BadPri,
    /// RFC 5424 header fields missing or malformed.
    #[error("malformed RFC 5424 header")]
    BadHeader,
    /// Malformed structured data.
    #[error("malformed structured data")]
    BadStructuredData,
}

/// A parsed syslog message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The event (severity from PRI, logger from APP-NAME or TAG, host, time, message).
    pub event: Event,
    /// The facility from PRI.
    pub facility: u8,
    /// A credential found in the ident prefix or structured data.
    pub credential: Option<Credential>,
    /// The APP-NAME (5424) or TAG (3164), which names the app when there are no tenants.
    pub app_name: Option<String>,
}

/// If the whole frame is a credential line (`@berth APP:TOKEN`), its credential.
pub fn parse_auth_line(frame: &[u8]) -> Option<Credential> {
    let rest = frame.strip_prefix(AUTH_PREFIX)?;
    let s = std::str::from_utf8(rest).ok()?;
    Credential::parse(s.trim_end_matches(['\r', '\n']))
}

fn nil(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

/// The message text: a UTF-8 BOM dropped, trailing line ends (which some senders add even
/// with octet counting) trimmed, invalid UTF-8 replaced.
fn text(bytes: &[u8]) -> String {
    let mut bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = bytes {
        bytes = rest;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Parses one syslog message; `now` (Unix nanoseconds) dates RFC 3164 stamps, which carry
/// no year.
pub fn parse(frame: &[u8], now: i64) -> Result<Message, SyslogError> {
    let (pri, mut rest) = parse_pri(frame)?;
    let mut credential = None;
    if let Some(after) = rest.strip_prefix(AUTH_PREFIX) {
        let end = after.iter().position(|&b| b == b' ').unwrap_or(after.len());
        credential = std::str::from_utf8(&after[..end])
            .ok()
            .and_then(Credential::parse);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    let mut msg = if let Some(body) = rest.strip_prefix(b"1 ") {
        parse_5424(body)?
    } else {
        parse_3164(rest, now)
    };
    msg.event.severity = pri & 7;
    msg.facility = pri >> 3;
    if credential.is_some() {
        msg.credential = credential;
    }
    Ok(msg)
}

fn parse_pri(frame: &[u8]) -> Result<(u8, &[u8]), SyslogError> {
    let rest = frame.strip_prefix(b"<").ok_or(SyslogError::BadPri)?;
    let close = rest
        .iter()
        .take(4)
        .position(|&b| b == b'>')
        .ok_or(SyslogError::BadPri)?;
    let digits = &rest[..close];
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return Err(SyslogError::BadPri);
    }
    let mut pri: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(SyslogError::BadPri);
        }
        pri = pri * 10 + u32::from(d - b'0');
    }
    let pri = u8::try_from(pri)
        .ok()
        .filter(|&p| p <= 191)
        .ok_or(SyslogError::BadPri)?;
    Ok((pri, &rest[close + 1..]))
}

fn next_field<'a>(s: &mut &'a [u8]) -> Result<&'a str, SyslogError> {
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let field = std::str::from_utf8(&s[..end]).map_err(|_| SyslogError::BadHeader)?;
    if field.is_empty() {
        return Err(SyslogError::BadHeader);
    }
    *s = s.get(end + 1..).unwrap_or_default();
    Ok(field)
}

fn parse_5424(mut s: &[u8]) -> Result<Message, SyslogError> {
    let stamp = next_field(&mut s)?;
    let timestamp = if stamp == "-" {
        None
    } else {
        Some(time::parse_rfc3339(stamp).ok_or(SyslogError::BadHeader)?)
    };
    let host = nil(next_field(&mut s)?);
    let app_name = nil(next_field(&mut s)?);
    let procid = nil(next_field(&mut s)?);
    let msgid = nil(next_field(&mut s)?);
    let mut event = Event {
        timestamp,
        host,
        logger: app_name.clone(),
        ..Event::default()
    };
    let mut credential = None;
    let mut sd_app = None;
    if s.first() == Some(&b'-') {
        s = s.get(2..).unwrap_or_default();
    } else if s.first() == Some(&b'[') {
        let mut sd = serde_json::Map::new();
        while s.first() == Some(&b'[') {
            let (id, params, rest) = parse_sd_element(s)?;
            s = rest;
            if id == SD_ID {
                let mut token = None;
                for (k, v) in params {
                    match k.as_str() {
                        "token" => token = Some(v),
                        "app" => sd_app = Some(v),
                        _ => {}
                    }
                }
                credential = match (sd_app.as_deref(), token) {
                    (Some(app), Some(t)) => Some(Credential {
                        app: app.to_owned(),
                        token: Some(t),
                    }),
                    (None, Some(t)) => Credential::parse(&t),
                    (Some(app), None) => Credential::parse(app),
                    (None, None) => None,
                };
            } else {
                let obj: serde_json::Map<String, serde_json::Value> = params
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                sd.insert(id, serde_json::Value::Object(obj));
            }
        }
        if !sd.is_empty() {
            event
                .extra
                .insert("sd".into(), serde_json::Value::Object(sd));
        }
        if s.first() == Some(&b' ') {
            s = &s[1..];
        }
    } else if !s.is_empty() {
        return Err(SyslogError::BadStructuredData);
    }
    if let Some(p) = procid {
        event.extra.insert("procid".into(), p.into());
    }
    if let Some(m) = msgid {
        event.extra.insert("msgid".into(), m.into());
    }
    event.message = text(s);
    Ok(Message {
        event,
        facility: 0,
        credential,
        app_name,
    })
}

type SdElement<'a> = (String, Vec<(String, String)>, &'a [u8]);

fn parse_sd_element(s: &[u8]) -> Result<SdElement<'_>, SyslogError> {
    let bad = SyslogError::BadStructuredData;
    let mut i = 1;
    let name_end = |from: usize| {
        s[from..]
            .iter()
            .position(|&b| matches!(b, b' ' | b']' | b'=' | b'"'))
            .map(|p| from + p)
    };
    let end = name_end(i).ok_or(bad)?;
    let id = std::str::from_utf8(&s[i..end]).map_err(|_| bad)?.to_owned();
    if id.is_empty() || id.len() > 32 {
        return Err(bad);
    }
    i = end;
    let mut params = Vec::new();
    loop {
        match s.get(i) {
            Some(b']') => return Ok((id, params, &s[i + 1..])),
            Some(b' ') => i += 1,
            _ => return Err(bad),
        }
        let end = name_end(i).ok_or(bad)?;
        if s.get(end) != Some(&b'=') || s.get(end + 1) != Some(&b'"') || end == i {
            return Err(bad);
        }
        let name = std::str::from_utf8(&s[i..end]).map_err(|_| bad)?.to_owned();
        i = end + 2;
        let mut value = Vec::new();
        loop {
            match s.get(i) {
                None => return Err(bad),
                Some(b'\\') if matches!(s.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                    value.push(s[i + 1]);
                    i += 2;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(&b) => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        params.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
}

/// RFC 3164: `[Mmm dd hh:mm:ss HOST ]TAG[PID]: MSG`, with every part but MSG optional (as
/// Python's `SysLogHandler` sends `<PRI>` and the formatted record only).
fn parse_3164(s: &[u8], now: i64) -> Message {
    let mut event = Event::default();
    let mut rest = s;
    if let Some(t) = time::parse_bsd_stamp(s, now) {
        event.timestamp = Some(t);
        rest = s.get(16..).unwrap_or_default();
        if let Some(end) = rest.iter().position(|&b| b == b' ') {
            let host = &rest[..end];
            // A host is one word without a colon; otherwise this is already the tag.
            if !host.is_empty() && !host.ends_with(b":") && !host.contains(&b'[') {
                event.host = Some(text(host));
                rest = &rest[end + 1..];
            }
        }
    }
    let mut app_name = None;
    let word_end = rest
        .iter()
        .take(49)
        .position(|&b| matches!(b, b':' | b'[' | b' '));
    if let Some(end) = word_end.filter(|&e| e > 0) {
        let tag = &rest[..end];
        let mut after = &rest[end..];
        let mut pid = None;
        if after.first() == Some(&b'[') {
            if let Some(close) = after.iter().position(|&b| b == b']') {
                pid = Some(text(&after[1..close]));
                after = &after[close + 1..];
            }
        }
        if let Some(msg) = after.strip_prefix(b":") {
            let name = text(tag);
            event.logger = Some(name.clone());
            app_name = Some(name);
            if let Some(p) = pid {
                event.extra.insert("procid".into(), p.into());
            }
            rest = msg.strip_prefix(b" ").unwrap_or(msg);
        }
    }
    event.message = text(rest);
    Message {
        event,
        facility: 0,
        credential: None,
        app_name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000_000_000;

    #[test]
    fn rfc5424_with_token_in_structured_data() {
        let m = parse(
            br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"][berth@32473 token="guestbook:s3cr\"et"] An application event"#,
            NOW,
        )
        .unwrap();
        assert_eq!(m.facility, 20);
        assert_eq!(m.event.severity, 5);
        assert_eq!(m.event.timestamp, Some(1_065_910_455_003_000_000));
        assert_eq!(m.event.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(m.event.logger.as_deref(), Some("evntslog"));
        assert_eq!(m.event.message, "An application event");
        let c = m.credential.unwrap();
        assert_eq!(c.app, "guestbook");
        assert_eq!(c.token.as_deref(), Some("s3cr\"et"));
        let sd = &m.event.extra["sd"];
        assert_eq!(sd["exampleSDID@32473"]["iut"], "3");
        assert!(sd.get(SD_ID).is_none(), "the token is never stored");
        assert_eq!(m.event.extra["msgid"], "ID47");
    }

    #[test]
    fn rfc5424_app_and_token_params_and_nil_fields() {
        let m = parse(
            b"<14>1 - - - - - [berth@32473 app=\"a1\" token=\"t\"] hi",
            NOW,
        )
        .unwrap();
        assert_eq!(m.event.timestamp, None);
        assert_eq!(m.event.host, None);
        assert_eq!(
            m.credential,
            Some(Credential {
                app: "a1".into(),
                token: Some("t".into())
            })
        );
        assert_eq!(m.event.message, "hi");
        let m = parse(b"<14>1 - - - - - - \xEF\xBB\xBFbom\r\n", NOW).unwrap();
        assert_eq!(m.event.message, "bom");
    }

    #[test]
    fn logger_rfc5424_output() {
        // What `logger --rfc5424 --sd-id berth@32473 --sd-param 'token="app:tok"'` sends.
        let m = parse(
            br#"<13>1 2026-11-25T19:27:08.123456+00:00 host root 1234 - [timeQuality tzKnown="1" isSynced="0"][berth@32473 token="app:tok"] hello world"#,
            NOW,
        )
        .unwrap();
        assert_eq!(m.credential.unwrap().app, "app");
        assert_eq!(m.event.message, "hello world");
        assert_eq!(m.event.extra["procid"], "1234");
    }

    #[test]
    fn rfc3164_full() {
        let m = parse(
            b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed",
            NOW,
        )
        .unwrap();
        assert_eq!(m.event.severity, 2);
        assert_eq!(m.facility, 4);
        assert_eq!(m.event.host.as_deref(), Some("mymachine"));
        assert_eq!(m.event.logger.as_deref(), Some("su"));
        assert_eq!(m.event.extra["procid"], "230");
        assert_eq!(m.event.message, "'su root' failed");
        assert!(m.event.timestamp.is_some());
    }

    #[test]
    fn python_sysloghandler_with_ident() {
        let m = parse(
            b"<11>@berth guestbook:abc myapp.db: connection lost\nTraceback",
            NOW,
        )
        .unwrap();
        assert_eq!(m.event.severity, 3);
        assert_eq!(m.facility, 1);
        let c = m.credential.unwrap();
        assert_eq!(
            (c.app.as_str(), c.token.as_deref()),
            ("guestbook", Some("abc"))
        );
        assert_eq!(m.event.logger.as_deref(), Some("myapp.db"));
        assert_eq!(m.event.message, "connection lost\nTraceback");
        let plain = parse(b"<14>just a message", NOW).unwrap();
        assert_eq!(plain.event.message, "just a message");
        assert_eq!(plain.event.logger, None);
    }

    #[test]
    fn auth_line() {
        assert_eq!(parse_auth_line(b"@berth app:tok").unwrap().app, "app");
        assert_eq!(parse_auth_line(b"<14>@berth app:tok x"), None);
        assert_eq!(parse_auth_line(b"@berth "), None);
    }

    #[test]
    fn bad_input() {
        assert_eq!(parse(b"no pri", NOW), Err(SyslogError::BadPri));
        assert_eq!(parse(b"<192>x", NOW), Err(SyslogError::BadPri));
        assert_eq!(parse(b"<01>x", NOW), Err(SyslogError::BadPri));
        assert_eq!(
            parse(b"<14>1 bad-time h a p m - x", NOW),
            Err(SyslogError::BadHeader)
        );
        assert_eq!(
            parse(b"<14>1 - h a p m [unterminated x", NOW),
            Err(SyslogError::BadStructuredData)
        );
        assert_eq!(
            parse(b"<14>1 - h a p m junk", NOW),
            Err(SyslogError::BadStructuredData)
        );
        assert_eq!(parse(b"<14>1 -", NOW), Err(SyslogError::BadHeader));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_refused() {
        let m = parse(b"<14>caf\xE9", NOW).unwrap();
        assert_eq!(m.event.message, "caf\u{FFFD}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&input, NOW);
            let mut framed = b"<14>1 ".to_vec();
            framed.extend_from_slice(&input);
            let _ = parse(&framed, NOW);
        }
    }
}
