//! The one place where errors become HTTP replies: a status, a stable machine-readable code and
//! a message, as a JSON body `{"error": CODE, "message": TEXT}`. Internal details (paths, OS
//! errors) are logged, never sent.

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::Body;
use crate::store::Error as StoreError;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Stable code clients can branch on (documented in docs/protocols/blob.md).
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// Any error with a status and code.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: &str) -> Self {
        Self::new(400, code, message)
    }

    /// 400: a malformed blob id.
    pub fn invalid_id() -> Self {
        Self::new(
            400,
            "invalid_id",
            "a blob id is sha256: followed by 64 lowercase hex digits",
        )
    }

    /// 404 for a path that names no resource.
    pub fn not_found_path() -> Self {
        Self::new(404, "no_such_resource", "no such resource")
    }

    /// 404 for an object, key or blob the app does not have (whether or not others do).
    pub fn not_found() -> Self {
        Self::new(404, "not_found", "not found")
    }

    /// 401: no or wrong credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "unauthorized",
            "missing or invalid credentials: send Authorization: Bearer <token>",
        )
    }

    /// 403 with a message.
    pub fn forbidden(message: &str) -> Self {
        Self::new(403, "forbidden", message)
    }

    /// 405 for a method the resource does not take.
    pub fn method_not_allowed(allowed: &'static str) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!("this resource takes {allowed}"),
        )
    }

    /// 412: `If-Match` / `If-None-Match` / `If-Unmodified-Since` failed.
    pub fn precondition_failed() -> Self {
        Self::new(
            412,
            "precondition_failed",
            "the object's current state does not meet the request's precondition",
        )
    }

    /// The reply for this error.
    pub fn into_response(self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut resp = Response::new(Body::from(body.to_string()));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == 401 {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth-blob\""),
            );
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::QuotaExceeded { limit } => ApiError::new(
                507,
                "quota_exceeded",
                format!("the app's storage quota of {limit} bytes would be exceeded; nothing was stored"),
            ),
            StoreError::TooLarge { limit } => ApiError::new(
                413,
                "too_large",
                format!("objects may be at most {limit} bytes"),
            ),
            StoreError::InvalidId => ApiError::invalid_id(),
            StoreError::InvalidName(what) => {
                ApiError::new(400, "invalid_name", format!("invalid {what} name"))
            }
            StoreError::InvalidRange { size, .. } => ApiError::new(
                416,
                "range_not_satisfiable",
                format!("the range lies outside the object of {size} bytes"),
            ),
            StoreError::PreconditionFailed => ApiError::precondition_failed(),
            e if e.is_disk_full() => ApiError::new(
                507,
                "disk_full",
                "the server's storage is full; nothing was stored",
            ),
            StoreError::Corrupt(detail) => {
                tracing::error!(%detail, "corrupt data detected on read");
                ApiError::new(
                    500,
                    "corrupt",
                    "the stored data failed its checksum; it was not sent",
                )
            }
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "storage backend failed");
                ApiError::new(
                    503,
                    "unavailable",
                    "the storage backend is unavailable; nothing was stored; try again",
                )
            }
            StoreError::Closed => {
                ApiError::new(503, "unavailable", "the server is shutting down")
            }
            e => {
                tracing::error!(error = %e, "request failed");
                ApiError::new(500, "internal", "internal error; see the server log")
            }
        }
    }
}
