//! Named objects: `GET/HEAD/PUT/POST/DELETE /buckets/{bucket}/keys/{key}` and
//! `POST /buckets/{bucket}/keys` (the server names the object after its content).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::parse::{self, EtagList, RangeSpec, META_PREFIX};
use crate::http::{first_piece, header_str, quick, reader_body, Api, ApiError, Body};
use crate::store::{blocking, Condition, ContentId, ObjectInfo, ObjectOptions};

/// Most user metadata one object may carry (names and values together).
const MAX_META_BYTES: usize = 8 << 10;

/// `GET`/`HEAD`: the object's bytes (or a range of them) and its metadata.
pub async fn get(
    api: &Arc<Api>,
    app: &str,
    bucket: &str,
    key: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let conds = ReadConditions::from_request(req)?;
    let range_header = header_str(req, header::RANGE)?.map(str::to_owned);
    let (store, a, b, k) = (
        api.store.clone(),
        app.to_string(),
        bucket.to_string(),
        key.to_string(),
    );
    let (info, mut reader) = quick(move || store.open_object(&a, &b, &k, None)).await?;
    let current = Some(&info.id);
    if let Some(status) = conds.check(current, info.last_modified_ms) {
        return Ok(not_modified_or_failed(status, &info));
    }
    let spec = parse::range(range_header.as_deref(), info.size);
    let (status, range) = match spec {
        RangeSpec::Full => (StatusCode::OK, None),
        RangeSpec::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, Some((start, end))),
        RangeSpec::Unsatisfiable => {
            let mut r = ApiError::new(
                416,
                "range_not_satisfiable",
                format!("the range lies outside the object of {} bytes", info.size),
            )
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                value(&format!("bytes */{}", info.size)),
            );
            return Ok(r);
        }
    };
    if let Some((start, end)) = range {
        reader.restrict(start..end)?;
    }
    let len = reader.remaining();
    let (first, reader) = if req.method() == http::Method::HEAD {
        (None, reader)
    } else {
        first_piece(reader).await?
    };
    let mut resp = Response::new(reader_body(api, first, reader));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    object_headers(h, &info);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((start, end)) = range {
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{}/{}", end - 1, info.size)),
        );
    }
    Ok(resp)
}

/// `PUT` (or `POST`) with a key: stores the body under the name, replacing any object there.
pub async fn put(
    api: &Arc<Api>,
    app: &str,
    bucket: &str,
    key: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let opts = write_options(&req)?;
    // Fail fast on a condition that already fails, before reading the body; the commit
    // checks it again atomically, so a racing writer cannot slip through.
    if opts.condition != Condition::Always {
        let (store, a, b, k) = (
            api.store.clone(),
            app.to_string(),
            bucket.to_string(),
            key.to_string(),
        );
        let current = match quick(move || store.get_object(&a, &b, &k)).await {
            Ok(info) => Some(info.id),
            Err(crate::store::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        if !opts.condition.holds(current.as_ref()) {
            return Err(ApiError::precondition_failed());
        }
    }
    let w = api.receive(app, req).await?;
    let info = w.commit_object(bucket, key, opts).await?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::ETAG, value(&info.etag()));
    h.insert(
        header::LAST_MODIFIED,
        value(&http_date(info.last_modified_ms)),
    );
    Ok(resp)
}

/// `POST /buckets/{bucket}/keys`: stores the body under a key the server picks — its content
/// digest in hex — and answers 201 with the `Location`.
pub async fn post_new(
    api: &Arc<Api>,
    app: &str,
    bucket: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut opts = write_options(&req)?;
    opts.condition = Condition::Always;
    let w = api.receive(app, req).await?;
    let key = w.content_id().hex();
    let info = w.commit_object(bucket, &key, opts).await?;
    let location = parse::object_path(bucket, &key);
    let mut resp = crate::http::json(
        StatusCode::CREATED,
        &serde_json::json!({ "key": key, "size": info.size }),
    );
    let h = resp.headers_mut();
    h.insert(header::LOCATION, value(&location));
    h.insert(header::ETAG, value(&info.etag()));
    Ok(resp)
}

/// `DELETE`: removes the object (`If-Match` makes it conditional).
pub async fn delete(
    api: &Arc<Api>,
    app: &str,
    bucket: &str,
    key: &str,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let condition = match header_str(req, header::IF_MATCH)? {
        None => Condition::Always,
        Some(h) => match parse::etag_list(h)? {
            EtagList::Any => Condition::Present,
            EtagList::Tags(ids) => Condition::Matches(ids),
        },
    };
    let (store, a, b, k) = (
        api.store.clone(),
        app.to_string(),
        bucket.to_string(),
        key.to_string(),
    );
    blocking(move || store.delete_object_if(&a, &b, &k, condition)).await?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// Content type, user metadata and condition of a write.
fn write_options(req: &Request<Incoming>) -> Result<ObjectOptions, ApiError> {
    let content_type = match header_str(req, header::CONTENT_TYPE)? {
        Some(ct) if !ct.trim().is_empty() => ct.trim().to_string(),
        _ => "application/octet-stream".to_string(),
    };
    let mut user_meta = Vec::new();
    let mut meta_bytes = 0;
    for (name, v) in req.headers() {
        if name.as_str().starts_with(META_PREFIX) {
            let entry = parse::meta_entry(name.as_str(), v.as_bytes())?;
            meta_bytes += entry.0.len() + entry.1.len();
            user_meta.push(entry);
        }
    }
    if meta_bytes > MAX_META_BYTES {
        return Err(ApiError::bad_request(
            "invalid_header",
            &format!("user metadata may total at most {MAX_META_BYTES} bytes"),
        ));
    }
    let condition = match (
        header_str(req, header::IF_MATCH)?,
        header_str(req, header::IF_NONE_MATCH)?,
    ) {
        (Some(m), _) => match parse::etag_list(m)? {
            EtagList::Any => Condition::Present,
            EtagList::Tags(ids) => Condition::Matches(ids),
        },
        (None, Some(n)) => match parse::etag_list(n)? {
            EtagList::Any => Condition::Absent,
            EtagList::Tags(ids) => Condition::NoneMatch(ids),
        },
        (None, None) => Condition::Always,
    };
    Ok(ObjectOptions {
        content_type,
        user_meta,
        condition,
    })
}

/// The conditional headers of a read (RFC 9110 §13.2.2 order).
pub struct ReadConditions {
    if_match: Option<EtagList>,
    if_none_match: Option<EtagList>,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

impl ReadConditions {
    /// Reads the conditional headers; unparsable dates are ignored, as the RFC says.
    pub fn from_request(req: &Request<Incoming>) -> Result<Self, ApiError> {
        let date = |name| -> Result<Option<SystemTime>, ApiError> {
            Ok(header_str(req, name)?.and_then(|d| httpdate::parse_http_date(d).ok()))
        };
        Ok(ReadConditions {
            if_match: header_str(req, header::IF_MATCH)?
                .map(parse::etag_list)
                .transpose()?,
            if_none_match: header_str(req, header::IF_NONE_MATCH)?
                .map(parse::etag_list)
                .transpose()?,
            if_modified_since: date(header::IF_MODIFIED_SINCE)?,
            if_unmodified_since: date(header::IF_UNMODIFIED_SINCE)?,
        })
    }

    /// `Some(412)` or `Some(304)` when a condition stops the read.
    pub fn check(&self, current: Option<&ContentId>, modified_ms: u64) -> Option<StatusCode> {
        let modified = UNIX_EPOCH + Duration::from_secs(modified_ms / 1000);
        let matches = |l: &EtagList| match l {
            EtagList::Any => current.is_some(),
            EtagList::Tags(ids) => current.is_some_and(|c| ids.contains(c)),
        };
        if let Some(l) = &self.if_match {
            if !matches(l) {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        } else if let Some(t) = self.if_unmodified_since {
            if modified > t {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
        if let Some(l) = &self.if_none_match {
            if matches(l) {
                return Some(StatusCode::NOT_MODIFIED);
            }
        } else if let Some(t) = self.if_modified_since {
            if modified <= t {
                return Some(StatusCode::NOT_MODIFIED);
            }
        }
        None
    }
}

fn not_modified_or_failed(status: StatusCode, info: &ObjectInfo) -> Response<Body> {
    if status == StatusCode::PRECONDITION_FAILED {
        return ApiError::precondition_failed().into_response();
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::ETAG, value(&info.etag()));
    h.insert(
        header::LAST_MODIFIED,
        value(&http_date(info.last_modified_ms)),
    );
    resp
}

/// ETag, Last-Modified, Content-Type and `X-Riak-Meta-*` of an object.
fn object_headers(h: &mut HeaderMap, info: &ObjectInfo) {
    h.insert(header::ETAG, value(&info.etag()));
    h.insert(
        header::LAST_MODIFIED,
        value(&http_date(info.last_modified_ms)),
    );
    h.insert(header::CONTENT_TYPE, value(&info.content_type));
    for (k, v) in &info.user_meta {
        if let (Ok(name), Ok(val)) = (
            http::HeaderName::from_bytes(format!("{META_PREFIX}{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.append(name, val);
        }
    }
}

/// A header value from text we produced (always valid); falls back to empty.
pub fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Milliseconds since the epoch as an HTTP date.
pub fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}
