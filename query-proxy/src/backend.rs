//! The proxy's own client of the MariaDB/MySQL backend: logging in (as an app's account or the
//! admin account) and, on the control path only, running a statement and reading its rows.
//! The relay path uses the logged-in stream directly and never decodes rows.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::either::Either;

use crate::protocol::handshake::{
    decode_auth_switch, native_password_response, Greeting, HandshakeResponse, NATIVE_PASSWORD,
};
use crate::protocol::{
    caps, decode_packet, encode_packet, get_lenenc_str, reply, Decode, Packet, ProtocolError,
};

/// Largest packet the control path reads from the backend.
const CONTROL_PACKET_LIMIT: usize = 64 << 20;

/// Why talking to the backend failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot reach the backend at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("backend error {}: {}", .0.code, .0.message)]
    Server(reply::Err),
    #[error("backend login: {0}")]
    Login(String),
    #[error("the backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the backend closed the connection")]
    Closed,
}

/// How to log in.
#[derive(Debug, Clone)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a str,
    pub database: Option<&'a str>,
    /// Relayed capability flags the session should have (the client's choice).
    pub relayed_caps: u32,
    pub collation: u8,
}

/// Where the backend listens: `host:port`, or the path of its Unix socket (an address that
/// starts with `/`, or `unix:` and a path).
pub fn socket_path(addr: &str) -> Option<&str> {
    match addr.strip_prefix("unix:") {
        Some(path) => Some(path),
        None => addr.starts_with('/').then_some(addr),
    }
}

/// A connection to the backend: TCP, or its Unix socket when it runs on the same host. A
/// local socket skips the loopback TCP stack on every relayed packet, in the proxy and in the
/// backend (sysbench point selects straight to MariaDB: 7-12% more per second over its socket).
pub type BackendStream = Either<TcpStream, UnixStream>;

/// Connects to `addr` (see [`socket_path`]).
pub async fn connect_stream(addr: &str) -> Result<BackendStream, BackendError> {
    let connected = match socket_path(addr) {
        Some(path) => UnixStream::connect(path).await.map(Either::Right),
        None => TcpStream::connect(addr).await.and_then(|s| {
            s.set_nodelay(true)?;
            Ok(Either::Left(s))
        }),
    };
    connected.map_err(|source| BackendError::Connect {
        addr: addr.to_owned(),
        source,
    })
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct BackendConn {
    pub stream: BackendStream,
    /// Bytes read but not yet used.
    pub buf: Vec<u8>,
    /// The backend's thread id (for `KILL QUERY`).
    pub connection_id: u32,
    pub server_version: String,
    /// The session's capability flags.
    pub capabilities: u32,
}

impl Drop for BackendConn {
    /// Says goodbye (`COM_QUIT`) so the backend does not count and log an aborted connection.
    fn drop(&mut self) {
        let quit = [1, 0, 0, 0, crate::protocol::command::COM_QUIT];
        let _ = match &self.stream {
            Either::Left(tcp) => tcp.try_write(&quit),
            Either::Right(unix) => unix.try_write(&quit),
        };
    }
}

/// Reads the backend's greeting only, to learn its version (startup probe).
pub async fn probe_version(addr: &str, timeout: Duration) -> Result<String, BackendError> {
    let fut = async {
        let mut stream = connect_stream(addr).await?;
        let mut buf = Vec::new();
        let p = read_packet(&mut stream, &mut buf, CONTROL_PACKET_LIMIT).await?;
        if p.payload.first() == Some(&0xFF) {
            return Err(BackendError::Server(reply::Err::decode(&p.payload)?));
        }
        Ok(Greeting::decode(&p.payload)?.server_version)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| BackendError::Timeout(timeout))?
}

/// Reads one logical packet from `stream`, keeping extra bytes in `buf`.
pub async fn read_packet(
    stream: &mut BackendStream,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<Packet, BackendError> {
    loop {
        if let Decode::Done(p, n) = decode_packet(buf, limit)? {
            buf.drain(..n);
            return Ok(p);
        }
        buf.reserve(16 << 10);
        if stream.read_buf(buf).await? == 0 {
            return Err(BackendError::Closed);
        }
    }
}

impl BackendConn {
    /// Connects and logs in, all within `timeout`.
    pub async fn connect(
        addr: &str,
        login: &Login<'_>,
        timeout: Duration,
    ) -> Result<BackendConn, BackendError> {
        tokio::time::timeout(timeout, Self::connect_inner(addr, login))
            .await
            .map_err(|_| BackendError::Timeout(timeout))?
    }

    async fn connect_inner(addr: &str, login: &Login<'_>) -> Result<BackendConn, BackendError> {
        let mut stream = connect_stream(addr).await?;
        let mut buf = Vec::new();
        let p = read_packet(&mut stream, &mut buf, CONTROL_PACKET_LIMIT).await?;
        if p.payload.first() == Some(&0xFF) {
            return Err(BackendError::Server(reply::Err::decode(&p.payload)?));
        }
        let greeting = Greeting::decode(&p.payload)?;
        if greeting.capabilities & caps::PROTOCOL_41 == 0 {
            return Err(BackendError::Login(
                "the backend does not speak protocol 4.1".into(),
            ));
        }
        let db_flag = if login.database.is_some() {
            caps::CONNECT_WITH_DB
        } else {
            0
        };
        let wanted = (caps::BACKEND_BASE & !caps::CONNECT_WITH_DB)
            | (login.relayed_caps & caps::RELAYED)
            | db_flag;
        let capabilities = wanted & greeting.capabilities;
        let response = HandshakeResponse {
            capabilities,
            max_packet: 1 << 30,
            collation: login.collation,
            username: login.user.as_bytes().to_vec(),
            auth_response: native_password_response(login.password.as_bytes(), &greeting.scramble),
            database: login.database.map(|d| d.as_bytes().to_vec()),
            auth_plugin: Some(NATIVE_PASSWORD.to_owned()),
            attributes: Vec::new(),
        };
        let mut out = Vec::new();
        let mut seq = encode_packet(p.seq.wrapping_add(1), &response.encode(), &mut out);
        stream.write_all(&out).await?;
        loop {
            let p = read_packet(&mut stream, &mut buf, CONTROL_PACKET_LIMIT).await?;
            match p.payload.first() {
                Some(0x00) => break,
                Some(0xFF) => return Err(BackendError::Server(reply::Err::decode(&p.payload)?)),
                Some(0xFE) => {
                    let (plugin, data) = decode_auth_switch(&p.payload)?;
                    if plugin != NATIVE_PASSWORD {
                        return Err(BackendError::Login(format!(
                            "the backend asks for auth plugin {plugin}; the account must use mysql_native_password"
                        )));
                    }
                    let answer = native_password_response(login.password.as_bytes(), &data);
                    out.clear();
                    seq = encode_packet(p.last_seq.wrapping_add(1), &answer, &mut out);
                    stream.write_all(&out).await?;
                }
                _ => {
                    return Err(BackendError::Login(format!(
                        "unexpected packet during login (seq {seq})"
                    )))
                }
            }
        }
        Ok(BackendConn {
            stream,
            buf,
            connection_id: greeting.connection_id,
            server_version: greeting.server_version,
            capabilities: response.capabilities,
        })
    }

    /// Sends one command packet (sequence id 0).
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        encode_packet(0, payload, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads one packet of a response.
    pub async fn read(&mut self) -> Result<Packet, BackendError> {
        read_packet(&mut self.stream, &mut self.buf, CONTROL_PACKET_LIMIT).await
    }

    /// Runs a statement that answers OK (or ERR); a result set is read and discarded.
    pub async fn exec(&mut self, sql: &str) -> Result<reply::Ok, BackendError> {
        let (ok, _) = self.run(sql).await?;
        Ok(ok)
    }

    /// Runs a statement and returns its text rows (control path only).
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, BackendError> {
        Ok(self.run(sql).await?.1)
    }

    /// Runs one statement: the final OK (or end-of-rows) status and any rows, as text.
    async fn run(
        &mut self,
        sql: &str,
    ) -> Result<(reply::Ok, Vec<Vec<Option<String>>>), BackendError> {
        let mut payload = vec![crate::protocol::command::COM_QUERY];
        payload.extend_from_slice(sql.as_bytes());
        self.send_command(&payload).await?;
        let deprecate = self.capabilities & caps::DEPRECATE_EOF != 0;
        let p = self.read().await?;
        match p.payload.first() {
            Some(0x00) => return Ok((reply::Ok::decode(&p.payload)?, Vec::new())),
            Some(0xFF) => return Err(BackendError::Server(reply::Err::decode(&p.payload)?)),
            _ => {}
        }
        let (columns, _) = crate::protocol::get_lenenc_int(&p.payload)?;
        for _ in 0..columns {
            self.read().await?;
        }
        if !deprecate {
            self.read().await?;
        }
        let mut rows = Vec::new();
        loop {
            let p = self.read().await?;
            match p.payload.first() {
                Some(0xFF) => return Err(BackendError::Server(reply::Err::decode(&p.payload)?)),
                Some(0xFE) if p.payload.len() < 0xFF_FFFF => {
                    let ok = if deprecate {
                        reply::Ok::decode(&p.payload)?
                    } else {
                        reply::Ok::default()
                    };
                    return Ok((ok, rows));
                }
                _ => {
                    let mut row = Vec::new();
                    let mut rest = &p.payload[..];
                    while !rest.is_empty() {
                        if rest[0] == 0xFB {
                            row.push(None);
                            rest = &rest[1..];
                        } else {
                            let (s, n) = get_lenenc_str(rest)?;
                            row.push(Some(String::from_utf8_lossy(s).into_owned()));
                            rest = &rest[n..];
                        }
                    }
                    rows.push(row);
                }
            }
        }
    }
}
