//! Exact token streams for the lexer's cases: comments, executable comments, quoting under
//! each sql_mode, literals, numbers and statement splitting.

use crate::policy::lexer::{lex, LexError, Token};
use crate::policy::SqlMode;

fn w(s: &str) -> Token {
    Token::Word(s.into())
}

fn id(s: &str) -> Token {
    Token::Ident(s.into())
}

fn s(v: &str) -> Token {
    Token::Str(v.as_bytes().to_vec())
}

fn p(c: u8) -> Token {
    Token::Punct(c)
}

fn one(sql: &str) -> Vec<Token> {
    let mut all = lex(sql.as_bytes(), SqlMode::default()).expect("lexes");
    assert_eq!(all.len(), 1, "{sql:?} is {} statements", all.len());
    all.remove(0)
}

const ANSI: SqlMode = SqlMode {
    ansi_quotes: true,
    no_backslash_escapes: false,
};
const RAW: SqlMode = SqlMode {
    ansi_quotes: false,
    no_backslash_escapes: true,
};

#[test]
fn comments_vanish() {
    assert_eq!(one("SELECT/**/1"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1 # x ; y\n"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1 -- x ; y"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1 --\tx"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1 --"), [w("SELECT"), Token::Number]);
    assert_eq!(one("/* a */ /* b ; */SELECT"), [w("SELECT")]);
}

#[test]
fn double_dash_needs_a_following_space() {
    assert_eq!(
        one("SELECT 1--1"),
        [w("SELECT"), Token::Number, p(b'-'), p(b'-'), Token::Number]
    );
}

#[test]
fn executable_comments_are_code() {
    assert_eq!(one("/*! SHUTDOWN */"), [w("SHUTDOWN")]);
    assert_eq!(one("/*!50100 SHUTDOWN*/"), [w("SHUTDOWN")]);
    assert_eq!(one("/*M!100100 KILL 1*/"), [w("KILL"), Token::Number]);
    assert_eq!(one("/*M! KILL*/"), [w("KILL")]);
    assert_eq!(
        one("SELECT 2/*!*/*3"),
        [w("SELECT"), Token::Number, p(b'*'), Token::Number]
    );
    // A string inside an executable comment may hold `*/`.
    assert_eq!(one("/*! SELECT '*/' */"), [w("SELECT"), s("*/")]);
    // Outside one, `*/` is two operators.
    assert_eq!(
        one("SELECT 2*/1"),
        [w("SELECT"), Token::Number, p(b'*'), p(b'/'), Token::Number]
    );
}

#[test]
fn doubtful_comments_are_errors() {
    let err = |sql: &str| lex(sql.as_bytes(), SqlMode::default()).unwrap_err();
    assert_eq!(err("SELECT /* x"), LexError::UnterminatedComment);
    assert_eq!(err("SELECT /*! x"), LexError::UnterminatedComment);
    assert_eq!(err("/*! /* x */ */"), LexError::NestedComment);
    assert_eq!(err("/*!1234 x */"), LexError::BadVersion);
    assert_eq!(err("/*!50000x */"), LexError::BadVersion);
    assert_eq!(err("/*! a; b */"), LexError::SemicolonInComment);
    assert_eq!(err("SELECT \x01"), LexError::ControlByte(1));
    assert_eq!(err("SELECT 1\0"), LexError::ControlByte(0));
}

#[test]
fn strings_and_escapes() {
    assert_eq!(one(r"SELECT 'a\'b'"), [w("SELECT"), s("a'b")]);
    assert_eq!(one("SELECT 'a''b'"), [w("SELECT"), s("a'b")]);
    assert_eq!(one(r#"SELECT "a\"b""#), [w("SELECT"), s("a\"b")]);
    assert_eq!(one(r"SELECT 'a\nb\\'"), [w("SELECT"), s("a\nb\\")]);
    assert_eq!(one(r"SELECT 'a\%'"), [w("SELECT"), s("a\\%")]);
    assert_eq!(one("SELECT 'a;b'"), [w("SELECT"), s("a;b")]);
    assert_eq!(
        lex(br"SELECT 'a\'", RAW).unwrap(),
        [vec![w("SELECT"), s("a\\")]]
    );
    assert_eq!(
        lex(br"SELECT 'a\'; SHUTDOWN", RAW).unwrap(),
        [vec![w("SELECT"), s("a\\")], vec![w("SHUTDOWN")]]
    );
    assert_eq!(
        lex(b"SELECT 'a\\'; SHUTDOWN", SqlMode::default()),
        Err(LexError::UnterminatedString)
    );
}

#[test]
fn ansi_quotes_switch_double_quotes_to_identifiers() {
    assert_eq!(
        lex(br#"SELECT "a""b" FROM t"#, ANSI).unwrap(),
        [vec![w("SELECT"), id("a\"b"), w("FROM"), w("t")]]
    );
    assert_eq!(one(r#"SELECT "a""b""#), [w("SELECT"), s("a\"b")]);
}

#[test]
fn backticks_double_their_quote() {
    assert_eq!(one("SELECT `a``;b`"), [w("SELECT"), id("a`;b")]);
    assert_eq!(
        lex(b"SELECT `a", SqlMode::default()),
        Err(LexError::UnterminatedIdent)
    );
}

#[test]
fn prefixed_literals() {
    assert_eq!(
        one("SELECT x'41', X'42', b'01', B'1', N'n', n'n', _utf8mb4'u', _latin1\"l\""),
        [
            w("SELECT"),
            Token::Number,
            p(b','),
            Token::Number,
            p(b','),
            Token::Number,
            p(b','),
            Token::Number,
            p(b','),
            s("n"),
            p(b','),
            s("n"),
            p(b','),
            w("_utf8mb4"),
            s("u"),
            p(b','),
            w("_latin1"),
            s("l"),
        ]
    );
    // A hex literal has no escapes: its backslash does not hide the quote.
    assert_eq!(one(r"SELECT x'\'"), [w("SELECT"), Token::Number]);
}

#[test]
fn numbers_and_identifiers_that_start_with_digits() {
    assert_eq!(one("SELECT 1.5e-3"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1e5"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 0x1F"), [w("SELECT"), Token::Number]);
    assert_eq!(one("SELECT 1abc"), [w("SELECT"), w("1abc")]);
    assert_eq!(one("SELECT 0xZZ"), [w("SELECT"), w("0xZZ")]);
    // After a dot, digits name a column.
    assert_eq!(
        one("SELECT t.1e5"),
        [w("SELECT"), w("t"), p(b'.'), w("1e5")]
    );
    assert_eq!(
        one("SELECT * FROM mysql . user"),
        [
            w("SELECT"),
            p(b'*'),
            w("FROM"),
            w("mysql"),
            p(b'.'),
            w("user")
        ]
    );
}

#[test]
fn batches_split_at_top_level_semicolons() {
    let all = lex(
        b"SELECT 1; SELECT ';'; -- x ;\nSELECT 3;",
        SqlMode::default(),
    )
    .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1], [w("SELECT"), s(";")]);
    assert_eq!(lex(b";;", SqlMode::default()).unwrap(), [vec![], vec![]]);
}

#[test]
fn non_ascii_bytes_are_identifier_bytes() {
    assert_eq!(one("SELECT café"), [w("SELECT"), w("café")]);
    assert_eq!(one("SELECT\u{a0}x"), [w("SELECT\u{a0}x")]);
    assert_eq!(
        lex(b"SELECT 1, \xa0LOAD_FILE('x')", SqlMode::default()),
        Err(LexError::InvalidUtf8)
    );
    assert_eq!(
        lex(b"SELECT `\xff`", SqlMode::default()),
        Err(LexError::InvalidUtf8)
    );
    // Inside strings any bytes go (`_binary'…'` data).
    assert_eq!(
        lex(b"SELECT _binary'\xff\x00'", SqlMode::default()).unwrap(),
        [vec![w("SELECT"), w("_binary"), Token::Str(vec![0xff, 0])]]
    );
}
