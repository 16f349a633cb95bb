//! The one place that turns the proxy's own refusals and failures into MySQL ERR packets.
//! Internal details (backend errors, I/O) are logged, never echoed to the app.

use crate::protocol::reply::Err;

/// Something the proxy answers with an error packet itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refuse {
    /// The policy refused a statement.
    Policy {
        code: u16,
        rule: &'static str,
        message: String,
    },
    /// A command the proxy never forwards.
    Command(&'static str),
    /// `COM_INIT_DB`, `COM_CHANGE_USER` or the handshake named another database.
    Database { user: String, database: String },
    /// Login failed (unknown app or wrong token: the same answer for both).
    Access { user: String },
    /// The connection character set is not UTF-8.
    Charset(u8),
    /// The app has `max_connections` sessions open.
    TooManyConnections { user: String, limit: u32 },
    /// A write while the database is past `db_bytes`.
    DbFull {
        database: String,
        used: u64,
        limit: u64,
    },
    /// A result larger than `max_result_bytes`.
    ResultTooLarge { limit: u64 },
    /// A server-side cursor was asked for.
    Cursor,
    /// The client asked for TLS, which this proxy does not offer.
    NoTls,
    /// `require_tls` is set and the client logged in without TLS.
    TlsRequired,
    /// A command packet over `max_packet`.
    PacketTooLarge,
    /// The backend could not be reached or refused the app's account.
    Backend,
    /// A malformed packet.
    Malformed,
}

impl Refuse {
    /// The ERR packet for this refusal.
    pub fn to_err(&self) -> Err {
        match self {
            Refuse::Policy {
                code,
                rule: _,
                message,
            } => Err::new(*code, "42000", message.clone()),
            Refuse::Command(name) => Err::new(
                1227,
                "42000",
                format!("Access denied; {name} is not forwarded by the proxy (query-proxy rule server-admin)"),
            ),
            Refuse::Database { user, database } => Err::new(
                1044,
                "42000",
                format!(
                    "Access denied for user '{user}' to database '{}' (query-proxy rule database-admin)",
                    printable(database)
                ),
            ),
            Refuse::Access { user } => Err::new(
                1045,
                "28000",
                format!(
                    "Access denied for user '{}' (using password: YES)",
                    printable(user)
                ),
            ),
            Refuse::Charset(id) => Err::new(
                1115,
                "42000",
                format!("Unknown character set: collation {id}; the query proxy accepts utf8mb4 or utf8 connections only"),
            ),
            Refuse::TooManyConnections { user, limit } => Err::new(
                1203,
                "42000",
                format!("User {user} already has more than 'max_user_connections' active connections (limit {limit})"),
            ),
            Refuse::DbFull {
                database,
                used,
                limit,
            } => Err::new(
                1114,
                "HY000",
                format!("The database '{database}' is full: {used} bytes used of its {limit}-byte limit (db_bytes); writes are refused until data is deleted"),
            ),
            Refuse::ResultTooLarge { limit } => Err::new(
                1105,
                "HY000",
                format!("The result is larger than this app's limit of {limit} bytes (max_result_bytes); it was cut off"),
            ),
            Refuse::Cursor => Err::new(
                1235,
                "42000",
                "This version of the query proxy doesn't yet support server-side cursors",
            ),
            Refuse::NoTls => Err::new(
                1045,
                "28000",
                "TLS is not enabled on this query proxy; connect without TLS (ssl-mode=DISABLED or PREFERRED)",
            ),
            Refuse::TlsRequired => Err::new(
                1045,
                "28000",
                "This query proxy requires TLS; connect with TLS (ssl-mode=REQUIRED)",
            ),
            Refuse::PacketTooLarge => Err::new(
                1153,
                "08S01",
                "Got a packet bigger than the query proxy's max_packet",
            ),
            Refuse::Backend => Err::new(
                1105,
                "HY000",
                "The app's database is unavailable right now (see the query proxy's log)",
            ),
            Refuse::Malformed => Err::new(1047, "08S01", "Malformed packet"),
        }
    }
}

/// `s` with control and non-UTF-8 bytes replaced, at most 64 characters, for messages.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
