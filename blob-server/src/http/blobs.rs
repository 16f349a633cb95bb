//! Content-addressed blobs: `POST /blobs` stores the body and answers its id;
//! `GET/HEAD/DELETE /blobs/{id}` reach it, for the app that stored it only.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::http::objects::value;
use crate::http::parse::{self, EtagList, RangeSpec};
use crate::http::{first_piece, header_str, json, quick, reader_body, Api, ApiError, Body};
use crate::store::{blocking, ContentId};

/// Blobs never change: clients may cache them for a year.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// `POST /blobs`: stores the body; answers 201 `{"id": "sha256:…", "size": N}` once durable.
pub async fn post(
    api: &Arc<Api>,
    app: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let w = api.receive(app, req).await?;
    let size = w.size();
    let id = w.commit_blob().await?;
    let mut resp = json(
        StatusCode::CREATED,
        &serde_json::json!({ "id": id.to_string(), "size": size }),
    );
    let h = resp.headers_mut();
    h.insert(header::LOCATION, value(&format!("/blobs/{id}")));
    h.insert(header::ETAG, value(&format!("\"{}\"", id.hex())));
    Ok(resp)
}

/// `GET`/`HEAD /blobs/{id}`: the bytes (or a range), if this app stored them.
pub async fn get(
    api: &Arc<Api>,
    app: &str,
    id: &ContentId,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let etag = format!("\"{}\"", id.hex());
    let range_header = header_str(req, header::RANGE)?.map(str::to_owned);
    let if_none_match = header_str(req, header::IF_NONE_MATCH)?
        .map(parse::etag_list)
        .transpose()?;
    let (store, a, i) = (api.store.clone(), app.to_string(), *id);
    let mut reader = quick(move || store.read(&a, &i)).await?;
    if let Some(l) = if_none_match {
        let hit = match l {
            EtagList::Any => true,
            EtagList::Tags(ids) => ids.contains(id),
        };
        if hit {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            resp.headers_mut().insert(header::ETAG, value(&etag));
            return Ok(resp);
        }
    }
    let size = reader.size();
    let mut status = StatusCode::OK;
    let mut content_range = None;
    match parse::range(range_header.as_deref(), size) {
        RangeSpec::Full => {}
        RangeSpec::Partial { start, end } => {
            reader.restrict(start..end)?;
            status = StatusCode::PARTIAL_CONTENT;
            content_range = Some(format!("bytes {start}-{}/{size}", end - 1));
        }
        RangeSpec::Unsatisfiable => {
            let mut r = ApiError::new(
                416,
                "range_not_satisfiable",
                format!("the range lies outside the blob of {size} bytes"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CONTENT_RANGE, value(&format!("bytes */{size}")));
            return Ok(r);
        }
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
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ETAG, value(&etag));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, value(&cr));
    }
    Ok(resp)
}

/// `DELETE /blobs/{id}`: drops the app's direct hold (its named objects keep their content).
pub async fn delete(api: &Arc<Api>, app: &str, id: &ContentId) -> Result<Response<Body>, ApiError> {
    let (store, a, i) = (api.store.clone(), app.to_string(), *id);
    blocking(move || store.delete_blob(&a, &i)).await?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}
