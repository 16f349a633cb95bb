//! `SET` in all its forms: user variables, session variables on an allow-list (with the values
//! some of them may take), `NAMES`/`CHARACTER SET`, `TRANSACTION`, and `SET STATEMENT … FOR`.
//! Global scope, accounts and anything that lifts the app's limits are refused.

use super::classify::{classify_nested, engine_allowed, Statement};
use super::lexer::Token;
use super::{Refusal, Rule, Session, SqlMode};

/// Session variables an app may set (lower case).
const ALLOWED: &[&str] = &[
    "autocommit",
    "sql_mode",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "collation_connection",
    "time_zone",
    "transaction_isolation",
    "tx_isolation",
    "transaction_read_only",
    "tx_read_only",
    "sql_safe_updates",
    "foreign_key_checks",
    "unique_checks",
    "sql_auto_is_null",
    "sql_select_limit",
    "sql_notes",
    "sql_warnings",
    "sql_quote_show_create",
    "sql_big_selects",
    "sql_buffer_result",
    "sql_if_exists",
    "lc_time_names",
    "lc_messages",
    "div_precision_increment",
    "group_concat_max_len",
    "wait_timeout",
    "interactive_timeout",
    "net_read_timeout",
    "net_write_timeout",
    "innodb_lock_wait_timeout",
    "lock_wait_timeout",
    "default_storage_engine",
    "storage_engine",
    "default_tmp_storage_engine",
    "check_constraint_checks",
    "explicit_defaults_for_timestamp",
    "profiling",
    "profiling_history_size",
    "completion_type",
    "default_week_format",
    "last_insert_id",
    "insert_id",
    "timestamp",
    "updatable_views_with_limit",
    "auto_increment_increment",
    "auto_increment_offset",
    "session_track_schema",
    "session_track_state_change",
    "session_track_system_variables",
    "session_track_transaction_info",
];

/// Variables that bound what one app can cost the server; setting them would lift Berth's
/// limits (lower case).
const LIMITS: &[&str] = &[
    "max_statement_time",
    "max_execution_time",
    "max_recursive_iterations",
    "cte_max_recursion_depth",
    "max_join_size",
    "sql_max_join_size",
    "max_heap_table_size",
    "tmp_table_size",
    "tmp_memory_table_size",
    "tmp_disk_table_size",
    "max_sort_length",
    "sort_buffer_size",
    "join_buffer_size",
    "join_buffer_space_limit",
    "read_buffer_size",
    "read_rnd_buffer_size",
    "max_allowed_packet",
    "net_buffer_length",
    "max_error_count",
    "max_length_for_sort_data",
    "max_seeks_for_key",
    "max_sp_recursion_depth",
    "max_session_mem_used",
    "max_tmp_tables",
    "max_insert_delayed_threads",
    "bulk_insert_buffer_size",
    "preload_buffer_size",
    "query_prealloc_size",
    "query_alloc_block_size",
    "transaction_prealloc_size",
    "transaction_alloc_block_size",
    "range_alloc_block_size",
    "max_user_connections",
    "max_rowid_filter_size",
];

/// sql_mode names an app may set. The compatibility modes (`ORACLE`, `MSSQL`, `DB2`,
/// `POSTGRESQL`, `MAXDB`, `MYSQL323`, `MYSQL40`) are left out: they change the grammar far
/// beyond the two flags the lexer follows.
const SQL_MODES: &[&str] = &[
    "",
    "ALLOW_INVALID_DATES",
    "ANSI",
    "ANSI_QUOTES",
    "EMPTY_STRING_IS_NULL",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "HIGH_NOT_PRECEDENCE",
    "IGNORE_BAD_TABLE_OPTIONS",
    "IGNORE_SPACE",
    "NO_AUTO_CREATE_USER",
    "NO_AUTO_VALUE_ON_ZERO",
    "NO_BACKSLASH_ESCAPES",
    "NO_DIR_IN_CREATE",
    "NO_ENGINE_SUBSTITUTION",
    "NO_FIELD_OPTIONS",
    "NO_KEY_OPTIONS",
    "NO_TABLE_OPTIONS",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_ZERO_DATE",
    "NO_ZERO_IN_DATE",
    "ONLY_FULL_GROUP_BY",
    "PAD_CHAR_TO_FULL_LENGTH",
    "PIPES_AS_CONCAT",
    "REAL_AS_FLOAT",
    "SIMULTANEOUS_ASSIGNMENT",
    "STRICT_ALL_TABLES",
    "STRICT_TRANS_TABLES",
    "TIME_ROUND_FRACTIONAL",
    "TRADITIONAL",
];

/// The client character sets the proxy's byte-level lexer reads exactly as the server does:
/// UTF-8, where no byte of a multi-byte character is an ASCII quote or backslash and every
/// multi-byte character is an identifier character. (In `sjis`, `gbk` or `big5` a 0x5c trail
/// byte is a backslash to a naive reader; in `latin1` the server may read a high byte such as
/// 0xa0 as a space.)
pub(super) fn charset_allowed(name: &str) -> bool {
    ["utf8", "utf8mb3", "utf8mb4"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

fn collation_allowed(name: &str) -> bool {
    name.split_once('_')
        .is_some_and(|(charset, _)| charset_allowed(charset))
}

/// What a `SET` statement does besides being allowed.
pub(super) struct SetOutcome {
    /// The sql_mode flags it leaves the session in, if it sets `sql_mode`.
    pub new_sql_mode: Option<SqlMode>,
    /// The statement inside `SET STATEMENT … FOR`.
    pub inner: Option<Statement>,
}

fn refuse<T>(rule: Rule, detail: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::new(rule, detail))
}

fn upper(tokens: &[Token], i: usize) -> String {
    match tokens.get(i) {
        Some(Token::Word(w)) => w.to_ascii_uppercase(),
        _ => String::new(),
    }
}

/// Classify `SET …` (`tokens[0]` is `SET`).
pub(super) fn classify_set(
    session: &Session,
    tokens: &[Token],
    nesting: usize,
) -> Result<SetOutcome, Refusal> {
    let second = upper(tokens, 1);
    match second.as_str() {
        "PASSWORD" | "ROLE" | "DEFAULT" => {
            return refuse(Rule::AccountAdmin, format!("SET {second}"))
        }
        "GLOBAL" | "PERSIST" | "PERSIST_ONLY" => {
            return refuse(Rule::GlobalVariable, format!("SET {second}"))
        }
        _ => {}
    }
    let body = if matches!(second.as_str(), "SESSION" | "LOCAL") {
        2
    } else {
        1
    };
    if upper(tokens, body) == "TRANSACTION" {
        return Ok(SetOutcome {
            new_sql_mode: None,
            inner: None,
        });
    }
    if second == "STATEMENT" {
        return set_statement(session, tokens, nesting);
    }
    let mut new_sql_mode = None;
    for assignment in split_top_level(&tokens[1..]) {
        if let Some(mode) = assignment_checked(assignment, false)? {
            new_sql_mode = Some(mode);
        }
    }
    Ok(SetOutcome {
        new_sql_mode,
        inner: None,
    })
}

/// `SET STATEMENT a=1, b=2 FOR stmt`: the variables hold for `stmt` only, which is checked too.
fn set_statement(
    session: &Session,
    tokens: &[Token],
    nesting: usize,
) -> Result<SetOutcome, Refusal> {
    let mut depth = 0usize;
    let mut for_at = None;
    for (i, t) in tokens.iter().enumerate().skip(2) {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is_kw("FOR") => {
                for_at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(for_at) = for_at else {
        return refuse(Rule::UnknownStatement, "SET STATEMENT without FOR");
    };
    for assignment in split_top_level(&tokens[2..for_at]) {
        assignment_checked(assignment, true)?;
    }
    if for_at + 1 >= tokens.len() {
        return refuse(Rule::UnknownStatement, "SET STATEMENT without a statement");
    }
    let inner = classify_nested(session, &tokens[for_at + 1..], nesting + 1)?;
    Ok(SetOutcome {
        new_sql_mode: None,
        inner: Some(inner),
    })
}

/// Split at commas outside parentheses.
fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') => depth = depth.saturating_sub(1),
            Token::Punct(b',') if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

fn name_value(t: Option<&Token>) -> Option<String> {
    match t? {
        Token::Word(w) | Token::Ident(w) => Some(w.clone()),
        Token::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    }
}

/// Check one assignment of a `SET` list; returns the new sql_mode if it sets one that
/// persists. `scoped` is true inside `SET STATEMENT`, where nothing persists.
fn assignment_checked(a: &[Token], scoped: bool) -> Result<Option<SqlMode>, Refusal> {
    let first = upper(a, 0);
    match first.as_str() {
        "" if a.first().is_some_and(|t| t.is_punct(b'@'))
            && !a.get(1).is_some_and(|t| t.is_punct(b'@')) =>
        {
            // A user variable; its value is an expression the generic scan checks.
            return Ok(None);
        }
        "GLOBAL" | "PERSIST" | "PERSIST_ONLY" => {
            return refuse(Rule::GlobalVariable, format!("SET {first}"))
        }
        "NAMES" => {
            let cs = name_value(a.get(1)).unwrap_or_default();
            if !(charset_allowed(&cs) || cs.eq_ignore_ascii_case("DEFAULT")) {
                return refuse(Rule::SessionVariable, format!("character set '{cs}'"));
            }
            if a.get(2).is_some_and(|t| t.is_kw("COLLATE")) {
                let coll = name_value(a.get(3)).unwrap_or_default();
                if !collation_allowed(&coll) || a.len() != 4 {
                    return refuse(Rule::SessionVariable, format!("collation '{coll}'"));
                }
            } else if a.len() != 2 {
                return refuse(Rule::UnknownStatement, "malformed SET NAMES");
            }
            return Ok(None);
        }
        "CHARSET" | "CHARACTER" => {
            let at = if first == "CHARACTER" && upper(a, 1) == "SET" {
                2
            } else {
                1
            };
            let cs = name_value(a.get(at)).unwrap_or_default();
            if a.len() != at + 1 || !(charset_allowed(&cs) || cs.eq_ignore_ascii_case("DEFAULT")) {
                return refuse(Rule::SessionVariable, format!("character set '{cs}'"));
            }
            return Ok(None);
        }
        _ => {}
    }
    // [SESSION|LOCAL] name = value, or @@[session.|local.|global.]name = value.
    let mut i = 0;
    if a.first().is_some_and(|t| t.is_punct(b'@')) && a.get(1).is_some_and(|t| t.is_punct(b'@')) {
        i = 2;
        let scope = upper(a, 2);
        if a.get(3).is_some_and(|t| t.is_punct(b'.')) {
            match scope.as_str() {
                "GLOBAL" | "PERSIST" | "PERSIST_ONLY" => {
                    return refuse(
                        Rule::GlobalVariable,
                        format!("SET @@{}", scope.to_lowercase()),
                    )
                }
                "SESSION" | "LOCAL" => i = 4,
                _ => {}
            }
        }
    } else if matches!(first.as_str(), "SESSION" | "LOCAL") {
        i = 1;
    }
    let Some(name) = a.get(i).and_then(Token::name) else {
        return refuse(Rule::UnknownStatement, "malformed SET");
    };
    let name = name.to_ascii_lowercase();
    i += 1;
    if a.get(i).is_some_and(|t| t.is_punct(b'.')) {
        return refuse(
            Rule::SessionVariable,
            format!("structured variable '{name}.…'"),
        );
    }
    // `=` or `:=`.
    if a.get(i).is_some_and(|t| t.is_punct(b':')) {
        i += 1;
    }
    if !a.get(i).is_some_and(|t| t.is_punct(b'=')) || i + 1 >= a.len() {
        return refuse(Rule::UnknownStatement, "malformed SET");
    }
    let value = &a[i + 1..];
    if LIMITS.contains(&name.as_str()) {
        return refuse(
            Rule::LimitVariable,
            format!("{name} is one of the app's limits"),
        );
    }
    if !ALLOWED.contains(&name.as_str()) {
        return refuse(Rule::SessionVariable, format!("variable {name}"));
    }
    let single = if value.len() == 1 {
        name_value(value.first())
    } else {
        None
    };
    match name.as_str() {
        "sql_mode" if scoped => Ok(None),
        "sql_mode" => match value {
            [Token::Str(s)] => {
                let value = String::from_utf8_lossy(s);
                match value
                    .split(',')
                    .map(str::trim)
                    .find(|m| !SQL_MODES.iter().any(|k| k.eq_ignore_ascii_case(m)))
                {
                    Some(unknown) => refuse(Rule::SqlModeChange, format!("sql_mode {unknown}")),
                    None => Ok(Some(SqlMode::parse(&value))),
                }
            }
            _ => refuse(
                Rule::SqlModeChange,
                "sql_mode may only be set to a string literal",
            ),
        },
        // Results are only ever decoded by the client: any character set will do.
        "character_set_results" => Ok(None),
        "character_set_client" | "character_set_connection" => match single {
            Some(cs) if charset_allowed(&cs) || cs.eq_ignore_ascii_case("DEFAULT") => Ok(None),
            _ => refuse(
                Rule::SessionVariable,
                format!("{name} to this character set"),
            ),
        },
        "collation_connection" => match single {
            Some(c) if collation_allowed(&c) || c.eq_ignore_ascii_case("DEFAULT") => Ok(None),
            _ => refuse(
                Rule::SessionVariable,
                "collation_connection to this collation",
            ),
        },
        "default_storage_engine" | "storage_engine" | "default_tmp_storage_engine" => {
            match single {
                Some(e) if engine_allowed(&e) || e.eq_ignore_ascii_case("DEFAULT") => Ok(None),
                _ => refuse(Rule::StorageEngine, format!("{name} to this engine")),
            }
        }
        _ => Ok(None),
    }
}
