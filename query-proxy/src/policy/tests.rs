//! Unit tests of the lexer and of `check`'s batch handling, proptests of the invariants, and the
//! replay of the fuzz seed corpus. The statement corpus lives in `tests/corpus.rs`.

mod corpus;
mod lexing;

use super::{check_invariants, statements, Kind, Session};
use proptest::prelude::*;

#[test]
fn fuzz_seed_corpus_keeps_the_invariants() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/query/corpus/policy");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the fuzz seed corpus directory") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a readable corpus file");
        check_invariants(&bytes);
        files += 1;
    }
    assert!(files >= 10, "only {files} seed files in {dir}");
}

#[test]
fn the_statement_corpus_keeps_the_invariants() {
    for (sql, _) in corpus::REFUSED {
        check_invariants(sql.as_bytes());
    }
    for sql in corpus::ALLOWED {
        check_invariants(sql.as_bytes());
    }
}

#[test]
fn statements_reports_kinds_and_objects() {
    let session = Session::new("app_guestbook");
    let got = statements(
        &session,
        b"SELECT UPPER(e.body) FROM app_guestbook.entries e JOIN users u ON u.id = e.uid; \
          SET STATEMENT foreign_key_checks=0 FOR DELETE FROM tags",
    )
    .expect("allowed");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].kind, Kind::Select);
    let tables: Vec<(Option<&str>, &str)> = got[0]
        .objects
        .tables
        .iter()
        .map(|t| (t.database.as_deref(), t.name.as_str()))
        .collect();
    assert_eq!(
        tables,
        [(Some("app_guestbook"), "entries"), (None, "users")]
    );
    assert_eq!(got[0].objects.databases, ["app_guestbook"]);
    assert_eq!(got[0].objects.functions, ["UPPER"]);
    assert_eq!(got[1].kind, Kind::Set);
    assert!(got[1].objects.tables.iter().any(|t| t.name == "tags"));
}

#[test]
fn a_sql_mode_change_is_reported() {
    let session = Session::new("app_guestbook");
    let got = statements(&session, b"SET sql_mode = 'ANSI,NO_BACKSLASH_ESCAPES'").expect("allowed");
    let mode = got[0].new_sql_mode.expect("a new mode");
    assert!(mode.ansi_quotes && mode.no_backslash_escapes);
    let got = statements(&session, b"SET sql_mode = ''").expect("allowed");
    assert_eq!(got[0].new_sql_mode, Some(Default::default()));
}

/// SQL-ish text: keywords, names, quotes, comments and separators glued together, so the
/// proptests reach the interesting lexer states far more often than random bytes would.
fn sqlish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "SELECT ",
        "FROM ",
        "mysql",
        ".",
        "user",
        " ",
        "'",
        "\"",
        "`",
        "\\",
        ";",
        "--",
        "-- ",
        "#",
        "\n",
        "/*",
        "*/",
        "/*!",
        "/*M!",
        "50100 ",
        "100100",
        "x'",
        "b'",
        "N'",
        "_utf8mb4'",
        "(",
        ")",
        ",",
        "=",
        "@",
        "@@",
        "global",
        "SET ",
        "max_statement_time",
        "LOAD_FILE",
        "INTO ",
        "OUTFILE ",
        "1",
        "1e5",
        ".5",
        "0x1F",
        "app_guestbook",
        "t",
        "PREPARE s FROM ",
        "GRANT ",
        "SHUTDOWN",
        "\0",
        "é",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_keep_the_invariants(input in prop::collection::vec(any::<u8>(), 0..200)) {
        check_invariants(&input);
    }

    #[test]
    fn sqlish_text_keeps_the_invariants(input in sqlish()) {
        check_invariants(&input);
    }
}

#[test]
fn rules_carry_the_documented_codes() {
    use super::Rule::*;
    let expected = [
        (Lexical, "lexical", 1064),
        (ClientCommand, "client-command", 1064),
        (UnknownStatement, "unknown-statement", 1227),
        (OtherDatabase, "other-database", 1044),
        (SystemDatabase, "system-database", 1044),
        (InformationSchema, "information-schema", 1142),
        (DatabaseAdmin, "database-admin", 1044),
        (FileAccess, "file-access", 1227),
        (StorageEngine, "storage-engine", 1227),
        (AccountAdmin, "account-admin", 1227),
        (GlobalVariable, "global-variable", 1227),
        (LimitVariable, "limit-variable", 1227),
        (SessionVariable, "session-variable", 1227),
        (SqlModeChange, "sql-mode", 1227),
        (ServerAdmin, "server-admin", 1227),
        (Plugin, "plugin", 1227),
        (Replication, "replication", 1227),
        (StoredProgram, "stored-program", 1227),
        (DynamicSql, "dynamic-sql", 1227),
        (ServerWideLock, "server-wide-lock", 1227),
        (Show, "show", 1227),
    ];
    let doc = include_str!("../../../docs/protocols/query-policy.md");
    for (rule, name, code) in expected {
        assert_eq!((rule.name(), rule.code()), (name, code));
        assert!(
            doc.contains(&format!("| `{name}` | {code} |")),
            "docs/protocols/query-policy.md lacks the row for {name}"
        );
    }
}

#[test]
fn a_refusal_names_rule_and_object() {
    let session = Session::new("app_guestbook");
    assert_eq!(
        super::check(&session, "SELECT * FROM app_other.t"),
        super::Decision::Refuse {
            code: 1044,
            sqlstate: "42000",
            rule: "other-database",
            message: "database 'app_other' (query-proxy rule other-database)".into(),
        }
    );
    assert_eq!(
        super::check(&session, "select 1"),
        super::check_bytes(&session, b"select 1")
    );
}
