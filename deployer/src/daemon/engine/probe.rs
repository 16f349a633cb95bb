//! Health checks and smoke requests: plain HTTP/1.1 over a fresh TCP connection to one
//! instance, with a deadline, so a hung app counts as a failure rather than hanging berthd.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one request got.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most of a body a smoke request reads.
const MAX_BODY: usize = 1 << 20;

/// Sends `method path` to `addr` with `Host: host`; the status and (up to 1 MiB of) the body.
pub async fn request(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berthd\r\nAccept: */*\r\n\
             X-Request-Id: berthd-check\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending to {addr}: {e}"))?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_BODY + 64 * 1024 || (method == "HEAD" && has_head_end(&buf)) {
                break;
            }
        }
        parse(&buf).ok_or_else(|| {
            if buf.is_empty() {
                format!("{addr} closed the connection without answering")
            } else {
                format!("{addr} did not answer HTTP")
            }
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}ms", timeout.as_millis())),
    }
}

fn has_head_end(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n")
}

fn parse(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let raw = &buf[end + 4..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Some(Answer {
        status,
        body: body.into_iter().take(MAX_BODY).collect(),
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&raw[..eol]).unwrap_or("0");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        raw = &raw[eol + 2..];
        if size == 0 || raw.len() < size {
            out.extend_from_slice(&raw[..size.min(raw.len())]);
            break;
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_and_without_chunking() {
        let a = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"ok"[..]));
        let a = parse(b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (503, &b"abcde"[..]));
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_none());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let _keep = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let err = request(&addr, "x", "GET", "/", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }
}
