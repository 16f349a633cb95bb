//! A small HTTP/1.1 client for what the dashboard reads from the services: their `/metrics`
//! and the log collector's read API (whose tail is streamed through to the browser). Plain
//! `http://` only: the services' admin and read ports are on loopback or a private network.

use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// The most of a body [`get_text`] reads.
const MAX_TEXT: usize = 16 << 20;

/// `GET base + path_and_query` with `Authorization: Bearer token` and `headers`; the response
/// with its body still to be read. Connecting and the response head take at most `timeout`.
pub async fn get(
    base: &str,
    path_and_query: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Response<Incoming>, String> {
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: only http:// URLs are supported"))?
        .trim_end_matches('/');
    let work = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot reach {authority}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "dashboard client connection ended");
            }
        });
        let mut req = Request::get(path_and_query)
            .header("host", authority)
            .header("user-agent", "berthd-dashboard");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad request {path_and_query}: {e}"))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("{authority}: {e}"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{base} did not answer within {timeout:?}"))?
}

/// `GET` as [`get`], the whole body as text (at most 16 MiB, read within `timeout`).
pub async fn get_text(
    base: &str,
    path_and_query: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let work = async {
        let resp = get(base, path_and_query, token, &[], timeout).await?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_TEXT)
            .collect()
            .await
            .map_err(|e| format!("{base}{path_and_query}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{base} did not answer within {timeout:?}"))?
}
