//! A small blocking HTTP/1.1 client for the CLI: `GET` with a bearer token over plain TCP,
//! bodies by Content-Length, chunked encoding or connection close, readable as a stream
//! (server-sent events). Enough for Berth's own HTTP APIs; no TLS.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://host:port[/path]`.
    #[error("bad URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    /// Connecting or talking to the server failed.
    #[error("cannot reach {addr}: {source}")]
    Io {
        /// Where.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The server's answer is not HTTP.
    #[error("malformed HTTP response from {0}")]
    Malformed(String),
}

/// A base URL: `http://host:port` plus an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `host:port`.
    pub authority: String,
    /// Path prefix without a trailing slash (may be empty).
    pub prefix: String,
}

impl BaseUrl {
    /// Parses `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<BaseUrl, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::BadUrl(url.to_owned()))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(HttpError::BadUrl(url.to_owned()));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(BaseUrl {
            authority,
            prefix: prefix.to_owned(),
        })
    }
}

/// A response whose body is read as a stream.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// The whole body as text.
    pub fn text(mut self) -> io::Result<String> {
        let mut s = String::new();
        self.body.read_to_string(&mut s)?;
        Ok(s)
    }
}

enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// A response body (decodes chunked transfer encoding).
pub struct Body {
    reader: BufReader<TcpStream>,
    framing: Framing,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::Close => self.reader.read(buf),
            Framing::Length(left) => {
                if *left == 0 {
                    return Ok(0);
                }
                let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..max])?;
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { left, done } => {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    self.reader.read_line(&mut line)?;
                    if line.trim().is_empty() {
                        // The CRLF after the previous chunk.
                        line.clear();
                        self.reader.read_line(&mut line)?;
                    }
                    let size = line.trim().split(';').next().unwrap_or("");
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")
                    })?;
                    if size == 0 {
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let max = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.reader.read(&mut buf[..max])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                Ok(n)
            }
        }
    }
}

/// `GET base + path_and_query` with an optional bearer token. `read_timeout` bounds each
/// read (None: wait forever, for streams).
pub fn get(
    base: &BaseUrl,
    path_and_query: &str,
    token: Option<&str>,
    read_timeout: Option<Duration>,
) -> Result<Response, HttpError> {
    let io_err = |source| HttpError::Io {
        addr: base.authority.clone(),
        source,
    };
    let mut stream = TcpStream::connect(&base.authority).map_err(io_err)?;
    stream.set_read_timeout(read_timeout).map_err(io_err)?;
    let mut req = format!(
        "GET {}{} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nConnection: close\r\nUser-Agent: berth-cli\r\n",
        base.prefix, path_and_query, base.authority
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).map_err(io_err)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io_err)?;
    let malformed = || HttpError::Malformed(base.authority.clone());
    let mut parts = line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(malformed());
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io_err)? == 0 {
            return Err(malformed());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or_else(malformed)?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let framing = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(len) = header("content-length") {
        Framing::Length(len.parse().map_err(|_| malformed())?)
    } else {
        Framing::Close
    };
    Ok(Response {
        status,
        headers,
        body: Body { reader, framing },
    })
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = BaseUrl::parse("http://127.0.0.1:8099").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8099");
        assert_eq!(u.prefix, "");
        let u = BaseUrl::parse("http://logs.example/berth/").unwrap();
        assert_eq!(u.authority, "logs.example:80");
        assert_eq!(u.prefix, "/berth");
        assert!(BaseUrl::parse("https://x").is_err());
        assert!(BaseUrl::parse("http://").is_err());
    }

    #[test]
    fn chunked_and_length_bodies_from_a_real_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for reply in [
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"[..],
                &b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnopeEXTRA"[..],
            ] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).unwrap();
                s.write_all(reply).unwrap();
            }
        });
        let base = BaseUrl::parse(&format!("http://{addr}")).unwrap();
        let r = get(&base, "/x", Some("t"), Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text().unwrap(), "hello world");
        let r = get(&base, "/y", None, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.status, 403);
        assert_eq!(r.text().unwrap(), "nope");
        server.join().unwrap();
    }
}
