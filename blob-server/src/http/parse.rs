//! Pure parsing of what a request carries: the route, names, query parameters, `Range`,
//! entity-tag lists and user metadata. No I/O, so every rule here is unit-tested on its own.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::http::error::ApiError;
use crate::store::ContentId;

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: the resource map (Riak clients discover paths with it).
    Root,
    /// `/ping`.
    Ping,
    /// `/stats`.
    Stats,
    /// `/buckets`.
    Buckets,
    /// `/buckets/{bucket}/keys`.
    Keys { bucket: String },
    /// `/buckets/{bucket}/keys/{key}`.
    Object { bucket: String, key: String },
    /// `/blobs`.
    Blobs,
    /// `/blobs/{id}`.
    Blob { id: ContentId },
    /// `/sign`.
    Sign,
}

/// Limits on names, from the config.
#[derive(Clone, Copy, Debug)]
pub struct NameLimits {
    /// Longest bucket or key, in bytes after percent-decoding.
    pub max_name_bytes: usize,
}

/// Parses the path of a request (without its query). Segments are percent-decoded one by one,
/// so a key may contain an encoded `/` (`%2F`) but never acts as a path.
pub fn route(path: &str, limits: NameLimits) -> Result<Route, ApiError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request("invalid_path", "the path must start with /"))?;
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    match segments.as_slice() {
        [] => Ok(Route::Root),
        ["ping"] => Ok(Route::Ping),
        ["stats"] => Ok(Route::Stats),
        ["sign"] => Ok(Route::Sign),
        ["buckets"] => Ok(Route::Buckets),
        ["buckets", b, "keys"] => Ok(Route::Keys {
            bucket: name("bucket", b, limits)?,
        }),
        ["buckets", b, "keys", k] => Ok(Route::Object {
            bucket: name("bucket", b, limits)?,
            key: name("key", k, limits)?,
        }),
        ["blobs"] => Ok(Route::Blobs),
        ["blobs", id] => Ok(Route::Blob { id: blob_id(id)? }),
        _ => Err(ApiError::not_found_path()),
    }
}

/// One percent-decoded bucket or key name. Refused: empty, over the limit, invalid UTF-8,
/// control characters, and the path-like names `.` and `..`.
pub fn name(what: &'static str, raw: &str, limits: NameLimits) -> Result<String, ApiError> {
    let invalid = |why: &str| ApiError::bad_request("invalid_name", &format!("{what} name {why}"));
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid("is not valid UTF-8 after percent-decoding"))?;
    if decoded.is_empty() {
        return Err(invalid("is empty"));
    }
    if decoded.len() > limits.max_name_bytes {
        return Err(invalid(&format!(
            "is longer than {} bytes",
            limits.max_name_bytes
        )));
    }
    if decoded.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    if decoded == "." || decoded == ".." {
        return Err(invalid("may not be . or .."));
    }
    Ok(decoded.into_owned())
}

/// A blob id in a path: `sha256:<64 lowercase hex>` (the colon may arrive as `%3A`).
pub fn blob_id(raw: &str) -> Result<ContentId, ApiError> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::invalid_id())?;
    decoded.parse().map_err(|_| ApiError::invalid_id())
}

/// Characters escaped when a name goes back into a URL: everything but unreserved ones.
const NAME_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a bucket or key for use as one path segment.
pub fn encode_name(name: &str) -> String {
    utf8_percent_encode(name, NAME_ESCAPE).to_string()
}

/// The canonical path of a named object (what signatures cover).
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/buckets/{}/keys/{}", encode_name(bucket), encode_name(key))
}

/// Query parameters, percent-decoded; a parameter without `=` has an empty value.
pub fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let dec = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode_str(&s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| ApiError::bad_request("invalid_query", "query is not valid UTF-8"))
        };
        out.push((dec(k)?, dec(v)?));
    }
    Ok(out)
}

/// The value of query parameter `key`, if present.
pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A satisfiable byte range of an object of `size` bytes: `start..end`.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// No `Range` header, or one we ignore (another unit, several ranges): the whole object.
    Full,
    /// One satisfiable range.
    Partial { start: u64, end: u64 },
    /// A syntactically valid range that lies outside the object: 416.
    Unsatisfiable,
}

/// Parses a `Range` header (RFC 9110 §14) against an object of `size` bytes. Only single
/// byte ranges are honoured; a multi-range or other-unit request gets the whole object,
/// which RFC 9110 allows. Malformed byte ranges are ignored too, as the RFC says.
pub fn range(header: Option<&str>, size: u64) -> RangeSpec {
    let Some(h) = header else {
        return RangeSpec::Full;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::Full;
    };
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match num(suffix) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Partial {
                start: size.saturating_sub(n),
                end: size,
            },
            None => RangeSpec::Full,
        },
        (a, "") => match num(a) {
            Some(start) if start < size => RangeSpec::Partial { start, end: size },
            Some(_) => RangeSpec::Unsatisfiable,
            None => RangeSpec::Full,
        },
        (a, b) => match (num(a), num(b)) {
            (Some(start), Some(last)) if start <= last => {
                if start >= size {
                    RangeSpec::Unsatisfiable
                } else {
                    RangeSpec::Partial {
                        start,
                        end: last.saturating_add(1).min(size),
                    }
                }
            }
            _ => RangeSpec::Full,
        },
    }
}

/// An `If-Match` / `If-None-Match` value.
#[derive(Debug, PartialEq, Eq)]
pub enum EtagList {
    /// `*`.
    Any,
    /// The listed tags, as content ids (a tag that is not one of ours matches nothing).
    Tags(Vec<ContentId>),
}

/// Parses a comma-separated list of entity tags. Weak tags (`W/"…"`) compare by their value,
/// as weak comparison allows; tags are our content digests in hex, quoted.
pub fn etag_list(header: &str) -> Result<EtagList, ApiError> {
    let h = header.trim();
    if h == "*" {
        return Ok(EtagList::Any);
    }
    let mut tags = Vec::new();
    for part in h.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let p = p.strip_prefix("W/").unwrap_or(p);
        let inner = p
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .ok_or_else(|| ApiError::bad_request("invalid_header", "entity tags must be quoted"))?;
        let inner = inner.strip_prefix("sha256:").unwrap_or(inner);
        if let Ok(id) = format!("sha256:{}", inner.to_ascii_lowercase()).parse::<ContentId>() {
            tags.push(id);
        }
    }
    Ok(EtagList::Tags(tags))
}

/// User metadata from `X-Riak-Meta-*` headers: (name without the prefix, lower-cased, value).
pub const META_PREFIX: &str = "x-riak-meta-";

/// Checks one user metadata entry against the limits: printable ASCII names, values of
/// visible characters.
pub fn meta_entry(name: &str, value: &[u8]) -> Result<(String, String), ApiError> {
    let key = &name[META_PREFIX.len()..];
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_header",
            "X-Riak-Meta- header without a name",
        ));
    }
    let value = std::str::from_utf8(value).map_err(|_| {
        ApiError::bad_request("invalid_header", "metadata values must be UTF-8 text")
    })?;
    Ok((key.to_ascii_lowercase(), value.to_string()))
}

/// Checks the parsers' invariants on arbitrary bytes (the fuzz target and the corpus replay
/// test call this). The input is split at the first two newlines into a request target, a
/// `Range` header and an entity-tag list; the object size comes from the input's length.
pub fn check_invariants(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let target = parts.next().unwrap_or("");
    let range_h = parts.next();
    let etags = parts.next();
    let limits = NameLimits { max_name_bytes: 16 };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    // Deterministic, and names that come out obey every rule and round-trip.
    let first = route(path, limits);
    let again = route(path, limits);
    assert_eq!(format!("{first:?}"), format!("{again:?}"));
    if let Ok(Route::Object { bucket, key }) = &first {
        for n in [bucket, key] {
            assert!(!n.is_empty() && n.len() <= limits.max_name_bytes);
            assert!(!n.chars().any(char::is_control));
            assert!(n != "." && n != "..");
            assert_eq!(
                &name("name", &encode_name(n), limits).expect("round trip"),
                n
            );
        }
        let canonical = object_path(bucket, key);
        assert_eq!(
            format!("{:?}", route(&canonical, limits)),
            format!("{first:?}")
        );
    }
    if let Err(e) = &first {
        assert!(e.status == 400 || e.status == 404, "{e:?}");
    }
    let _ = query_pairs(query);
    let size = data.len() as u64;
    match range(range_h, size) {
        RangeSpec::Partial { start, end } => assert!(start < end && end <= size),
        RangeSpec::Unsatisfiable | RangeSpec::Full => {}
    }
    if let Some(e) = etags {
        if let Ok(EtagList::Tags(ids)) = etag_list(e) {
            assert!(ids.len() <= e.split(',').count());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: NameLimits = NameLimits {
        max_name_bytes: 1024,
    };

    #[test]
    fn routes() {
        assert_eq!(route("/", L).unwrap(), Route::Root);
        assert_eq!(route("/ping", L).unwrap(), Route::Ping);
        assert_eq!(
            route("/buckets/photos/keys/a%2Fb.jpg", L).unwrap(),
            Route::Object {
                bucket: "photos".into(),
                key: "a/b.jpg".into()
            }
        );
        assert_eq!(
            route("/buckets/b/keys", L).unwrap(),
            Route::Keys { bucket: "b".into() }
        );
        let id = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(matches!(
            route(&format!("/blobs/{id}"), L),
            Ok(Route::Blob { .. })
        ));
        assert!(matches!(
            route(
                "/blobs/sha256%3Aba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                L
            ),
            Ok(Route::Blob { .. })
        ));
        assert_eq!(route("/blobs/nope", L).unwrap_err().code, "invalid_id");
        assert_eq!(route("/nothing", L).unwrap_err().status, 404);
        assert_eq!(route("/buckets/b/keys/k/extra", L).unwrap_err().status, 404);
    }

    #[test]
    fn names_refuse_traversal_and_junk() {
        for bad in ["..", ".", "%2E%2E", "", "a%00b", "%FF", "a%0Ab"] {
            let e = name("key", bad, L).unwrap_err();
            assert_eq!(e.code, "invalid_name", "{bad}");
        }
        assert_eq!(name("key", "..a", L).unwrap(), "..a");
        assert_eq!(name("key", "caf%C3%A9", L).unwrap(), "café");
        let long = "x".repeat(1025);
        assert_eq!(name("key", &long, L).unwrap_err().code, "invalid_name");
        assert!(name("key", &"x".repeat(1024), L).is_ok());
        // Traversal through the router: the `..` segment is a name, and refused.
        assert_eq!(
            route("/buckets/../keys/etc", L).unwrap_err().code,
            "invalid_name"
        );
    }

    #[test]
    fn names_round_trip_through_encoding() {
        for n in ["a b", "a/b", "ü?#&=%", "plain-name_1.txt~"] {
            assert_eq!(name("key", &encode_name(n), L).unwrap(), n);
        }
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(range(None, 10), Full);
        assert_eq!(range(Some("bytes=0-3"), 10), Partial { start: 0, end: 4 });
        assert_eq!(range(Some("bytes=5-"), 10), Partial { start: 5, end: 10 });
        assert_eq!(range(Some("bytes=-3"), 10), Partial { start: 7, end: 10 });
        assert_eq!(range(Some("bytes=-30"), 10), Partial { start: 0, end: 10 });
        assert_eq!(
            range(Some("bytes=8-100"), 10),
            Partial { start: 8, end: 10 }
        );
        assert_eq!(range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(range(Some("bytes=3-1"), 10), Full);
        assert_eq!(range(Some("bytes=0-1,4-5"), 10), Full);
        assert_eq!(range(Some("items=0-1"), 10), Full);
        assert_eq!(range(Some("bytes=x-1"), 10), Full);
        assert_eq!(range(Some("bytes=+1-2"), 10), Full);
    }

    #[test]
    fn etags() {
        let hexid = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let id: ContentId = format!("sha256:{hexid}").parse().unwrap();
        assert_eq!(etag_list("*").unwrap(), EtagList::Any);
        assert_eq!(
            etag_list(&format!("\"{hexid}\"")).unwrap(),
            EtagList::Tags(vec![id])
        );
        assert_eq!(
            etag_list(&format!("W/\"{hexid}\", \"other\"")).unwrap(),
            EtagList::Tags(vec![id])
        );
        assert!(etag_list("unquoted").is_err());
    }

    #[test]
    fn fuzz_seed_corpus_keeps_the_invariants() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/blob/corpus/request_parts"
        );
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the fuzz seed corpus directory") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            check_invariants(&data);
            n += 1;
        }
        assert!(n >= 10, "only {n} seeds");
    }

    #[test]
    fn queries() {
        let q = query_pairs(Some("keys=stream&max_results=10&continuation=a%20b&flag")).unwrap();
        assert_eq!(param(&q, "keys"), Some("stream"));
        assert_eq!(param(&q, "continuation"), Some("a b"));
        assert_eq!(param(&q, "flag"), Some(""));
        assert_eq!(param(&q, "none"), None);
    }
}
