//! The invariants the lexer and [`check_bytes`] must keep on any input, in one place so the
//! fuzz target, the proptests and the seed-corpus replay test check exactly the same thing.

use super::lexer::{self, Token};
use super::{check_bytes, statements, Decision, Session, SqlMode};

const MODES: [SqlMode; 4] = [
    SqlMode {
        ansi_quotes: false,
        no_backslash_escapes: false,
    },
    SqlMode {
        ansi_quotes: true,
        no_backslash_escapes: false,
    },
    SqlMode {
        ansi_quotes: false,
        no_backslash_escapes: true,
    },
    SqlMode {
        ansi_quotes: true,
        no_backslash_escapes: true,
    },
];

/// Write tokens back as SQL (default sql_mode) that lexes to the same tokens.
pub(crate) fn render(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tokens {
        match t {
            Token::Word(w) => out.extend_from_slice(w.as_bytes()),
            Token::Ident(name) => {
                out.push(b'`');
                out.extend_from_slice(name.replace('`', "``").as_bytes());
                out.push(b'`');
            }
            Token::Str(s) => {
                out.push(b'\'');
                for &b in s {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\'' => out.extend_from_slice(b"\\'"),
                        0 => out.extend_from_slice(b"\\0"),
                        _ => out.push(b),
                    }
                }
                out.push(b'\'');
            }
            Token::Number => out.extend_from_slice(b"X'00'"),
            Token::Punct(p) => out.push(*p),
        }
        out.push(b' ');
    }
    out
}

/// Check every invariant on `input`.
///
/// # Panics
///
/// On the first broken one: lexing or deciding the same bytes twice differs; lexed tokens,
/// written back as SQL, lex to different tokens; a refusal with an unexpected code,
/// SQLSTATE or an empty message; in an allowed batch, a statement refused on its own; or the
/// statements of the input that are allowed on their own (and do not change sql_mode),
/// joined into one batch, refused.
pub fn check_invariants(input: &[u8]) {
    for mode in MODES {
        let first = lexer::lex(input, mode);
        assert_eq!(
            first,
            lexer::lex(input, mode),
            "lexing is not deterministic"
        );
        if let (Ok(statements), false) = (first, mode.ansi_quotes || mode.no_backslash_escapes) {
            for tokens in statements {
                let again = lexer::lex(&render(&tokens), mode).expect("rendered tokens lex");
                let again: Vec<Token> = again.into_iter().flatten().collect();
                assert_eq!(tokens, again, "rendered tokens lex differently");
            }
        }
    }
    for mode in MODES {
        let session = Session {
            database: "app_guestbook".into(),
            sql_mode: mode,
        };
        let decision = check_bytes(&session, input);
        assert_eq!(
            decision,
            check_bytes(&session, input),
            "check is not deterministic"
        );
        if let Decision::Refuse {
            code,
            sqlstate,
            rule,
            message,
        } = &decision
        {
            assert!([1044, 1064, 1142, 1227].contains(code), "code {code}");
            assert_eq!(*sqlstate, "42000");
            assert!(!rule.is_empty() && message.contains(rule), "{message}");
        }
        batch_invariants(&session, input, decision == Decision::Allow);
    }
}

/// The statements of `input` one by one, as the batch splitter cuts them (each with its `;`).
fn pieces(input: &[u8], mode: SqlMode) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        match lexer::lex_statement(input, pos, mode) {
            Ok(lexed) => {
                out.push(&input[pos..lexed.end]);
                pos = lexed.end;
            }
            Err(_) => break,
        }
    }
    out
}

fn batch_invariants(session: &Session, input: &[u8], allowed: bool) {
    let pieces = pieces(input, session.sql_mode);
    if allowed {
        for piece in &pieces {
            assert_eq!(
                check_bytes(session, piece),
                Decision::Allow,
                "a statement of an allowed batch is refused alone: {:?}",
                String::from_utf8_lossy(piece)
            );
        }
    }
    let mut batch = Vec::new();
    for piece in pieces {
        let alone = statements(session, piece);
        let plain = alone.is_ok_and(|s| s.iter().all(|s| s.new_sql_mode.is_none()));
        if plain {
            batch.extend_from_slice(piece);
            // A trailing `#`/`--` comment or a missing `;` must not swallow the next piece.
            batch.extend_from_slice(b"\n;\n");
        }
    }
    assert_eq!(
        check_bytes(session, &batch),
        Decision::Allow,
        "a batch of statements allowed alone is refused: {:?}",
        String::from_utf8_lossy(&batch)
    );
}
