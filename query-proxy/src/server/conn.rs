//! One client connection: log the app in, open its backend session as `app_<name>`, then
//! relay. Only the client's commands are inspected; the backend's responses stream through as
//! raw bytes, watched by [`Tracker`] only to know where each ends.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_common::listener::PeerAddr;
use berth_common::shutdown::ShutdownSignal;
use berth_common::tenants::{Tenant, TokenHash};
use rand::rngs::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::errors::Refuse;
use super::limits::{kill_query, AppSlot};
use super::tls::{Prefixed, Stream};
use super::Shared;
use crate::backend::{BackendConn, BackendError, Login};
use crate::policy::{self, Kind, SqlMode};
use crate::protocol::command::{ChangeUser, Command, COM_RESET_CONNECTION};
use crate::protocol::handshake::{
    encode_auth_switch, is_utf8_collation, new_scramble, ClientHello, Greeting,
    CACHING_SHA2_PASSWORD, NATIVE_PASSWORD,
};
use crate::protocol::response::{Expect, Tracker};
use crate::protocol::{
    caps, decode_packet, encode_packet, frame_header, reply, status, Decode, Packet, ProtocolError,
    MAX_FRAME,
};

mod login;

use login::{authenticate, login, open_session, setup_backend};

/// Largest packet accepted before login.
const LOGIN_PACKET_LIMIT: usize = 64 << 10;
/// How long after a `KILL QUERY` the backend gets to answer before the session is closed.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Why a connection ends early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("client I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("client protocol: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    #[error("the client closed the connection mid-packet")]
    Truncated,
    #[error("refused: {0:?}")]
    Refused(Refuse),
    #[error("login took longer than the login timeout")]
    LoginTimeout,
}

/// The client side of the connection.
struct Client {
    stream: Stream,
    buf: Vec<u8>,
    /// Length of the last packet's raw bytes at the front of `buf`.
    raw_len: usize,
    /// The last command's payload when it spanned several physical packets; otherwise it is
    /// read in place, at `buf[4..raw_len]`.
    joined: Option<Vec<u8>>,
}

impl Client {
    /// Drops the last packet's bytes from the front of `buf`.
    fn consume(&mut self) {
        self.buf.drain(..self.raw_len);
        self.raw_len = 0;
        self.joined = None;
    }

    /// Reads more bytes into `buf`; `None` when the client closed cleanly between packets.
    async fn fill(&mut self) -> Result<Option<()>, ConnError> {
        self.buf.reserve(16 << 10);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::Truncated)
            };
        }
        Ok(Some(()))
    }

    /// The next packet, or `None` when the client closed cleanly between packets.
    async fn read_packet(&mut self, limit: usize) -> Result<Option<Packet>, ConnError> {
        self.consume();
        loop {
            if let Decode::Done(p, n) = decode_packet(&self.buf, limit)? {
                self.raw_len = n;
                return Ok(Some(p));
            }
            if self.fill().await?.is_none() {
                return Ok(None);
            }
        }
    }

    /// The next command packet, left in `buf` (its payload is [`Client::payload`]): its last
    /// sequence id, or `None` when the client closed cleanly between packets. Unlike
    /// [`Client::read_packet`], a command in one physical packet (nearly all of them) is not
    /// copied out of the buffer.
    async fn read_command(&mut self, limit: usize) -> Result<Option<u8>, ConnError> {
        self.consume();
        loop {
            if let Some((len, seq)) = frame_header(&self.buf) {
                if len < MAX_FRAME {
                    if len > limit {
                        return Err(ProtocolError::TooLarge {
                            declared: len,
                            limit,
                        }
                        .into());
                    }
                    if self.buf.len() >= 4 + len {
                        self.raw_len = 4 + len;
                        return Ok(Some(seq));
                    }
                } else if let Decode::Done(p, n) = decode_packet(&self.buf, limit)? {
                    self.raw_len = n;
                    self.joined = Some(p.payload);
                    return Ok(Some(p.last_seq));
                }
            }
            if self.fill().await?.is_none() {
                return Ok(None);
            }
        }
    }

    /// The payload of the command [`Client::read_command`] read.
    fn payload(&self) -> &[u8] {
        match &self.joined {
            Some(p) => p,
            None => &self.buf[4.min(self.raw_len)..self.raw_len],
        }
    }

    async fn send(&mut self, seq: u8, payload: &[u8]) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        encode_packet(seq, payload, &mut out);
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// `SSLRequest`: the TLS handshake, after which the login continues encrypted.
    async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) -> Result<(), ConnError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(ConnError::Protocol(ProtocolError::malformed(
                "a second SSLRequest",
            )));
        };
        // The client may have sent its TLS ClientHello right behind the SSLRequest.
        let early = self.buf.split_off(self.raw_len);
        self.buf.clear();
        self.raw_len = 0;
        self.joined = None;
        let tcp = Prefixed::new(early, tcp);
        let tls = acceptor.accept(tcp).await?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    async fn refuse(&mut self, seq: u8, r: &Refuse) -> Result<(), ConnError> {
        self.send(seq, &r.to_err().encode()).await
    }
}

/// Serves one client connection to its end.
pub async fn handle(
    stream: TcpStream,
    peer: PeerAddr,
    shared: Arc<Shared>,
    shutdown: ShutdownSignal,
) {
    let mut client = Client {
        stream: Stream::Plain(stream),
        buf: Vec::with_capacity(16 << 10),
        raw_len: 0,
        joined: None,
    };
    let login = tokio::time::timeout(shared.cfg.login_timeout.0, login(&mut client, &shared));
    let session = match login.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared
                .counters
                .login_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(peer = %peer, error = %e, "login failed");
            return;
        }
        Err(_) => {
            tracing::info!(peer = %peer, error = %ConnError::LoginTimeout, "login failed");
            return;
        }
    };
    shared.counters.logins.fetch_add(1, Ordering::Relaxed);
    let app = session.tenant.name.to_string();
    let mut session = session;
    if let Err(e) = session.serve(&mut client, shutdown).await {
        match e {
            ConnError::Backend(_) => {
                shared
                    .counters
                    .backend_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(app = %app, peer = %peer, error = %e, "session ended")
            }
            _ => tracing::debug!(app = %app, peer = %peer, error = %e, "session ended"),
        }
    }
}

/// A logged-in app's session.
struct Session {
    shared: Arc<Shared>,
    tenant: Tenant,
    token: TokenHash,
    scramble: [u8; 20],
    caps: u32,
    policy: policy::Session,
    backend: BackendConn,
    _slot: AppSlot,
    /// Prepared statement ids and whether each writes.
    stmts: HashMap<u32, bool>,
    /// Watches `statement_timeout` while a response is awaited.
    timer: DeadlineTimer,
}

/// One timer for all of a session's statement deadlines. Rather than registering a timer with
/// the runtime for every statement and removing it when the answer comes (nearly always long
/// before), the timer is armed once and moved only when it fires: it may go off before the
/// deadline it now guards (it was set for an earlier statement, whose deadline came sooner),
/// and is then moved on to that deadline. Deadlines only grow within a session, except after
/// a kill, when the timer is pulled in.
#[derive(Default)]
struct DeadlineTimer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineTimer {
    /// Awaits `read` until `deadline`: its output, or `None` when the deadline passed first.
    async fn read_until<F: Future>(&mut self, deadline: Instant, read: F) -> Option<F::Output> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        tokio::pin!(read);
        loop {
            tokio::select! {
                biased;
                out = &mut read => return Some(out),
                () = sleep.as_mut() => {
                    if sleep.deadline() >= deadline {
                        return None;
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// Whether a statement adds data (refused while the database is past `db_bytes`).
fn writes(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Insert
            | Kind::Update
            | Kind::Replace
            | Kind::CreateTable
            | Kind::AlterTable
            | Kind::CreateIndex
            | Kind::CreateView
            | Kind::RenameTable
            | Kind::Execute
    )
}

/// Why a session stops waiting for its client's next command.
enum Interruption {
    Shutdown,
    /// The tenants changed: the session checks its app and token, then waits again with these.
    TenantsChanged(ShutdownSignal, watch::Receiver<u64>),
}

async fn interruption(
    mut shutdown: ShutdownSignal,
    mut tenants: watch::Receiver<u64>,
) -> Interruption {
    tokio::select! {
        _ = shutdown.recv() => Interruption::Shutdown,
        changed = tenants.changed() => match changed {
            Ok(()) => Interruption::TenantsChanged(shutdown, tenants),
            // The tenants can no longer change.
            Err(_) => {
                shutdown.recv().await;
                Interruption::Shutdown
            }
        },
    }
}

/// What to do with one command.
enum Step {
    Forward(Expect),
    Answer(Refuse),
    Quit,
}

impl Session {
    async fn serve(
        &mut self,
        client: &mut Client,
        shutdown: ShutdownSignal,
    ) -> Result<(), ConnError> {
        let limit = self.shared.cfg.max_packet.0 as usize;
        // Armed once and kept across commands (not re-registered with the channels for each).
        let interrupt = interruption(shutdown, self.shared.tenants.subscribe());
        tokio::pin!(interrupt);
        loop {
            let last_seq = tokio::select! {
                biased;
                i = &mut interrupt => match i {
                    Interruption::Shutdown => return Ok(()),
                    Interruption::TenantsChanged(shutdown, tenants) => {
                        if self.revoked() {
                            tracing::info!(app = %self.tenant.name, "token revoked or app removed; closing the session");
                            return Ok(());
                        }
                        interrupt.set(interruption(shutdown, tenants));
                        continue;
                    }
                },
                p = client.read_command(limit) => p,
            };
            let last_seq = match last_seq {
                Ok(Some(s)) => s,
                Ok(None) => return Ok(()),
                Err(ConnError::Protocol(ProtocolError::TooLarge { .. })) => {
                    client.refuse(0, &Refuse::PacketTooLarge).await?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            self.shared
                .counters
                .commands
                .fetch_add(1, Ordering::Relaxed);
            let reply_seq = last_seq.wrapping_add(1);
            let command = match Command::decode(client.payload(), self.caps) {
                Ok(c) => c,
                Err(_) => {
                    client.refuse(reply_seq, &Refuse::Malformed).await?;
                    continue;
                }
            };
            let (step, prepared) = match command {
                Command::ChangeUser(cu) => {
                    self.change_user(client, cu, reply_seq).await?;
                    continue;
                }
                Command::ResetConnection => {
                    self.reset_connection(client).await?;
                    continue;
                }
                other => self.decide(other),
            };
            match step {
                Step::Quit => return Ok(()),
                Step::Answer(r) => {
                    self.shared
                        .counters
                        .refusals
                        .fetch_add(1, Ordering::Relaxed);
                    if let Refuse::Policy { rule, message, .. } = &r {
                        tracing::warn!(app = %self.tenant.name, rule, %message, sql = %snippet(client.payload().get(1..).unwrap_or_default()), "statement refused");
                    } else {
                        tracing::warn!(app = %self.tenant.name, refusal = ?r, "command refused");
                    }
                    client.refuse(reply_seq, &r).await?;
                }
                Step::Forward(expect) => {
                    self.backend
                        .stream
                        .write_all(&client.buf[..client.raw_len])
                        .await?;
                    let t = self.relay(client, expect).await?;
                    if !t.saw_error() {
                        match (expect, prepared) {
                            (Expect::ResultSets, Some((Some(mode), _))) => {
                                self.policy.sql_mode = mode;
                            }
                            (Expect::Prepare, Some((_, writes))) => {
                                if let Some(id) = t.prepared_id() {
                                    self.stmts.insert(id, writes);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }

    /// Whether the session's app or token is gone from the tenants.
    fn revoked(&self) -> bool {
        match self.shared.tenant(self.tenant.name.as_str()) {
            Some(t) => !t
                .tokens
                .iter()
                .any(|h| h.mysql_native == self.token.mysql_native),
            None => true,
        }
    }

    /// The policy's and limits' decision on one command, and for an allowed statement the
    /// sql_mode it sets and whether it writes.
    fn decide(&mut self, command: Command<'_>) -> (Step, Option<(Option<SqlMode>, bool)>) {
        match command {
            Command::Quit => (Step::Quit, None),
            Command::Query(sql) => match self.check_sql(sql) {
                Ok(info) => (Step::Forward(Expect::ResultSets), Some(info)),
                Err(r) => (Step::Answer(r), None),
            },
            Command::StmtPrepare(sql) => match self.check_sql(sql) {
                Ok((_, w)) => (Step::Forward(Expect::Prepare), Some((None, w))),
                Err(r) => (Step::Answer(r), None),
            },
            Command::StmtExecute { stmt_id, flags } => {
                if flags & 0x0F != 0 {
                    return (Step::Answer(Refuse::Cursor), None);
                }
                if self.stmts.get(&stmt_id).copied().unwrap_or(false) {
                    if let Some(r) = self.quota_refusal() {
                        return (Step::Answer(r), None);
                    }
                }
                (Step::Forward(Expect::ResultSets), None)
            }
            Command::StmtClose { stmt_id } => {
                self.stmts.remove(&stmt_id);
                (Step::Forward(Expect::Nothing), None)
            }
            Command::StmtSendLongData { .. } => (Step::Forward(Expect::Nothing), None),
            Command::StmtReset { .. } | Command::Ping | Command::SetOption(_) => {
                (Step::Forward(Expect::OnePacket), None)
            }
            Command::StmtFetch { .. } => (Step::Answer(Refuse::Cursor), None),
            Command::InitDb(db) => {
                if db == self.policy.database.as_bytes() {
                    (Step::Forward(Expect::OnePacket), None)
                } else {
                    (Step::Answer(self.other_database(db)), None)
                }
            }
            Command::FieldList { .. } => (Step::Forward(Expect::FieldList), None),
            Command::Refused { name, .. } => (Step::Answer(Refuse::Command(name)), None),
            Command::ChangeUser(_) | Command::ResetConnection => (Step::Quit, None),
        }
    }

    fn other_database(&self, db: &[u8]) -> Refuse {
        Refuse::Database {
            user: self.tenant.name.to_string(),
            database: String::from_utf8_lossy(db).into_owned(),
        }
    }

    /// Runs the policy (and the db_bytes limit) on a statement batch.
    fn check_sql(&self, sql: &[u8]) -> Result<(Option<SqlMode>, bool), Refuse> {
        let statements = policy::statements(&self.policy, sql).map_err(|r| match r.decision() {
            policy::Decision::Refuse {
                code,
                rule,
                message,
                ..
            } => Refuse::Policy {
                code,
                rule,
                message,
            },
            policy::Decision::Allow => Refuse::Malformed,
        })?;
        let write = statements.iter().any(|s| writes(s.kind));
        if write {
            if let Some(r) = self.quota_refusal() {
                return Err(r);
            }
        }
        Ok((statements.last().and_then(|s| s.new_sql_mode), write))
    }

    fn quota_refusal(&self) -> Option<Refuse> {
        let (used, limit) = self.shared.over_quota(&self.tenant)?;
        Some(Refuse::DbFull {
            database: self.policy.database.clone(),
            used,
            limit,
        })
    }

    /// Streams the backend's response to the client until it ends. Past `max_result_bytes`
    /// the client gets an ERR and the rest is killed and drained; past `statement_timeout`
    /// (plus `kill_grace`) the query is killed on the backend.
    async fn relay(&mut self, client: &mut Client, expect: Expect) -> Result<Tracker, ConnError> {
        let deprecate = self.caps & caps::DEPRECATE_EOF != 0;
        let limit = Some(self.tenant.max_result_bytes.0).filter(|&l| l > 0);
        let mut t = Tracker::new(expect, deprecate, limit);
        if t.is_done() {
            return Ok(t);
        }
        let timeout = self.tenant.statement_timeout.0;
        let mut deadline =
            (!timeout.is_zero()).then(|| Instant::now() + timeout + self.shared.cfg.kill_grace.0);
        let mut killed = false;
        let mut aborted = false;
        loop {
            if !self.backend.buf.is_empty() {
                let p = t.feed(&self.backend.buf)?;
                if !aborted && p.consumed > 0 {
                    client
                        .stream
                        .write_all(&self.backend.buf[..p.consumed])
                        .await?;
                }
                self.backend.buf.drain(..p.consumed);
                if p.done {
                    client.stream.flush().await?;
                    return Ok(t);
                }
                if p.over_limit {
                    self.shared
                        .counters
                        .results_aborted
                        .fetch_add(1, Ordering::Relaxed);
                    let r = Refuse::ResultTooLarge {
                        limit: limit.unwrap_or(0),
                    };
                    tracing::warn!(app = %self.tenant.name, "result over max_result_bytes; cut off");
                    client.refuse(t.next_seq(), &r).await?;
                    aborted = true;
                    t.clear_limit();
                    kill_query(&self.shared, self.backend.connection_id).await;
                    killed = true;
                    deadline = Some(Instant::now() + AFTER_KILL);
                    continue;
                }
            }
            self.backend.buf.reserve(64 << 10);
            let read = self.backend.stream.read_buf(&mut self.backend.buf);
            let n = match deadline {
                None => read.await.map_err(BackendError::Io)?,
                Some(d) => match self.timer.read_until(d, read).await {
                    Some(r) => r.map_err(BackendError::Io)?,
                    None if killed => return Err(BackendError::Timeout(AFTER_KILL).into()),
                    None => {
                        tracing::warn!(app = %self.tenant.name, "statement past statement_timeout; killing it");
                        kill_query(&self.shared, self.backend.connection_id).await;
                        killed = true;
                        deadline = Some(Instant::now() + AFTER_KILL);
                        continue;
                    }
                },
            };
            if n == 0 {
                return Err(BackendError::Closed.into());
            }
        }
    }

    /// `COM_RESET_CONNECTION`: reset the backend session, then put the limits back on it.
    async fn reset_connection(&mut self, client: &mut Client) -> Result<(), ConnError> {
        self.backend.send_command(&[COM_RESET_CONNECTION]).await?;
        let p = self.backend.read().await?;
        if p.payload.first() == Some(&0x00) {
            self.policy.sql_mode = setup_backend(&mut self.backend, &self.tenant).await?;
            self.stmts.clear();
        }
        client.send(1, &p.payload).await
    }

    /// `COM_CHANGE_USER`: authenticate again (possibly as another app) and start a clean
    /// backend session. A failure closes the connection, as MySQL does.
    async fn change_user(
        &mut self,
        client: &mut Client,
        cu: ChangeUser,
        seq: u8,
    ) -> Result<(), ConnError> {
        let user = String::from_utf8_lossy(&cu.username).into_owned();
        let scramble = self.scramble;
        let (tenant, token, seq) = authenticate(
            client,
            &self.shared,
            &scramble,
            &user,
            (cu.auth_response, cu.auth_plugin),
            seq,
        )
        .await?;
        let collation = match cu.collation {
            Some(c) => u8::try_from(c).unwrap_or(0),
            None => 45,
        };
        let database = Some(&cu.database[..]).filter(|d| !d.is_empty());
        let mut fresh = open_session(
            client,
            &self.shared,
            tenant,
            token,
            (self.caps, collation, seq),
            database,
        )
        .await?;
        fresh.scramble = scramble;
        *self = fresh;
        Ok(())
    }
}

/// The start of a statement for the operator's log.
fn snippet(sql: &[u8]) -> String {
    let s = String::from_utf8_lossy(&sql[..sql.len().min(200)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
