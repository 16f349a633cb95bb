//! Meta commands (`mg ms md ma me mn`): the request shape and its flags.

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    /// `mg <key> <flags>*`
    Get,
    /// `ms <key> <datalen> <flags>*` followed by a data block
    Set,
    /// `md <key> <flags>*`
    Delete,
    /// `ma <key> <flags>*`
    Arith,
    /// `me <key> [b]`
    Debug,
}

/// A meta request. The key is as sent: base64 when the `b` flag is present (the caller decodes
/// it and checks the decoded length).
#[derive(Debug, PartialEq, Eq)]
pub struct Meta<'a> {
    pub cmd: MetaCmd,
    pub key: &'a [u8],
    pub flags: MetaFlags<'a>,
    /// The data block of `ms` without its `\r\n`; empty for the others.
    pub data: &'a [u8],
}

/// Every flag some meta command understands (memcached's `_meta_flag_preparse`, plus `E` and
/// `x` of later versions); any other letter is refused as memcached refuses it.
pub const KNOWN_FLAGS: &[u8] = b"bcfhklqstuvxCDEFIJLMNOPRST";

/// Most flags one meta command may carry (memcached's limit on tokens per line).
pub const MAX_META_FLAGS: usize = 24;

/// The flags of a meta command: each a single letter, optionally followed by a token
/// (`T30`, `Oabc`). Looking a flag up is a bit test; its token a short scan.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MetaFlags<'a> {
    present: u64,
    tokens: [(u8, &'a [u8]); MAX_META_FLAGS],
    len: u8,
}

impl std::fmt::Debug for MetaFlags<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for (c, t) in self.iter() {
            l.entry(&format_args!("{}{}", c as char, String::from_utf8_lossy(t)));
        }
        l.finish()
    }
}

impl Default for MetaFlags<'_> {
    fn default() -> Self {
        MetaFlags {
            present: 0,
            tokens: [(0, &[]); MAX_META_FLAGS],
            len: 0,
        }
    }
}

fn bit(c: u8) -> Option<u64> {
    match c {
        b'a'..=b'z' => Some(1 << (c - b'a')),
        b'A'..=b'Z' => Some(1 << (26 + c - b'A')),
        _ => None,
    }
}

impl<'a> MetaFlags<'a> {
    /// Add flag `c` with `token` (empty when the flag has none). Fails on a character that is
    /// not a letter, on a repeated flag and past [`MAX_META_FLAGS`].
    pub fn push(&mut self, c: u8, token: &'a [u8]) -> Result<(), &'static [u8]> {
        let b = bit(c).ok_or(&b"CLIENT_ERROR invalid flag\r\n"[..])?;
        if self.present & b != 0 {
            return Err(b"CLIENT_ERROR duplicate flag\r\n");
        }
        if usize::from(self.len) == MAX_META_FLAGS {
            return Err(b"CLIENT_ERROR options flags are too long\r\n");
        }
        self.present |= b;
        self.tokens[usize::from(self.len)] = (c, token);
        self.len += 1;
        Ok(())
    }

    /// Whether flag `c` was given.
    pub fn has(&self, c: u8) -> bool {
        bit(c).is_some_and(|b| self.present & b != 0)
    }

    /// The token of flag `c`, if given (possibly empty).
    pub fn token(&self, c: u8) -> Option<&'a [u8]> {
        if !self.has(c) {
            return None;
        }
        self.iter().find(|&(f, _)| f == c).map(|(_, t)| t)
    }

    /// The flags in the order they were sent.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        self.tokens[..usize::from(self.len)].iter().copied()
    }

    /// How many flags were given.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when no flag was given.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
