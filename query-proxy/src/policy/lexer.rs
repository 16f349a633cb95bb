//! MariaDB's lexical rules, as far as a policy needs them: comments (executable ones are code),
//! strings and identifiers under the session's sql_mode, and `;` statement boundaries. It
//! refuses whatever it could read differently from the server (unterminated or nested
//! comments, odd version comments, control bytes) instead of guessing.

use super::SqlMode;

/// One token of a statement. Whitespace and comments are gone; executable comments
/// (`/*! … */`, `/*M! … */`) have been replaced by the tokens inside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An unquoted word (a keyword or an identifier) exactly as written.
    Word(String),
    /// A quoted identifier (backticks, or double quotes under `ANSI_QUOTES`), unescaped.
    Ident(String),
    /// A string literal (any charset introducer or `N` prefix dropped), unescaped.
    Str(Vec<u8>),
    /// A number, or a hexadecimal / bit literal.
    Number,
    /// One byte of punctuation or an operator character.
    Punct(u8),
}

impl Token {
    /// True if this is the unquoted word `kw` (ASCII case-insensitive).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// The name this token spells if it can name an object (a word or a quoted identifier).
    pub fn name(&self) -> Option<&str> {
        match self {
            Token::Word(w) | Token::Ident(w) => Some(w),
            _ => None,
        }
    }

    /// True if this is the punctuation byte `c`.
    pub fn is_punct(&self, c: u8) -> bool {
        matches!(self, Token::Punct(p) if *p == c)
    }
}

/// Why a statement could not be lexed safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    /// A string literal runs to the end of the input.
    #[error("unterminated string literal")]
    UnterminatedString,
    /// A quoted identifier runs to the end of the input.
    #[error("unterminated quoted identifier")]
    UnterminatedIdent,
    /// A `/* … */` comment runs to the end of the input.
    #[error("unterminated comment")]
    UnterminatedComment,
    /// A comment opens inside an executable comment, whose end the server might read
    /// differently.
    #[error("comment nested inside an executable comment")]
    NestedComment,
    /// An executable comment whose version is not 5 or 6 digits followed by a separator.
    #[error("malformed version number in an executable comment")]
    BadVersion,
    /// A `;` inside an executable comment.
    #[error("statement separator inside an executable comment")]
    SemicolonInComment,
    /// A control byte (NUL included) outside strings and comments.
    #[error("control byte 0x{0:02x} outside a string")]
    ControlByte(u8),
    /// A name that is not valid UTF-8: the server might read its bytes as something else
    /// (a space, a quote) than the name the policy saw.
    #[error("invalid UTF-8 in a name")]
    InvalidUtf8,
}

/// One statement's tokens and where the next statement starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexed {
    /// The statement's tokens, without its terminating `;`.
    pub tokens: Vec<Token>,
    /// Offset just past the `;` that ended the statement, or the input's length.
    pub end: usize,
    /// The versions of the versioned executable comments met (`/*!50100 …*/` gives 50100).
    pub versions: Vec<u32>,
}

/// Bytes that may appear in an unquoted identifier (MariaDB also allows any byte of a
/// multi-byte character, which in the safe charsets is every byte from 0x80 up).
pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Lex every statement of `src` under one `mode` (a batch is split at each top-level `;`).
/// [`super::check`] lexes statement by statement instead, because a batch may change the mode.
pub fn lex(src: &[u8], mode: SqlMode) -> Result<Vec<Vec<Token>>, LexError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        let lexed = lex_statement(src, pos, mode)?;
        out.push(lexed.tokens);
        pos = lexed.end;
    }
    Ok(out)
}

/// Lex one statement of `src` starting at `start`, up to and including the next top-level
/// `;` (or the end of the input), as a server of any version would: every executable comment's
/// content is code.
pub fn lex_statement(src: &[u8], start: usize, mode: SqlMode) -> Result<Lexed, LexError> {
    lex_statement_for(src, start, mode, u32::MAX)
}

/// [`lex_statement`] as a server whose version number is `server_version` reads it: a
/// versioned executable comment above that version is an ordinary comment, which the server
/// ends at its first `*/` without looking at quotes.
pub fn lex_statement_for(
    src: &[u8],
    start: usize,
    mode: SqlMode,
    server_version: u32,
) -> Result<Lexed, LexError> {
    let mut lx = Lexer {
        src,
        pos: start,
        mode,
        in_exec: false,
        server_version,
        versions: Vec::new(),
        tokens: Vec::new(),
    };
    lx.run()?;
    Ok(Lexed {
        tokens: lx.tokens,
        end: lx.pos,
        versions: lx.versions,
    })
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    mode: SqlMode,
    /// Inside `/*! … */`: its `*/` ends it, and no other comment may open.
    in_exec: bool,
    /// Versioned executable comments above this version are plain comments.
    server_version: u32,
    versions: Vec<u32>,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn run(&mut self) -> Result<(), LexError> {
        while let Some(b) = self.peek(0) {
            match b {
                _ if is_space(b) => self.pos += 1,
                b';' => {
                    if self.in_exec {
                        return Err(LexError::SemicolonInComment);
                    }
                    self.pos += 1;
                    return Ok(());
                }
                b'#' => self.line_comment(),
                b'-' if self.peek(1) == Some(b'-')
                    && self.peek(2).is_none_or(|c| c <= 0x20 || c == 0x7f) =>
                {
                    self.line_comment()
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
                b'*' if self.in_exec && self.peek(1) == Some(b'/') => {
                    self.in_exec = false;
                    self.pos += 2;
                }
                b'\'' => self.string(b'\'')?,
                b'"' if !self.mode.ansi_quotes => self.string(b'"')?,
                b'"' => self.quoted_ident(b'"')?,
                b'`' => self.quoted_ident(b'`')?,
                _ if is_ident_byte(b) => self.word()?,
                0..=0x1f | 0x7f => return Err(LexError::ControlByte(b)),
                _ => {
                    self.tokens.push(Token::Punct(b));
                    self.pos += 1;
                }
            }
        }
        if self.in_exec {
            return Err(LexError::UnterminatedComment);
        }
        Ok(())
    }

    fn line_comment(&mut self) {
        while let Some(b) = self.peek(0) {
            self.pos += 1;
            if b == b'\n' {
                break;
            }
        }
    }

    /// `/* … */`, or an executable `/*! … */`, `/*!50100 … */`, `/*M! … */`, `/*M!100100 … */`
    /// whose content is lexed as code.
    fn block_comment(&mut self) -> Result<(), LexError> {
        if self.in_exec {
            return Err(LexError::NestedComment);
        }
        let bang = match (self.peek(2), self.peek(3)) {
            (Some(b'!'), _) => Some(3),
            (Some(b'M' | b'm'), Some(b'!')) => Some(4),
            _ => None,
        };
        if let Some(skip) = bang {
            self.pos += skip;
            let digits = self.src[self.pos..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if !matches!(digits, 0 | 5 | 6)
                || (digits > 0 && self.peek(digits).is_some_and(is_ident_byte))
            {
                return Err(LexError::BadVersion);
            }
            let version = std::str::from_utf8(&self.src[self.pos..self.pos + digits])
                .ok()
                .and_then(|v| v.parse::<u32>().ok());
            self.pos += digits;
            if let Some(version) = version {
                self.versions.push(version);
                if version > self.server_version {
                    return self.skip_comment_body(true);
                }
            }
            self.in_exec = true;
            return Ok(());
        }
        self.pos += 2;
        self.skip_comment_body(false)
    }

    /// Skip to just past the first `*/`. A skipped version comment may not contain `/*`: the
    /// server would nest it, and where it ends would then be in doubt.
    fn skip_comment_body(&mut self, versioned: bool) -> Result<(), LexError> {
        let body = &self.src[self.pos..];
        let Some(at) = body.windows(2).position(|w| w == b"*/") else {
            return Err(LexError::UnterminatedComment);
        };
        if versioned && body[..at].windows(2).any(|w| w == b"/*") {
            return Err(LexError::NestedComment);
        }
        self.pos += at + 2;
        Ok(())
    }

    /// A string literal opened by `quote` at `pos`; pushes its unescaped bytes.
    fn string(&mut self, quote: u8) -> Result<(), LexError> {
        self.pos += 1;
        let mut value = Vec::new();
        loop {
            let Some(b) = self.peek(0) else {
                return Err(LexError::UnterminatedString);
            };
            self.pos += 1;
            if b == quote {
                if self.peek(0) == Some(quote) {
                    value.push(quote);
                    self.pos += 1;
                    continue;
                }
                break;
            }
            if b == b'\\' && !self.mode.no_backslash_escapes {
                let Some(e) = self.peek(0) else {
                    return Err(LexError::UnterminatedString);
                };
                self.pos += 1;
                match e {
                    b'n' => value.push(b'\n'),
                    b't' => value.push(b'\t'),
                    b'r' => value.push(b'\r'),
                    b'b' => value.push(0x08),
                    b'0' => value.push(0),
                    b'Z' => value.push(0x1a),
                    // LIKE wildcards keep their backslash.
                    b'%' | b'_' => value.extend_from_slice(&[b'\\', e]),
                    _ => value.push(e),
                }
                continue;
            }
            value.push(b);
        }
        self.tokens.push(Token::Str(value));
        Ok(())
    }

    fn quoted_ident(&mut self, quote: u8) -> Result<(), LexError> {
        self.pos += 1;
        let mut name = Vec::new();
        loop {
            let Some(b) = self.peek(0) else {
                return Err(LexError::UnterminatedIdent);
            };
            self.pos += 1;
            if b == quote {
                if self.peek(0) == Some(quote) {
                    name.push(quote);
                    self.pos += 1;
                    continue;
                }
                break;
            }
            name.push(b);
        }
        let name = String::from_utf8(name).map_err(|_| LexError::InvalidUtf8)?;
        self.tokens.push(Token::Ident(name));
        Ok(())
    }

    /// A run of identifier bytes: a word, a number, or the prefix of `x'…'`, `b'…'`, `N'…'`,
    /// `_charset'…'`.
    fn word(&mut self) -> Result<(), LexError> {
        let start = self.pos;
        let len = self.src[start..]
            .iter()
            .take_while(|&&b| is_ident_byte(b))
            .count();
        let run = &self.src[start..start + len];
        if std::str::from_utf8(run).is_err() {
            return Err(LexError::InvalidUtf8);
        }
        self.pos += len;
        let quote_next = self.peek(0) == Some(b'\'');
        let dquote_next = self.peek(0) == Some(b'"') && !self.mode.ansi_quotes;
        match run {
            [b'x' | b'X' | b'b' | b'B'] if quote_next => {
                // Hex and bit literals have no escapes and end at the next quote.
                let body = &self.src[self.pos + 1..];
                let Some(at) = body.iter().position(|&b| b == b'\'') else {
                    return Err(LexError::UnterminatedString);
                };
                self.pos += 1 + at + 1;
                self.tokens.push(Token::Number);
                return Ok(());
            }
            [b'n' | b'N'] if quote_next => return self.string(b'\''),
            // `_utf8mb4'…'`: kept as a word, because the server reads `_name'…'` as an
            // identifier and an alias when `name` is not a character set.
            [b'_', ..] if quote_next || dquote_next => {
                self.tokens
                    .push(Token::Word(String::from_utf8_lossy(run).into_owned()));
                return self.string(if quote_next { b'\'' } else { b'"' });
            }
            _ => {}
        }
        let after_dot = self.tokens.last().is_some_and(|t| t.is_punct(b'.'));
        if !after_dot && run[0].is_ascii_digit() && self.number(run) {
            self.tokens.push(Token::Number);
            return Ok(());
        }
        self.tokens.push(Token::Word(
            String::from_utf8_lossy(&self.src[start..self.pos]).into_owned(),
        ));
        Ok(())
    }

    /// Decide whether a run starting with a digit is a number (consuming any fraction and
    /// exponent that follow it); MariaDB reads runs like `1abc` as identifiers.
    fn number(&mut self, run: &[u8]) -> bool {
        let digits = run.iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &run[digits..];
        let hex = run.len() > 2
            && (run.starts_with(b"0x") && run[2..].iter().all(u8::is_ascii_hexdigit)
                || run.starts_with(b"0b") && run[2..].iter().all(|b| matches!(b, b'0' | b'1')));
        if hex {
            return true;
        }
        if !rest.is_empty() && !matches!(rest[0], b'e' | b'E') {
            return false;
        }
        if !rest.is_empty() {
            // `1e5` is in the run already; `1e+5` / `1e-5` continue past it.
            let exp = &rest[1..];
            if !exp.is_empty() {
                return exp.iter().all(u8::is_ascii_digit);
            }
            return self.signed_exponent();
        }
        if self.peek(0) == Some(b'.')
            && self
                .peek(1)
                .is_none_or(|b| !is_ident_byte(b) || b.is_ascii_digit())
        {
            self.pos += 1;
            let frac = self.src[self.pos..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            self.pos += frac;
            if matches!(self.peek(0), Some(b'e' | b'E')) {
                let save = self.pos;
                self.pos += 1;
                let n = self.src[self.pos..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if n > 0 {
                    self.pos += n;
                } else if !self.signed_exponent() {
                    self.pos = save;
                }
            }
        }
        true
    }

    /// After `1e`, consume `+5` / `-5`; false (nothing consumed) if they do not follow.
    fn signed_exponent(&mut self) -> bool {
        if matches!(self.peek(0), Some(b'+' | b'-'))
            && self.peek(1).is_some_and(|b| b.is_ascii_digit())
        {
            self.pos += 1;
            while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                self.pos += 1;
            }
            true
        } else {
            false
        }
    }
}
