//! The query proxy's policy: one pure function, [`check`], decides whether a batch of SQL an
//! app sent may reach the backend. No I/O; the protocol server calls it and answers a refusal
//! itself. `docs/protocols/query-policy.md` is the user-facing description of these rules.

mod classify;
mod invariants;
pub mod lexer;
mod scan;
mod set;
#[cfg(test)]
mod tests;

pub use classify::{classify, Kind, Objects, Statement, TableRef};
#[doc(hidden)]
pub use invariants::check_invariants;

/// The sql_mode flags that change how MariaDB reads a statement's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqlMode {
    /// `ANSI_QUOTES` (also implied by `ANSI`): `"x"` is an identifier, not a string.
    pub ansi_quotes: bool,
    /// `NO_BACKSLASH_ESCAPES`: `\` is an ordinary character inside strings.
    pub no_backslash_escapes: bool,
}

impl SqlMode {
    /// The flags a `sql_mode` value (comma-separated mode names, any case) sets.
    pub fn parse(value: &str) -> SqlMode {
        let mut mode = SqlMode::default();
        for name in value.split(',').map(str::trim) {
            if name.eq_ignore_ascii_case("ANSI_QUOTES") || name.eq_ignore_ascii_case("ANSI") {
                mode.ansi_quotes = true;
            }
            if name.eq_ignore_ascii_case("NO_BACKSLASH_ESCAPES") {
                mode.no_backslash_escapes = true;
            }
        }
        mode
    }
}

/// What the policy knows about the connection a statement arrives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The app's own database, e.g. `app_guestbook`: the only one it may touch.
    pub database: String,
    /// The session's current sql_mode flags.
    pub sql_mode: SqlMode,
}

impl Session {
    /// A session on `database` with the default sql_mode flags (both off).
    pub fn new(database: impl Into<String>) -> Session {
        Session {
            database: database.into(),
            sql_mode: SqlMode::default(),
        }
    }
}

/// The verdict on one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every statement may be forwarded to the backend.
    Allow,
    /// Answer a MySQL error packet with these fields and forward nothing.
    Refuse {
        /// MySQL error number: 1142, 1044, 1227 or 1064.
        code: u16,
        /// SQLSTATE, always `42000`.
        sqlstate: &'static str,
        /// The rule's name as `docs/protocols/query-policy.md` lists it, e.g. `file-access`.
        rule: &'static str,
        /// A message for the app that names the rule and the object.
        message: String,
    },
}

/// The rules a refusal can name; each has its MySQL error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The text cannot be read the way the server would with certainty.
    Lexical,
    /// A client-side command (`DELIMITER`) reached the server.
    ClientCommand,
    /// A statement the policy does not know; refused by default.
    UnknownStatement,
    /// A database other than the app's own.
    OtherDatabase,
    /// `mysql`, `performance_schema` or `sys`.
    SystemDatabase,
    /// `information_schema` beyond the app's own metadata.
    InformationSchema,
    /// `CREATE`/`ALTER`/`DROP DATABASE`, `USE` of another database.
    DatabaseAdmin,
    /// Anything that reads or writes the server's file system.
    FileAccess,
    /// A storage engine not on the allow-list.
    StorageEngine,
    /// Accounts, roles, passwords, grants.
    AccountAdmin,
    /// `SET GLOBAL`, `@@global.`, `SET PERSIST`.
    GlobalVariable,
    /// A variable that would lift the app's limits.
    LimitVariable,
    /// A session variable (or value) not on the allow-list.
    SessionVariable,
    /// A `sql_mode` change the policy cannot follow.
    SqlModeChange,
    /// `SHUTDOWN`, `KILL`, `FLUSH`, `RESET`, `SHOW PROCESSLIST` and other administration.
    ServerAdmin,
    /// Plugins and user-defined functions.
    Plugin,
    /// Replication and binary logs.
    Replication,
    /// Stored procedures, functions, triggers, events, `DEFINER`.
    StoredProgram,
    /// `PREPARE … FROM @var`, `EXECUTE IMMEDIATE`, nested `PREPARE`.
    DynamicSql,
    /// `GET_LOCK()` and friends: their names are shared by every app on the server.
    ServerWideLock,
    /// A `SHOW` of something that is not the app's own.
    Show,
}

impl Rule {
    /// The rule's name in refusals and in the documentation.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Lexical => "lexical",
            Rule::ClientCommand => "client-command",
            Rule::UnknownStatement => "unknown-statement",
            Rule::OtherDatabase => "other-database",
            Rule::SystemDatabase => "system-database",
            Rule::InformationSchema => "information-schema",
            Rule::DatabaseAdmin => "database-admin",
            Rule::FileAccess => "file-access",
            Rule::StorageEngine => "storage-engine",
            Rule::AccountAdmin => "account-admin",
            Rule::GlobalVariable => "global-variable",
            Rule::LimitVariable => "limit-variable",
            Rule::SessionVariable => "session-variable",
            Rule::SqlModeChange => "sql-mode",
            Rule::ServerAdmin => "server-admin",
            Rule::Plugin => "plugin",
            Rule::Replication => "replication",
            Rule::StoredProgram => "stored-program",
            Rule::DynamicSql => "dynamic-sql",
            Rule::ServerWideLock => "server-wide-lock",
            Rule::Show => "show",
        }
    }

    /// The MySQL error number a refusal under this rule carries.
    pub fn code(self) -> u16 {
        match self {
            Rule::Lexical | Rule::ClientCommand => 1064,
            Rule::OtherDatabase | Rule::SystemDatabase | Rule::DatabaseAdmin => 1044,
            Rule::InformationSchema => 1142,
            _ => 1227,
        }
    }
}

/// Why one statement was refused (the classifier's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} (query-proxy rule {})", rule.name())]
pub struct Refusal {
    /// The rule that refused it.
    pub rule: Rule,
    /// What exactly was refused, e.g. `database 'mysql'`.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(rule: Rule, detail: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            detail: detail.into(),
        }
    }

    /// The [`Decision::Refuse`] this refusal answers.
    pub fn decision(&self) -> Decision {
        Decision::Refuse {
            code: self.rule.code(),
            sqlstate: "42000",
            rule: self.rule.name(),
            message: self.to_string(),
        }
    }
}

/// Decide on a batch of SQL text (one statement or several separated by `;`): allowed only
/// when every statement is. The same as [`check_bytes`] on the text's bytes.
pub fn check(session: &Session, sql: &str) -> Decision {
    check_bytes(session, sql.as_bytes())
}

/// [`check`] on raw query bytes, as they arrive in `COM_QUERY` (the proxy only allows
/// charsets in which every byte from 0x80 up belongs to a character, never to an ASCII quote or
/// backslash).
pub fn check_bytes(session: &Session, sql: &[u8]) -> Decision {
    match statements(session, sql) {
        Ok(_) => Decision::Allow,
        Err(refusal) => refusal.decision(),
    }
}

/// Classify every statement of a batch, or say why the batch is refused. A statement that
/// changes `sql_mode` must be the batch's last, because the statements after it would be read
/// under a mode the proxy has not seen take effect.
pub fn statements(session: &Session, sql: &[u8]) -> Result<Vec<Statement>, Refusal> {
    statements_nested(session, sql, 0)
}

/// [`statements`] of text nested `nesting` deep (prepared text is 1 deep).
pub(crate) fn statements_nested(
    session: &Session,
    sql: &[u8],
    nesting: usize,
) -> Result<Vec<Statement>, Refusal> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < sql.len() {
        let lexed = lexer::lex_statement(sql, pos, session.sql_mode).map_err(lexical)?;
        if out
            .last()
            .is_some_and(|s: &Statement| s.new_sql_mode.is_some())
            && !lexed.tokens.is_empty()
        {
            return Err(Refusal::new(
                Rule::SqlModeChange,
                "a statement that sets sql_mode must end its batch",
            ));
        }
        let statement = if lexed.tokens.is_empty() {
            None
        } else {
            Some(classify::classify_nested(session, &lexed.tokens, nesting)?)
        };
        every_server_version(session, sql, pos, &lexed, statement.as_ref(), nesting)?;
        pos = lexed.end;
        out.extend(statement);
    }
    Ok(out)
}

/// Most versioned comments a statement may hold (each adds a reading to check).
const MAX_VERSIONS: usize = 8;

fn lexical(e: lexer::LexError) -> Refusal {
    Refusal::new(Rule::Lexical, e.to_string())
}

/// A versioned comment (`/*!50100 …*/`, `/*M!100100 …*/`) is code only on servers at least
/// that new, so the statement is read once per version threshold it holds, and every reading
/// must end at the same place and be allowed in the same way as the all-code one.
fn every_server_version(
    session: &Session,
    sql: &[u8],
    pos: usize,
    lexed: &lexer::Lexed,
    statement: Option<&Statement>,
    nesting: usize,
) -> Result<(), Refusal> {
    let mut versions = lexed.versions.clone();
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > MAX_VERSIONS {
        return Err(Refusal::new(Rule::Lexical, "too many version comments"));
    }
    for version in versions {
        let older = lexer::lex_statement_for(sql, pos, session.sql_mode, version.saturating_sub(1))
            .map_err(lexical)?;
        if older.end != lexed.end {
            return Err(Refusal::new(
                Rule::Lexical,
                "a version comment changes where the statement ends",
            ));
        }
        let reading = if older.tokens.is_empty() {
            None
        } else {
            Some(classify::classify_nested(session, &older.tokens, nesting)?)
        };
        if reading.and_then(|s| s.new_sql_mode) != statement.and_then(|s| s.new_sql_mode) {
            return Err(Refusal::new(
                Rule::SqlModeChange,
                "a version comment changes the sql_mode a statement sets",
            ));
        }
    }
    Ok(())
}
