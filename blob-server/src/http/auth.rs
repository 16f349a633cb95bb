//! Who is asking: an app (by its token, Bearer or Basic `app:token`), an operator (by an
//! operator token, acting for the app named in `X-Berth-App`), a browser holding a signed URL,
//! or — without tenants — the one development namespace.

use base64::Engine;
use http::{header, Request};
use hyper::body::Incoming;

use crate::http::parse::{self, Route};
use crate::http::{Api, ApiError, DEV_APP};

/// The header an operator names the app with.
pub const APP_HEADER: &str = "x-berth-app";

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An app, by one of its tokens (or the development namespace without tenants).
    App(String),
    /// A signed URL for one object of this app: reads only.
    Signed(String),
    /// An operator; `app` when the request named one with `X-Berth-App`.
    Operator { app: Option<String> },
}

impl Caller {
    /// The namespace the request acts in.
    pub fn app(&self) -> Result<&str, ApiError> {
        match self {
            Caller::App(a) | Caller::Signed(a) => Ok(a),
            Caller::Operator { app: Some(a) } => Ok(a),
            Caller::Operator { app: None } => Err(ApiError::bad_request(
                "app_required",
                "operator requests on app data name the app in the X-Berth-App header",
            )),
        }
    }

    /// Whether the caller is an operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator { .. })
    }
}

/// Authenticates a request. Signed URLs are honoured only for reading a named object or a
/// blob; everything else needs a token.
pub fn caller(
    api: &Api,
    req: &Request<Incoming>,
    route: &Route,
    query: &[(String, String)],
) -> Result<Caller, ApiError> {
    let auth = req.headers().get(header::AUTHORIZATION);
    let signed = parse::param(query, "signature").is_some();
    let Some(set) = api.tenant_set() else {
        // No tenants: one anonymous namespace, as a local development server.
        if signed {
            return signed_caller(api, req, route, query);
        }
        return Ok(Caller::App(DEV_APP.to_string()));
    };
    let Some(auth) = auth else {
        if signed {
            return signed_caller(api, req, route, query);
        }
        return Err(ApiError::unauthorized());
    };
    let auth = auth.to_str().map_err(|_| ApiError::unauthorized())?;
    let (scheme, cred) = auth
        .trim()
        .split_once(' ')
        .ok_or_else(ApiError::unauthorized)?;
    let cred = cred.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(t) = set.authenticate_token(cred) {
            return Ok(Caller::App(t.name.as_str().to_string()));
        }
        if api.operators.verify(cred) {
            return operator(req, &set);
        }
        return Err(ApiError::unauthorized());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(cred)
            .map_err(|_| ApiError::unauthorized())?;
        let text = String::from_utf8(decoded).map_err(|_| ApiError::unauthorized())?;
        let (user, token) = text.split_once(':').ok_or_else(ApiError::unauthorized)?;
        if user == "_operator" && api.operators.verify(token) {
            return operator(req, &set);
        }
        return match set.authenticate(user, token) {
            Some(t) => Ok(Caller::App(t.name.as_str().to_string())),
            None => Err(ApiError::unauthorized()),
        };
    }
    Err(ApiError::unauthorized())
}

fn operator(
    req: &Request<Incoming>,
    set: &berth_common::tenants::TenantSet,
) -> Result<Caller, ApiError> {
    let app = match req.headers().get(APP_HEADER) {
        None => None,
        Some(v) => {
            let name = v
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid_header", "invalid X-Berth-App"))?;
            if set.get(name).is_none() {
                return Err(ApiError::new(
                    404,
                    "no_such_app",
                    format!("no app named {name:?}"),
                ));
            }
            Some(name.to_string())
        }
    };
    Ok(Caller::Operator { app })
}

fn signed_caller(
    api: &Api,
    req: &Request<Incoming>,
    route: &Route,
    query: &[(String, String)],
) -> Result<Caller, ApiError> {
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return Err(ApiError::forbidden("a signed URL only allows GET and HEAD"));
    }
    let path = match route {
        Route::Object { bucket, key } => parse::object_path(bucket, key),
        Route::Blob { id } => format!("/blobs/{id}"),
        _ => return Err(ApiError::forbidden("signed URLs are for objects and blobs")),
    };
    let app = parse::param(query, "app")
        .ok_or_else(|| ApiError::forbidden("a signed URL names its app"))?;
    let expires = parse::param(query, "expires")
        .and_then(|e| e.parse::<u64>().ok())
        .ok_or_else(|| ApiError::forbidden("a signed URL carries its expiry time"))?;
    let signature = parse::param(query, "signature").unwrap_or_default();
    api.signer.verify(app, &path, expires, signature)?;
    if let Some(set) = api.tenant_set() {
        // A deleted app's old URLs stop working.
        if set.get(app).is_none() {
            return Err(ApiError::forbidden("invalid signature"));
        }
    } else if app != DEV_APP {
        return Err(ApiError::forbidden("invalid signature"));
    }
    Ok(Caller::Signed(app.to_string()))
}
