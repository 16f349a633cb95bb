//! The invariants every [`parse`] result must keep, in one place so that the fuzz target and
//! the corpus-replay unit test check exactly the same thing.

use super::{parse, Limits, MetaCmd, Parse, Request};

/// Requests up to this size also have every proper prefix re-parsed (quadratic, so bounded).
const PREFIX_CHECK_MAX: usize = 512;

/// Drive [`parse`] over `buf` as a connection would (dropping `consumed`, then `swallow`
/// bytes after an error, stopping on `Incomplete` or `close`) and check every result.
///
/// # Panics
///
/// On the first broken invariant: a result that differs when the same bytes are parsed again;
/// `consumed` of zero or past the buffer; a reply that is not one `\r\n`-terminated line (or
/// empty with `close`); a key over its limit or not a token of the line; a data block whose
/// length is not the declared one, over `item_size_max`, or not followed by `\r\n`; a request
/// with a proper prefix that does not parse as `Incomplete`; an unterminated line longer than
/// `max_line_len` left `Incomplete`.
pub fn check_invariants(buf: &[u8], limits: &Limits) {
    let mut rest = buf;
    loop {
        let result = parse(rest, limits);
        assert_eq!(
            result,
            parse(rest, limits),
            "parsing the same bytes twice differs"
        );
        match result {
            Parse::Incomplete => {
                if !rest.contains(&b'\n') {
                    assert!(
                        rest.len() <= limits.max_line_len.saturating_add(1),
                        "an unterminated line over max_line_len is Incomplete"
                    );
                }
                return;
            }
            Parse::Request { req, consumed } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "bad consumed {consumed}"
                );
                check_request(&req, &rest[..consumed], limits);
                if consumed <= PREFIX_CHECK_MAX {
                    for end in 0..consumed {
                        assert_eq!(
                            parse(&rest[..end], limits),
                            Parse::Incomplete,
                            "a proper prefix of {end} bytes is not Incomplete"
                        );
                    }
                }
                rest = &rest[consumed..];
            }
            Parse::TooLarge {
                unlink,
                base64_key: _,
                consumed,
                swallow,
                noreply: _,
            } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "bad consumed {consumed}"
                );
                assert!(
                    swallow > limits.item_size_max + 2,
                    "too large but swallow {swallow}"
                );
                if let Some(key) = unlink {
                    assert!(!key.is_empty(), "empty key to unlink");
                    assert!(
                        key.len() <= limits.max_key_len.div_ceil(3) * 4,
                        "key to unlink over the limit"
                    );
                }
                rest = &rest[consumed..];
                rest = &rest[swallow.min(rest.len())..];
            }
            Parse::Error {
                reply,
                consumed,
                swallow,
                noreply: _,
                close,
            } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "bad consumed {consumed}"
                );
                let one_line = reply.ends_with(b"\r\n")
                    && !reply[..reply.len() - 2].contains(&b'\n')
                    && reply.len() > 2;
                assert!(
                    one_line || (reply.is_empty() && close),
                    "bad reply {reply:?}"
                );
                if close {
                    return;
                }
                rest = &rest[consumed..];
                rest = &rest[swallow.min(rest.len())..];
            }
        }
    }
}

/// `bytes` is exactly what the request consumed.
fn check_request(req: &Request<'_>, bytes: &[u8], limits: &Limits) {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    assert!(line_end > 0, "a request without a complete line");
    let mut line = &bytes[..line_end - 1];
    if let [head @ .., b'\r'] = line {
        line = head;
    }
    // memcached reads the line as a C string.
    if let Some(nul) = line.iter().position(|&b| b == 0) {
        line = &line[..nul];
    }
    let tokens = || line.split(|&b| b == b' ').filter(|t| !t.is_empty());
    let token = |i: usize| tokens().nth(i).unwrap_or_default();
    let check_key = |key: &[u8], limit: usize| {
        assert!(
            !key.is_empty() && key.len() <= limit,
            "bad key length {}",
            key.len()
        );
        assert!(
            tokens().any(|t| t == key),
            "the key is not a token of the line"
        );
    };
    let max_key = limits.max_key_len;
    match req {
        Request::Store { key, data, .. } => {
            check_key(key, max_key);
            check_data(data, bytes, line_end, token(4), limits);
        }
        Request::Meta(meta) => {
            let limit = if meta.flags.has(b'b') {
                max_key.div_ceil(3) * 4
            } else {
                max_key
            };
            check_key(meta.key, limit);
            if meta.cmd == MetaCmd::Set {
                check_data(meta.data, bytes, line_end, token(2), limits);
            } else {
                assert!(meta.data.is_empty(), "data on a meta command other than ms");
            }
            for (flag, _) in meta.flags.iter() {
                assert!(
                    flag.is_ascii_alphabetic(),
                    "meta flag {flag} is not a letter"
                );
            }
        }
        Request::Get { keys, .. } => {
            for key in *keys {
                check_key(key, max_key);
            }
        }
        Request::Delete { key, .. } | Request::Arith { key, .. } | Request::Touch { key, .. } => {
            check_key(key, max_key);
        }
        _ => {}
    }
    let has_data = matches!(req, Request::Store { .. })
        || matches!(req, Request::Meta(m) if m.cmd == MetaCmd::Set);
    if !has_data {
        assert_eq!(
            bytes.len(),
            line_end,
            "a request without data used more than its line"
        );
    }
}

/// The data block sits right after the line, has the declared length and ends with `\r\n`.
fn check_data(data: &[u8], bytes: &[u8], line_end: usize, declared: &[u8], limits: &Limits) {
    assert!(
        data.len() <= limits.item_size_max,
        "data over item_size_max"
    );
    assert_eq!(
        bytes.len(),
        line_end + data.len() + 2,
        "consumed is not line + data + \\r\\n"
    );
    assert!(
        std::ptr::eq(data.as_ptr(), bytes[line_end..].as_ptr()),
        "the data does not start right after the line"
    );
    assert!(
        bytes.ends_with(b"\r\n"),
        "the data block is not followed by \\r\\n"
    );
    // The declared length, read independently of the parser: its digits, whatever whitespace
    // or sign `strtol` let through around them.
    let digits: Vec<u8> = declared
        .iter()
        .copied()
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(u8::is_ascii_digit)
        .collect();
    let declared = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse::<usize>().ok());
    assert_eq!(
        declared,
        Some(data.len()),
        "data length differs from the declared one"
    );
}
