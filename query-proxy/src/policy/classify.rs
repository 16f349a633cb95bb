//! Maps one lexed statement to its [`Kind`] and the objects it touches, refusing every family
//! the policy does not allow and anything it cannot place in a family (default deny).

use super::lexer::Token;
use super::scan::{self, is_system_database};
use super::{set, Refusal, Rule, Session, SqlMode};

/// How deep `EXPLAIN`, `SET STATEMENT … FOR` and `PREPARE` may nest statements.
const MAX_NESTING: usize = 3;

/// The allowed families of statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SELECT`, `WITH … SELECT`, `VALUES`.
    Select,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `REPLACE`.
    Replace,
    /// `CREATE [TEMPORARY] TABLE`.
    CreateTable,
    /// `ALTER TABLE`.
    AlterTable,
    /// `DROP [TEMPORARY] TABLE`.
    DropTable,
    /// `TRUNCATE [TABLE]`.
    TruncateTable,
    /// `RENAME TABLE`.
    RenameTable,
    /// `CREATE … INDEX`.
    CreateIndex,
    /// `DROP INDEX`.
    DropIndex,
    /// `CREATE VIEW`, `ALTER VIEW`.
    CreateView,
    /// `DROP VIEW`.
    DropView,
    /// `LOCK TABLES`.
    LockTables,
    /// `UNLOCK TABLES`.
    UnlockTables,
    /// `START TRANSACTION`, `BEGIN`, `COMMIT`, `ROLLBACK`.
    Transaction,
    /// `SAVEPOINT`, `RELEASE SAVEPOINT` (and `ROLLBACK TO` counts as a transaction).
    Savepoint,
    /// `SET` of user variables, allowed session variables, `NAMES`, `TRANSACTION`, and
    /// `SET STATEMENT … FOR` (whose inner statement is classified too).
    Set,
    /// `SHOW` of the app's own objects and session.
    Show,
    /// `DESCRIBE`/`DESC`/`EXPLAIN` of a table or an allowed statement.
    Describe,
    /// `USE` of the app's own database.
    Use,
    /// `DO expr`.
    Do,
    /// `PREPARE name FROM '…'` of an allowed statement.
    Prepare,
    /// `EXECUTE name [USING …]`.
    Execute,
    /// `DEALLOCATE`/`DROP PREPARE`.
    Deallocate,
}

/// A table a statement names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The database qualifier, if written.
    pub database: Option<String>,
    /// The table (or view) name.
    pub name: String,
}

/// Everything a statement names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    /// Databases named explicitly (as qualifiers or in `USE`/`SHOW … FROM`).
    pub databases: Vec<String>,
    /// Tables named in table positions, and every qualified table.
    pub tables: Vec<TableRef>,
    /// Functions called, as written.
    pub functions: Vec<String>,
}

/// One classified, allowed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its family.
    pub kind: Kind,
    /// What it names (for `SET STATEMENT … FOR`, `EXPLAIN` and `PREPARE`, including the
    /// inner statement's objects).
    pub objects: Objects,
    /// The sql_mode flags this statement leaves the session in, if it sets `sql_mode`.
    pub new_sql_mode: Option<SqlMode>,
}

/// Classify one statement's tokens (non-empty, without its `;`) and check its objects against
/// the session's database; a refusal says which rule stopped it.
pub fn classify(session: &Session, tokens: &[Token]) -> Result<Statement, Refusal> {
    classify_nested(session, tokens, 0)
}

fn upper(tokens: &[Token], i: usize) -> String {
    match tokens.get(i) {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => String::new(),
    }
}

fn refuse<T>(rule: Rule, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(rule, detail))
}

pub(super) fn classify_nested(
    session: &Session,
    tokens: &[Token],
    nesting: usize,
) -> Result<Statement, Refusal> {
    if nesting > MAX_NESTING {
        return refuse(Rule::UnknownStatement, "statements nested too deeply");
    }
    let mut new_sql_mode = None;
    let mut inner: Option<Statement> = None;
    let start = tokens.iter().take_while(|t| t.is_punct(b'(')).count();
    let first = upper(tokens, start);
    let second = upper(tokens, start + 1);
    if start > 0 && !matches!(first.as_str(), "SELECT" | "WITH" | "VALUES") {
        return refuse(Rule::UnknownStatement, "unrecognised statement");
    }
    let kind = match first.as_str() {
        "SELECT" | "WITH" | "VALUES" => Kind::Select,
        "INSERT" => Kind::Insert,
        "REPLACE" => Kind::Replace,
        "UPDATE" => Kind::Update,
        "DELETE" => Kind::Delete,
        "CREATE" => create_kind(tokens)?,
        "ALTER" => alter_kind(tokens)?,
        "DROP" => drop_kind(tokens)?,
        "TRUNCATE" => Kind::TruncateTable,
        "RENAME" if matches!(second.as_str(), "TABLE" | "TABLES") => Kind::RenameTable,
        "RENAME" if second == "USER" => return refuse(Rule::AccountAdmin, "RENAME USER"),
        "LOCK" if matches!(second.as_str(), "TABLE" | "TABLES") => Kind::LockTables,
        "UNLOCK" if matches!(second.as_str(), "TABLE" | "TABLES") => Kind::UnlockTables,
        "START" if second == "TRANSACTION" => Kind::Transaction,
        "BEGIN" if tokens.len() == 1 || (tokens.len() == 2 && second == "WORK") => {
            Kind::Transaction
        }
        "BEGIN" => return refuse(Rule::StoredProgram, "compound statements (BEGIN … END)"),
        "COMMIT" | "ROLLBACK" => Kind::Transaction,
        "SAVEPOINT" => Kind::Savepoint,
        "RELEASE" if second == "SAVEPOINT" => Kind::Savepoint,
        "SET" => {
            let outcome = set::classify_set(session, tokens, nesting)?;
            new_sql_mode = outcome.new_sql_mode;
            inner = outcome.inner;
            Kind::Set
        }
        "SHOW" => {
            show(session, tokens)?;
            Kind::Show
        }
        "DESCRIBE" | "DESC" | "EXPLAIN" => {
            inner = describe(session, tokens, nesting)?;
            Kind::Describe
        }
        "USE" => {
            match (tokens.get(1).and_then(Token::name), tokens.len()) {
                (Some(db), 2) if db == session.database => {}
                (Some(db), 2) => {
                    return refuse(Rule::DatabaseAdmin, format!("USE of database '{db}'"))
                }
                _ => return refuse(Rule::UnknownStatement, "malformed USE"),
            }
            Kind::Use
        }
        "DO" => Kind::Do,
        "PREPARE" => {
            inner = Some(prepare(session, tokens, nesting)?);
            Kind::Prepare
        }
        "EXECUTE" if second == "IMMEDIATE" => {
            return refuse(Rule::DynamicSql, "EXECUTE IMMEDIATE cannot be checked")
        }
        "EXECUTE" if nesting == 0 => Kind::Execute,
        "DEALLOCATE" if second == "PREPARE" && nesting == 0 => Kind::Deallocate,
        "EXECUTE" | "DEALLOCATE" => {
            return refuse(Rule::DynamicSql, "prepared statements inside prepared text")
        }
        other => return refuse_family(other, &second),
    };
    if kind == Kind::Deallocate && nesting > 0 {
        return refuse(Rule::DynamicSql, "prepared statements inside prepared text");
    }
    if matches!(kind, Kind::CreateTable | Kind::AlterTable) {
        table_options(tokens, kind)?;
    }
    let mut objects = scan::scan(tokens, kind)?;
    scan::check_functions(&objects)?;
    check_databases(session, &objects, tokens)?;
    if let Some(inner) = inner {
        objects.databases.extend(inner.objects.databases);
        objects.tables.extend(inner.objects.tables);
        objects.functions.extend(inner.objects.functions);
    }
    Ok(Statement {
        kind,
        objects,
        new_sql_mode,
    })
}

/// The refused families, each under its own rule; anything else is unknown.
fn refuse_family<T>(first: &str, second: &str) -> Result<T, Refusal> {
    let what = format!("{first} {second}").trim().to_string();
    let rule = match first {
        "LOAD" if matches!(second, "DATA" | "XML") => Rule::FileAccess,
        "GRANT" | "REVOKE" => Rule::AccountAdmin,
        "INSTALL" | "UNINSTALL" => Rule::Plugin,
        "CHANGE" | "STOP" | "BINLOG" | "PURGE" => Rule::Replication,
        "START" if matches!(second, "SLAVE" | "REPLICA" | "ALL") => Rule::Replication,
        "RESET" if matches!(second, "MASTER" | "SLAVE" | "REPLICA" | "BINARY") => Rule::Replication,
        "CALL" => Rule::StoredProgram,
        "DELIMITER" => Rule::ClientCommand,
        "SHUTDOWN" | "KILL" | "FLUSH" | "RESET" | "CACHE" | "LOAD" | "BACKUP" | "XA" | "LOCK"
        | "UNLOCK" | "HANDLER" | "OPTIMIZE" | "REPAIR" | "CHECK" | "CHECKSUM" | "ANALYZE"
        | "HELP" => Rule::ServerAdmin,
        _ => Rule::UnknownStatement,
    };
    let detail = match rule {
        Rule::UnknownStatement => "unrecognised statement".to_string(),
        Rule::ClientCommand => "DELIMITER is a command of the mysql client, not SQL".to_string(),
        _ => format!("{what} is not allowed"),
    };
    refuse(rule, detail)
}

/// Index of the first word after `from` that is not one of `skip`.
fn skip_words(tokens: &[Token], mut from: usize, skip: &[&str]) -> usize {
    while let Some(Token::Word(w)) = tokens.get(from) {
        let u = w.to_ascii_uppercase();
        if !skip.contains(&u.as_str()) {
            break;
        }
        from += 1;
        // `ALGORITHM = MERGE`, `SQL SECURITY INVOKER`: skip their values too.
        if u == "ALGORITHM" {
            from += 2;
        } else if u == "SECURITY" {
            from += 1;
        }
    }
    from
}

fn create_kind(tokens: &[Token]) -> Result<Kind, Refusal> {
    let definer = tokens
        .windows(2)
        .any(|w| w[0].is_kw("DEFINER") && w[1].is_punct(b'='));
    if definer {
        return refuse(
            Rule::StoredProgram,
            "DEFINER clauses run code as another account",
        );
    }
    let at = skip_words(
        tokens,
        1,
        &[
            "OR",
            "REPLACE",
            "TEMPORARY",
            "UNIQUE",
            "FULLTEXT",
            "SPATIAL",
            "ONLINE",
            "OFFLINE",
            "ALGORITHM",
            "SQL",
            "SECURITY",
        ],
    );
    let what = upper(tokens, at);
    Ok(match what.as_str() {
        "TABLE" => Kind::CreateTable,
        "INDEX" => Kind::CreateIndex,
        "VIEW" => Kind::CreateView,
        "DATABASE" | "SCHEMA" => return refuse(Rule::DatabaseAdmin, "CREATE DATABASE"),
        "USER" | "ROLE" => return refuse(Rule::AccountAdmin, format!("CREATE {what}")),
        "FUNCTION" | "AGGREGATE" if tokens.iter().any(|t| t.is_kw("SONAME")) => {
            return refuse(Rule::Plugin, "user-defined functions (SONAME)")
        }
        "FUNCTION" | "AGGREGATE" | "PROCEDURE" | "TRIGGER" | "EVENT" | "PACKAGE" => {
            return refuse(Rule::StoredProgram, format!("CREATE {what}"))
        }
        "SERVER" => return refuse(Rule::ServerAdmin, "CREATE SERVER"),
        "TABLESPACE" | "LOGFILE" => return refuse(Rule::FileAccess, format!("CREATE {what}")),
        _ => return refuse(Rule::UnknownStatement, "unrecognised CREATE statement"),
    })
}

fn alter_kind(tokens: &[Token]) -> Result<Kind, Refusal> {
    let at = skip_words(
        tokens,
        1,
        &[
            "ONLINE",
            "OFFLINE",
            "IGNORE",
            "ALGORITHM",
            "SQL",
            "SECURITY",
        ],
    );
    let what = upper(tokens, at);
    Ok(match what.as_str() {
        "TABLE" => Kind::AlterTable,
        "VIEW" => Kind::CreateView,
        "DATABASE" | "SCHEMA" => return refuse(Rule::DatabaseAdmin, "ALTER DATABASE"),
        "USER" | "ROLE" => return refuse(Rule::AccountAdmin, format!("ALTER {what}")),
        "FUNCTION" | "PROCEDURE" | "EVENT" | "PACKAGE" => {
            return refuse(Rule::StoredProgram, format!("ALTER {what}"))
        }
        "SERVER" | "INSTANCE" => return refuse(Rule::ServerAdmin, format!("ALTER {what}")),
        "TABLESPACE" | "LOGFILE" => return refuse(Rule::FileAccess, format!("ALTER {what}")),
        _ => return refuse(Rule::UnknownStatement, "unrecognised ALTER statement"),
    })
}

fn drop_kind(tokens: &[Token]) -> Result<Kind, Refusal> {
    let at = skip_words(tokens, 1, &["TEMPORARY", "ONLINE", "OFFLINE"]);
    let what = upper(tokens, at);
    Ok(match what.as_str() {
        "TABLE" | "TABLES" => Kind::DropTable,
        "INDEX" => Kind::DropIndex,
        "VIEW" => Kind::DropView,
        "PREPARE" => Kind::Deallocate,
        "DATABASE" | "SCHEMA" => return refuse(Rule::DatabaseAdmin, "DROP DATABASE"),
        "USER" | "ROLE" => return refuse(Rule::AccountAdmin, format!("DROP {what}")),
        "FUNCTION" | "PROCEDURE" | "TRIGGER" | "EVENT" | "PACKAGE" => {
            return refuse(Rule::StoredProgram, format!("DROP {what}"))
        }
        "SERVER" => return refuse(Rule::ServerAdmin, "DROP SERVER"),
        "TABLESPACE" | "LOGFILE" => return refuse(Rule::FileAccess, format!("DROP {what}")),
        _ => return refuse(Rule::UnknownStatement, "unrecognised DROP statement"),
    })
}

/// Storage engines an app may use: none of them reaches files, other servers or other
/// databases (unlike CONNECT, FEDERATED, SPIDER, MERGE, CSV, S3, OQGRAPH).
pub(super) fn engine_allowed(name: &str) -> bool {
    ["InnoDB", "Aria", "MyISAM", "MEMORY", "HEAP"]
        .iter()
        .any(|e| e.eq_ignore_ascii_case(name))
}

/// Engines known to reach files, other servers or other databases, or to be unfit for apps;
/// refused even where `ENGINE` might be a column's name.
const KNOWN_ENGINES_REFUSED: &[&str] = &[
    "CONNECT",
    "FEDERATED",
    "FEDERATEDX",
    "SPIDER",
    "MERGE",
    "MRG_MYISAM",
    "MRG_ISAM",
    "CSV",
    "S3",
    "OQGRAPH",
    "SEQUENCE",
    "ARCHIVE",
    "BLACKHOLE",
    "ROCKSDB",
    "COLUMNSTORE",
    "MROONGA",
    "TOKUDB",
    "SPHINX",
    "SPHINXSE",
    "CASSANDRA",
    "PERFORMANCE_SCHEMA",
    "NDB",
    "NDBCLUSTER",
    "EXAMPLE",
    "XPAND",
];

/// Table options of `CREATE`/`ALTER TABLE` (and of their partitions). `ENGINE = x` and
/// `CREATE TABLE … ENGINE x` (outside the column list) must name an allowed engine; elsewhere
/// `ENGINE x` may be a column called `engine`, so only known engines are refused there.
fn table_options(tokens: &[Token], kind: Kind) -> Result<(), Refusal> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            _ => {}
        }
        let next = tokens.get(i + 1);
        let assigned = next.is_some_and(|t| t.is_punct(b'='));
        if t.is_kw("ENGINE") || (t.is_kw("TYPE") && assigned) {
            let at = if assigned { i + 2 } else { i + 1 };
            let name = match tokens.get(at) {
                Some(Token::Word(w) | Token::Ident(w)) => w.clone(),
                Some(Token::Str(s)) => String::from_utf8_lossy(s).into_owned(),
                _ => String::new(),
            };
            let strict = assigned || (depth == 0 && kind == Kind::CreateTable);
            let refused = if strict {
                !engine_allowed(&name)
            } else {
                KNOWN_ENGINES_REFUSED
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&name))
            };
            if refused {
                return refuse(Rule::StorageEngine, format!("storage engine '{name}'"));
            }
        }
        let merge_list = t.is_kw("UNION")
            && (assigned
                || next.is_some_and(|t| t.is_punct(b'('))
                    && !["SELECT", "WITH", "VALUES"]
                        .iter()
                        .any(|k| tokens.get(i + 2).is_some_and(|t| t.is_kw(k))));
        if merge_list {
            return refuse(Rule::StorageEngine, "MERGE tables (UNION=)");
        }
        if t.is_kw("CONNECTION")
            && next.is_some_and(|t| t.is_punct(b'=') || matches!(t, Token::Str(_)))
        {
            return refuse(Rule::StorageEngine, "CONNECTION= reaches another server");
        }
    }
    Ok(())
}

/// `information_schema` tables that describe a database's own objects; the backend's grants
/// then limit their rows to the app's database.
const INFORMATION_SCHEMA_TABLES: &[&str] = &[
    "TABLES",
    "COLUMNS",
    "STATISTICS",
    "KEY_COLUMN_USAGE",
    "REFERENTIAL_CONSTRAINTS",
    "TABLE_CONSTRAINTS",
    "CHECK_CONSTRAINTS",
    "VIEWS",
    "SCHEMATA",
    "PARTITIONS",
    "CHARACTER_SETS",
    "COLLATIONS",
    "COLLATION_CHARACTER_SET_APPLICABILITY",
    "ENGINES",
    "KEYWORDS",
    "SQL_FUNCTIONS",
    "SESSION_VARIABLES",
    "SESSION_STATUS",
];

fn check_databases(session: &Session, objects: &Objects, tokens: &[Token]) -> Result<(), Refusal> {
    let mut info = false;
    for db in &objects.databases {
        if *db == session.database {
            continue;
        }
        if db.eq_ignore_ascii_case("information_schema") {
            info = true;
            continue;
        }
        if is_system_database(db) {
            return refuse(Rule::SystemDatabase, format!("database '{db}'"));
        }
        return refuse(Rule::OtherDatabase, format!("database '{db}'"));
    }
    if !info {
        return Ok(());
    }
    for t in &objects.tables {
        let in_info = t
            .database
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case("information_schema"));
        if in_info
            && !INFORMATION_SCHEMA_TABLES
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&t.name))
        {
            return refuse(
                Rule::InformationSchema,
                format!(
                    "information_schema.{} is not about the app's own database",
                    t.name
                ),
            );
        }
    }
    schema_literals(session, tokens)
}

/// In a statement on `information_schema`, a string compared with a schema column must be the
/// app's own database: asking about another one is refused, not just answered empty.
fn schema_literals(session: &Session, tokens: &[Token]) -> Result<(), Refusal> {
    let is_schema_column = |t: &Token| {
        t.name().is_some_and(|n| {
            let u = n.to_ascii_uppercase();
            u.ends_with("SCHEMA") || u == "SCHEMA_NAME" || u == "DB"
        })
    };
    let check = |t: Option<&Token>| match t {
        Some(Token::Str(s)) if s != session.database.as_bytes() => refuse(
            Rule::InformationSchema,
            format!("information_schema about '{}'", String::from_utf8_lossy(s)),
        ),
        _ => Ok(()),
    };
    let is_operator = |t: &Token| {
        matches!(t, Token::Punct(b'=' | b'<' | b'>' | b'!'))
            || ["LIKE", "RLIKE", "REGEXP", "BINARY"]
                .iter()
                .any(|k| t.is_kw(k))
    };
    for (i, t) in tokens.iter().enumerate() {
        if !is_schema_column(t) {
            continue;
        }
        // `'x' = table_schema`
        let mut k = i;
        while k > 0 && is_operator(&tokens[k - 1]) {
            k -= 1;
        }
        if k < i && k > 0 {
            check(tokens.get(k - 1))?;
        }
        // `table_schema [NOT] IN ('a', 'b')`, `table_schema = 'a'`
        let mut j = i + 1;
        if tokens.get(j).is_some_and(|t| t.is_kw("NOT")) {
            j += 1;
        }
        if tokens.get(j).is_some_and(|t| t.is_kw("IN"))
            && tokens.get(j + 1).is_some_and(|t| t.is_punct(b'('))
        {
            for t in tokens[j + 2..].iter().take_while(|t| !t.is_punct(b')')) {
                check(Some(t))?;
            }
            continue;
        }
        let start = j;
        while tokens.get(j).is_some_and(is_operator) {
            j += 1;
        }
        if j > start {
            check(tokens.get(j))?;
        }
    }
    Ok(())
}

/// `DESCRIBE t`, `EXPLAIN SELECT …`: a table, or an allowed data statement.
fn describe(
    session: &Session,
    tokens: &[Token],
    nesting: usize,
) -> Result<Option<Statement>, Refusal> {
    let mut at = 1;
    loop {
        match upper(tokens, at).as_str() {
            "EXTENDED" | "PARTITIONS" | "ANALYZE" => at += 1,
            "FORMAT" if tokens.get(at + 1).is_some_and(|t| t.is_punct(b'=')) => at += 3,
            _ => break,
        }
    }
    let word = upper(tokens, at);
    if matches!(
        word.as_str(),
        "SELECT" | "WITH" | "VALUES" | "INSERT" | "UPDATE" | "DELETE" | "REPLACE"
    ) || tokens.get(at).is_some_and(|t| t.is_punct(b'('))
    {
        let inner = classify_nested(session, &tokens[at..], nesting + 1)?;
        return Ok(Some(inner));
    }
    if word == "FOR" {
        return refuse(Rule::ServerAdmin, "EXPLAIN FOR CONNECTION");
    }
    // `DESC table [column]`: a table name, optionally qualified, then at most a column.
    let mut j = at;
    while tokens.get(j).and_then(Token::name).is_some()
        && tokens.get(j + 1).is_some_and(|t| t.is_punct(b'.'))
    {
        j += 2;
    }
    if tokens.get(j).and_then(Token::name).is_none() || tokens.len() > j + 2 {
        return refuse(Rule::UnknownStatement, "unrecognised DESCRIBE");
    }
    if j > at {
        let db = tokens[at].name().unwrap_or_default();
        if db != session.database {
            return db_refusal(db);
        }
    }
    Ok(None)
}

fn db_refusal<T>(db: &str) -> Result<T, Refusal> {
    if is_system_database(db) {
        refuse(Rule::SystemDatabase, format!("database '{db}'"))
    } else {
        refuse(Rule::OtherDatabase, format!("database '{db}'"))
    }
}

/// `PREPARE name FROM 'text'`: the text is checked like a statement of its own.
fn prepare(session: &Session, tokens: &[Token], nesting: usize) -> Result<Statement, Refusal> {
    if nesting > 0 {
        return refuse(Rule::DynamicSql, "prepared statements inside prepared text");
    }
    if !(tokens.get(1).and_then(Token::name).is_some() && upper(tokens, 2) == "FROM") {
        return refuse(Rule::UnknownStatement, "malformed PREPARE");
    }
    let mut text = Vec::new();
    for t in &tokens[3..] {
        match t {
            // Adjacent literals concatenate, as the server reads them.
            Token::Str(s) => text.extend_from_slice(s),
            // A charset introducer (`_utf8mb4'…'`).
            Token::Word(w) if w.starts_with('_') => {}
            _ => {
                return refuse(
                    Rule::DynamicSql,
                    "PREPARE from a variable or expression cannot be checked",
                )
            }
        }
    }
    if tokens.len() == 3 {
        return refuse(Rule::UnknownStatement, "malformed PREPARE");
    }
    let mut statements = super::statements_nested(session, &text, nesting + 1)?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => refuse(Rule::UnknownStatement, "empty prepared text"),
        _ => refuse(Rule::DynamicSql, "several statements in prepared text"),
    }
}

/// `SHOW`: only the session's own state and the app's own objects.
fn show(session: &Session, tokens: &[Token]) -> Result<(), Refusal> {
    let at = skip_words(tokens, 1, &["FULL", "SESSION", "LOCAL", "EXTENDED"]);
    let what = upper(tokens, at);
    let next = upper(tokens, at + 1);
    // Index of the FROM/IN that names a database, counting from 1.
    let db_from = match what.as_str() {
        "GLOBAL" => return refuse(Rule::Show, "SHOW GLOBAL … (server-wide state)"),
        "VARIABLES" | "STATUS" | "COLLATION" | "CHARSET" | "ENGINES" | "WARNINGS" | "ERRORS"
        | "DATABASES" | "SCHEMAS" | "PROFILE" | "PROFILES" => 0,
        "CHARACTER" if next == "SET" => 0,
        "STORAGE" if next == "ENGINES" => 0,
        "COUNT" => 0,
        "TABLES" => 1,
        "TABLE" if next == "STATUS" => 1,
        "COLUMNS" | "FIELDS" | "INDEX" | "INDEXES" | "KEYS" => 2,
        "CREATE" if matches!(next.as_str(), "TABLE" | "VIEW") => 0,
        "CREATE" if matches!(next.as_str(), "DATABASE" | "SCHEMA") => {
            let db_at = skip_words(tokens, at + 2, &["IF", "NOT", "EXISTS"]);
            return match tokens.get(db_at).and_then(Token::name) {
                Some(db) if db == session.database && tokens.len() == db_at + 1 => Ok(()),
                Some(db) => db_refusal(db),
                None => refuse(Rule::UnknownStatement, "malformed SHOW CREATE DATABASE"),
            };
        }
        "PROCESSLIST" | "ENGINE" | "OPEN" | "USER_STATISTICS" | "CLIENT_STATISTICS"
        | "INDEX_STATISTICS" | "TABLE_STATISTICS" | "EXPLAIN" | "ANALYZE" => {
            return refuse(Rule::ServerAdmin, format!("SHOW {what}"))
        }
        "GRANTS" | "PRIVILEGES" => return refuse(Rule::AccountAdmin, format!("SHOW {what}")),
        "CREATE" if next == "USER" => return refuse(Rule::AccountAdmin, "SHOW CREATE USER"),
        "MASTER" | "SLAVE" | "REPLICA" | "BINARY" | "BINLOG" | "RELAYLOG" | "ALL" => {
            return refuse(Rule::Replication, format!("SHOW {what}"))
        }
        "PLUGINS" | "AUTHORS" | "CONTRIBUTORS" => {
            return refuse(Rule::Plugin, format!("SHOW {what}"))
        }
        "CREATE" | "PROCEDURE" | "FUNCTION" | "TRIGGERS" | "EVENTS" | "PACKAGE" => {
            return refuse(Rule::StoredProgram, format!("SHOW {what} {next}"))
        }
        _ => return refuse(Rule::Show, format!("SHOW {what}")),
    };
    if db_from == 0 {
        return Ok(());
    }
    let mut seen = 0;
    let mut i = at + 1;
    while i < tokens.len() {
        if tokens[i].is_kw("LIKE") || tokens[i].is_kw("WHERE") {
            break;
        }
        if tokens[i].is_kw("FROM") || tokens[i].is_kw("IN") {
            seen += 1;
            let qualified = tokens.get(i + 2).is_some_and(|t| t.is_punct(b'.'));
            let named = tokens.get(i + 1).and_then(Token::name);
            let db = if qualified || seen == db_from {
                named
            } else {
                None
            };
            if let Some(db) = db {
                if db != session.database {
                    return db_refusal(db);
                }
            }
        }
        i += 1;
    }
    Ok(())
}
