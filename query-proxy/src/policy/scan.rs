//! The statement-independent part of classification: one walk over the tokens that finds every
//! database, table and function a statement names (in sub-queries, CTEs and CTAS sources too)
//! and refuses the constructs that are dangerous wherever they appear.

use super::classify::{Kind, Objects, TableRef};
use super::lexer::Token;
use super::{Refusal, Rule};

/// Words skipped between a keyword that introduces a table and the table's name.
const TABLE_MODIFIERS: &[&str] = &[
    "IF",
    "NOT",
    "EXISTS",
    "LOW_PRIORITY",
    "HIGH_PRIORITY",
    "DELAYED",
    "QUICK",
    "IGNORE",
    "ONLY",
    "LATERAL",
    "TEMPORARY",
];

/// Keywords that end a list of tables at the list's own nesting depth.
const END_OF_TABLE_LIST: &[&str] = &[
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "WINDOW",
    "SET",
    "VALUES",
    "VALUE",
    "SELECT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "FOR",
    "LOCK",
    "INTO",
    "RETURNING",
    "PROCEDURE",
];

/// Databases that belong to the server, refused even where `a.b` would usually mean
/// table `a`, column `b`.
pub(super) fn is_system_database(name: &str) -> bool {
    ["mysql", "performance_schema", "sys"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

fn is_reserved_qualifier(name: &str) -> bool {
    is_system_database(name) || name.eq_ignore_ascii_case("information_schema")
}

/// Functions refused wherever they are called, with the rule that refuses them.
fn function_rule(name: &str) -> Option<Rule> {
    let upper = name.to_ascii_uppercase();
    let rule = match upper.as_str() {
        "LOAD_FILE" => Rule::FileAccess,
        "SYS_EXEC" | "SYS_EVAL" | "SYS_GET" | "SYS_SET" | "LIB_MYSQLUDF_SYS_INFO" => Rule::Plugin,
        "MASTER_POS_WAIT"
        | "MASTER_GTID_WAIT"
        | "SOURCE_POS_WAIT"
        | "BINLOG_GTID_POS"
        | "WSREP_LAST_WRITTEN_GTID"
        | "WSREP_LAST_SEEN_GTID"
        | "WSREP_SYNC_WAIT_UPTO_GTID" => Rule::Replication,
        "GET_LOCK" | "RELEASE_LOCK" | "RELEASE_ALL_LOCKS" | "IS_FREE_LOCK" | "IS_USED_LOCK" => {
            Rule::ServerWideLock
        }
        _ => return None,
    };
    Some(rule)
}

fn word_at(tokens: &[Token], i: usize, kw: &str) -> bool {
    tokens.get(i).is_some_and(|t| t.is_kw(kw))
}

/// Walk `tokens` (one statement of kind `kind`) and collect what it names.
pub(super) fn scan(tokens: &[Token], kind: Kind) -> Result<Objects, Refusal> {
    let mut objects = Objects::default();
    let mut table_pos = vec![false; tokens.len() + 1];
    // Depths at which a comma-separated list of tables is open.
    let mut lists: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    // For each open parenthesis: is it the argument list of a function whose own syntax uses
    // FROM (`EXTRACT(YEAR FROM d)`, `TRIM('x' FROM s)`)?
    let mut parens: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        match tok {
            Token::Punct(b'(') => {
                depth += 1;
                let from_syntax = i > 0
                    && ["EXTRACT", "TRIM", "SUBSTRING", "SUBSTR"]
                        .iter()
                        .any(|f| tokens[i - 1].is_kw(f));
                parens.push(from_syntax);
                // `FROM (t1, db.t2)`: a parenthesised list of tables.
                if table_pos[i] {
                    lists.push(depth);
                    mark(tokens, &mut table_pos, i + 1);
                }
            }
            Token::Punct(b')') => {
                depth = depth.saturating_sub(1);
                parens.pop();
                while lists.last().is_some_and(|&d| d > depth) {
                    lists.pop();
                }
            }
            Token::Punct(b',') if lists.last() == Some(&depth) => {
                mark(tokens, &mut table_pos, i + 1);
            }
            Token::Word(w) => {
                let upper = w.to_ascii_uppercase();
                refuse_keyword(tokens, i, &upper)?;
                // `FOR UPDATE`/`FOR SHARE` end a list; `FOR SYSTEM_TIME …` and index hints'
                // `FOR JOIN` do not.
                let ends_list = if upper == "FOR" {
                    word_at(tokens, i + 1, "UPDATE") || word_at(tokens, i + 1, "SHARE")
                } else {
                    END_OF_TABLE_LIST.contains(&upper.as_str())
                };
                if lists.last() == Some(&depth) && ends_list {
                    lists.pop();
                }
                let opens_list = match upper.as_str() {
                    "FROM" => parens.last() != Some(&true),
                    "JOIN" | "STRAIGHT_JOIN" | "TABLE" | "TABLES" | "VIEW" => true,
                    "USING" => {
                        kind == Kind::Delete && !tokens.get(i + 1).is_some_and(|t| t.is_punct(b'('))
                    }
                    "UPDATE" => i == 0 || !word_at(tokens, i.wrapping_sub(1), "KEY"),
                    "DELETE" => i == 0,
                    _ => false,
                };
                let introduces_table = opens_list
                    || match upper.as_str() {
                        "INTO" | "REFERENCES" => true,
                        "INSERT" | "REPLACE" | "TRUNCATE" => i == 0,
                        "RENAME" | "TO" | "AS" => {
                            matches!(kind, Kind::AlterTable | Kind::RenameTable)
                                && !word_at(tokens, i + 1, "COLUMN")
                                && !word_at(tokens, i + 1, "INDEX")
                                && !word_at(tokens, i + 1, "KEY")
                                && !word_at(tokens, i + 1, "CONSTRAINT")
                        }
                        "ON" => matches!(kind, Kind::CreateIndex | Kind::DropIndex),
                        "LIKE" => kind == Kind::CreateTable,
                        "FOR" => word_at(tokens, i.wrapping_sub(1), "VALUE"),
                        "NEXTVAL" | "LASTVAL" | "SETVAL" => {
                            if tokens.get(i + 1).is_some_and(|t| t.is_punct(b'(')) {
                                mark(tokens, &mut table_pos, i + 2);
                            }
                            false
                        }
                        _ => false,
                    };
                if opens_list && lists.last() != Some(&depth) {
                    lists.push(depth);
                }
                if introduces_table {
                    mark(tokens, &mut table_pos, i + 1);
                }
            }
            _ => {}
        }
        if tok.name().is_some() && !starts_inside_path(tokens, i) {
            i = name_path(tokens, i, table_pos[i], &mut objects);
            continue;
        }
        i += 1;
    }
    Ok(objects)
}

/// True if the name at `i` continues a dotted path or names a variable (`@x`, `@@x`), so it
/// does not start an object reference of its own.
fn starts_inside_path(tokens: &[Token], i: usize) -> bool {
    i > 0 && (tokens[i - 1].is_punct(b'.') || tokens[i - 1].is_punct(b'@'))
}

/// Mark the first token from `j` on that is not a table modifier as a table position.
fn mark(tokens: &[Token], table_pos: &mut [bool], mut j: usize) {
    while tokens
        .get(j)
        .is_some_and(|t| TABLE_MODIFIERS.iter().any(|m| t.is_kw(m)))
    {
        j += 1;
    }
    if j < table_pos.len() {
        table_pos[j] = true;
    }
}

/// Read the dotted name starting at `i`, record what it names, and return the index after it.
fn name_path(tokens: &[Token], i: usize, in_table_position: bool, objects: &mut Objects) -> usize {
    let mut parts: Vec<String> = Vec::new();
    let mut j = i;
    while let Some(name) = tokens.get(j).and_then(Token::name) {
        parts.push(name.to_string());
        if tokens.get(j + 1).is_some_and(|t| t.is_punct(b'.'))
            && tokens.get(j + 2).and_then(Token::name).is_some()
        {
            j += 2;
        } else {
            j += 1;
            break;
        }
    }
    let call = tokens.get(j).is_some_and(|t| t.is_punct(b'('));
    // `db.` followed by something that is not a name (nor `*`): still a qualifier.
    let dangling = tokens.get(j).is_some_and(|t| t.is_punct(b'.'))
        && !tokens.get(j + 1).is_some_and(|t| t.is_punct(b'*'));
    if call {
        if let Some(last) = parts.last() {
            objects.functions.push(last.clone());
        }
    }
    let qualified = parts.len() >= 3
        || (parts.len() == 2 && (call || in_table_position || is_reserved_qualifier(&parts[0])));
    if qualified {
        objects.databases.push(parts[0].clone());
        objects.tables.push(TableRef {
            database: Some(parts[0].clone()),
            name: parts[1].clone(),
        });
    } else if dangling && (in_table_position || parts.len() == 1) {
        objects.databases.push(parts[0].clone());
    } else if in_table_position && !call {
        objects.tables.push(TableRef {
            database: None,
            name: parts[0].clone(),
        });
    }
    j
}

/// Constructs refused wherever they appear in a statement.
fn refuse_keyword(tokens: &[Token], i: usize, upper: &str) -> Result<(), Refusal> {
    let next = |kw: &str| word_at(tokens, i + 1, kw);
    let refusal = match upper {
        "INTO" if next("OUTFILE") || next("DUMPFILE") => Refusal::new(
            Rule::FileAccess,
            "SELECT … INTO OUTFILE/DUMPFILE writes a server file",
        ),
        "LOAD" if next("DATA") || next("XML") => {
            Refusal::new(Rule::FileAccess, "LOAD DATA/XML reads a file")
        }
        "DATA" | "INDEX" if next("DIRECTORY") => Refusal::new(
            Rule::FileAccess,
            "DATA/INDEX DIRECTORY places table files on the server's file system",
        ),
        "TABLESPACE" => Refusal::new(Rule::FileAccess, "tablespaces are server files"),
        "DEFINER" if tokens.get(i + 1).is_some_and(|t| t.is_punct(b'=')) => Refusal::new(
            Rule::StoredProgram,
            "DEFINER clauses run code as another account",
        ),
        "PROCEDURE" => Refusal::new(Rule::StoredProgram, "stored procedures are refused"),
        _ => return Ok(()),
    };
    Err(refusal)
}

/// Refuse a function call that a rule forbids.
pub(super) fn check_functions(objects: &Objects) -> Result<(), Refusal> {
    for f in &objects.functions {
        if let Some(rule) = function_rule(f) {
            return Err(Refusal::new(
                rule,
                format!("function {}()", f.to_ascii_uppercase()),
            ));
        }
    }
    Ok(())
}
