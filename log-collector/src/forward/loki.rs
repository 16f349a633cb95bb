//! Loki's push API (`POST /loki/api/v1/push`, JSON): the request body as pure code, and a
//! minimal HTTP/1.1 client to send it.

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::store::read::Found;

/// Where to push: `http://host:port[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// The push path, prefix included.
    pub path: String,
}

impl Target {
    /// Parses the configured URL.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("forward_loki {url:?}: expected http://HOST:PORT"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            bail!("forward_loki {url:?}: no host");
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            path: format!("{prefix}/loki/api/v1/push"),
        })
    }
}

/// The push body for events of `app`: one stream per level, labels `app`, `level` and
/// `source="berth"`, each value `[receive time in ns, the event as JSON]` in order.
pub fn push_body(app: &str, events: &[Found]) -> Vec<u8> {
    let mut by_level: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for e in events {
        let level = serde_json::from_slice::<serde_json::Value>(&e.payload)
            .ok()
            .and_then(|v| v.get("level").and_then(|l| l.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "info".into());
        let line = String::from_utf8_lossy(&e.to_json()).into_owned();
        let value = serde_json::json!([e.time.to_string(), line]);
        match by_level.iter_mut().find(|(l, _)| *l == level) {
            Some((_, v)) => v.push(value),
            None => by_level.push((level, vec![value])),
        }
    }
    let streams: Vec<_> = by_level
        .into_iter()
        .map(|(level, values)| {
            serde_json::json!({
                "stream": {"app": app, "level": level, "source": "berth"},
                "values": values,
            })
        })
        .collect();
    serde_json::json!({ "streams": streams })
        .to_string()
        .into_bytes()
}

/// POSTs `body` as JSON; returns the status and the start of the answer.
pub async fn post(target: &Target, org: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(&target.authority)
        .await
        .with_context(|| format!("connecting to Loki at {}", target.authority))?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: berth-log-collector\r\n",
        target.path,
        target.authority,
        body.len()
    );
    if !org.is_empty() {
        req.push_str(&format!("X-Scope-OrgID: {org}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while answer.len() < 16 << 10 {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("Loki's answer is not HTTP")?;
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://loki:3100").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("loki:3100", "/loki/api/v1/push")
        );
        let t = Target::parse("http://gw/tenant-a/").unwrap();
        assert_eq!(t.path, "/tenant-a/loki/api/v1/push");
        assert!(Target::parse("https://x").is_err());
    }

    #[test]
    fn body_groups_by_level_in_order() {
        let ev = |seq: u64, level: &str| Found {
            seq,
            time: 1_700_000_000_000_000_000 + seq as i64,
            payload: format!("{{\"level\":\"{level}\",\"message\":\"m{seq}\"}}").into_bytes(),
        };
        let body = push_body("shop", &[ev(1, "info"), ev(2, "error"), ev(3, "info")]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let streams = v["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0]["stream"]["app"], "shop");
        assert_eq!(streams[0]["stream"]["level"], "info");
        assert_eq!(streams[0]["values"][1][0], "1700000000000000003");
        let line: serde_json::Value =
            serde_json::from_str(streams[0]["values"][1][1].as_str().unwrap()).unwrap();
        assert_eq!(
            (line["seq"].as_u64(), line["message"].as_str()),
            (Some(3), Some("m3"))
        );
    }
}
