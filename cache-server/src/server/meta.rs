//! Meta commands (`mg ms md ma me`) against one namespace: flags in, return flags out, in
//! the order and with the strings memcached 1.6 uses (`docs/protocols/cache.md`).

use base64::Engine;

use super::classic::Detail;
use super::conn::Conn;
use super::counters::Ctr;
use super::App;
use crate::protocol::{Meta, MetaCmd, MetaFlags};
use crate::store::{
    ArithOpts, ArithOutcome, DeleteOpts, DeleteOutcome, GetOpts, StoreMode, StoreOutcome, StoreReq,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const BAD_TOKEN: &[u8] = b"CLIENT_ERROR bad token in command line format\r\n";
const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad command line format\r\n";

/// A meta request that cannot be executed: the reply line to send.
type MetaError = &'static [u8];

fn number<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// A numeric token of flag `c`, if present; a malformed one is an error.
fn num_flag<T: std::str::FromStr>(
    flags: &MetaFlags<'_>,
    c: u8,
    err: MetaError,
) -> Result<Option<T>, MetaError> {
    match flags.token(c) {
        None => Ok(None),
        Some(t) => number(t).map(Some).ok_or(err),
    }
}

/// The decoded key of a meta request, borrowed or decoded from base64 into `buf`.
fn decode_key<'k>(m: &Meta<'k>, buf: &'k mut [u8; 512]) -> Result<&'k [u8], MetaError> {
    decoded_key(m.key, m.flags.has(b'b'), buf)
}

/// `key` as sent, or decoded from base64 into `buf`.
pub(super) fn decoded_key<'k>(
    key: &'k [u8],
    base64: bool,
    buf: &'k mut [u8; 512],
) -> Result<&'k [u8], MetaError> {
    if !base64 {
        return Ok(key);
    }
    let n = B64
        .decode_slice(key, &mut buf[..])
        .map_err(|_| &b"CLIENT_ERROR error decoding key\r\n"[..])?;
    if n == 0 || n > 250 {
        return Err(BAD_FORMAT);
    }
    Ok(&buf[..n])
}

/// Writes return flags after a status word.
struct Ret<'o> {
    out: &'o mut Vec<u8>,
    num: itoa::Buffer,
}

impl Ret<'_> {
    fn word(&mut self, w: &[u8]) {
        self.out.extend_from_slice(w);
    }

    fn flag_num(&mut self, c: u8, n: impl itoa::Integer) {
        self.out.push(b' ');
        self.out.push(c);
        let s = self.num.format(n);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn flag_bytes(&mut self, c: u8, b: &[u8]) {
        self.out.push(b' ');
        self.out.push(c);
        self.out.extend_from_slice(b);
    }

    fn ttl(&mut self, exptime: u32, now: u32) {
        if exptime == 0 {
            self.flag_bytes(b't', b"-1");
        } else {
            self.flag_num(b't', exptime.saturating_sub(now));
        }
    }

    /// `k<key>` (base64 plus a `b` flag when the request used a binary key).
    fn key(&mut self, key: &[u8], binary: bool) {
        if binary {
            self.out.extend_from_slice(b" k");
            let start = self.out.len();
            self.out.resize(start + key.len().div_ceil(3) * 4, 0);
            let n = B64.encode_slice(key, &mut self.out[start..]).unwrap_or(0);
            self.out.truncate(start + n);
            self.out.extend_from_slice(b" b");
        } else {
            self.flag_bytes(b'k', key);
        }
    }

    /// The flags every status echoes: opaque and key.
    fn opaque_key(&mut self, flags: &MetaFlags<'_>, key: &[u8], binary: bool) {
        for (c, tok) in flags.iter() {
            match c {
                b'O' => self.flag_bytes(b'O', tok),
                b'k' => self.key(key, binary),
                _ => {}
            }
        }
    }

    fn end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }
}

impl Conn<'_> {
    /// Execute a meta command.
    pub(super) fn meta(&mut self, app: &App, m: Meta<'_>) {
        self.local.incr(Ctr::CmdMeta);
        let mut buf = [0u8; 512];
        let res = match decode_key(&m, &mut buf) {
            Ok(key) => match m.cmd {
                MetaCmd::Get => self.mg(app, key, &m.flags),
                MetaCmd::Set => self.ms(app, key, &m.flags, m.data),
                MetaCmd::Delete => self.md(app, key, &m.flags),
                MetaCmd::Arith => self.ma(app, key, &m.flags),
                MetaCmd::Debug => {
                    self.me(app, key, m.flags.has(b'b'));
                    Ok(())
                }
            },
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            self.out.extend_from_slice(e);
        }
    }

    fn ttl_flag(&self, flags: &MetaFlags<'_>, c: u8) -> Result<Option<u32>, MetaError> {
        let now = self.now;
        Ok(num_flag::<i64>(flags, c, BAD_TOKEN)?.map(|t| self.shared.clock.expiry_at(t, now)))
    }

    fn mg(&mut self, app: &App, key: &[u8], flags: &MetaFlags<'_>) -> Result<(), MetaError> {
        let now = self.now;
        let touch = self.ttl_flag(flags, b'T')?;
        let vivify = self.ttl_flag(flags, b'N')?;
        let recache_below = num_flag::<i64>(flags, b'R', BAD_TOKEN)?
            .map(|t| t.clamp(0, i64::from(u32::MAX)) as u32);
        let opts = GetOpts {
            touch,
            bump: !flags.has(b'u'),
            vivify,
            recache_below,
        };
        let binary = flags.has(b'b');
        let want_value = flags.has(b'v');
        let quiet = flags.has(b'q');
        let out = &mut self.out;
        let hit = app.ns.get(key, now, &opts, |found| {
            let Some((item, gf)) = found else {
                return false;
            };
            let mut r = Ret {
                out,
                num: itoa::Buffer::new(),
            };
            if want_value {
                r.word(b"VA ");
                let s = r.num.format(item.value.len());
                r.out.extend_from_slice(s.as_bytes());
            } else {
                r.word(b"HD");
            }
            for (c, tok) in flags.iter() {
                match c {
                    b's' => r.flag_num(b's', item.value.len()),
                    b't' => r.ttl(item.exptime, now),
                    b'c' => r.flag_num(b'c', item.cas),
                    b'f' => r.flag_num(b'f', item.flags),
                    b'l' => r.flag_num(b'l', now.saturating_sub(gf.last_access)),
                    b'h' => r.flag_num(b'h', u8::from(gf.hit_before)),
                    b'O' => r.flag_bytes(b'O', tok),
                    // memcached returns the key in the form it was stored in.
                    b'k' => r.key(key, item.binary_key),
                    _ => {}
                }
            }
            if gf.win_sent && !gf.won {
                r.word(b" Z");
            }
            if gf.stale {
                r.word(b" X");
            }
            if gf.won {
                r.word(b" W");
            }
            r.end();
            if want_value {
                r.out.extend_from_slice(item.value);
                r.end();
            }
            true
        });
        if touch.is_some() {
            self.local.incr(Ctr::CmdTouch);
            self.local.incr(if hit {
                Ctr::TouchHits
            } else {
                Ctr::TouchMisses
            });
        } else {
            self.local.incr(Ctr::CmdGet);
            self.local
                .incr(if hit { Ctr::GetHits } else { Ctr::GetMisses });
        }
        self.detail(key, Detail::Get { hit });
        if !hit && !quiet {
            let mut r = Ret {
                out: &mut self.out,
                num: itoa::Buffer::new(),
            };
            r.word(b"EN");
            r.opaque_key(flags, key, binary);
            r.end();
        }
        Ok(())
    }

    fn ms(
        &mut self,
        app: &App,
        key: &[u8],
        flags: &MetaFlags<'_>,
        data: &[u8],
    ) -> Result<(), MetaError> {
        let mode = match flags.token(b'M') {
            None => StoreMode::Set,
            Some([m]) => match m {
                b'E' | b'e' => StoreMode::Add,
                b'A' | b'a' => StoreMode::Append,
                b'P' | b'p' => StoreMode::Prepend,
                b'R' | b'r' => StoreMode::Replace,
                b'S' | b's' => StoreMode::Set,
                _ => return Err(b"CLIENT_ERROR invalid mode for ms M token\r\n"),
            },
            Some(_) => return Err(b"CLIENT_ERROR incorrect length for M token\r\n"),
        };
        let client_flags = num_flag::<u32>(flags, b'F', BAD_FORMAT)?.unwrap_or(0);
        let exptime = self.ttl_flag(flags, b'T')?.unwrap_or(0);
        let compare_cas = num_flag::<u64>(flags, b'C', BAD_TOKEN)?;
        let new_cas = num_flag::<u64>(flags, b'E', BAD_TOKEN)?;
        let vivify = self.ttl_flag(flags, b'N')?;
        self.local.incr(Ctr::CmdSet);
        self.detail(key, Detail::Set);
        let req = StoreReq {
            mode,
            key,
            value: data,
            flags: client_flags,
            exptime,
            compare_cas,
            new_cas,
            invalidate: flags.has(b'I'),
            vivify,
            binary_key: flags.has(b'b'),
        };
        let outcome = app.ns.store(&req, self.now);
        self.count_store(compare_cas.is_some(), &outcome);
        let (status, cas): (&[u8], u64) = match outcome {
            StoreOutcome::Stored { cas } => (b"HD", cas),
            StoreOutcome::NotStored => (b"NS", 0),
            StoreOutcome::Exists => (b"EX", 0),
            StoreOutcome::NotFound => (b"NF", 0),
            StoreOutcome::TooLarge => return Err(b"SERVER_ERROR object too large for cache\r\n"),
            StoreOutcome::OutOfMemory => {
                return Err(b"SERVER_ERROR out of memory storing object\r\n")
            }
        };
        if status == b"HD" && flags.has(b'q') {
            return Ok(());
        }
        let binary = flags.has(b'b');
        let mut r = Ret {
            out: &mut self.out,
            num: itoa::Buffer::new(),
        };
        r.word(status);
        for (c, tok) in flags.iter() {
            match c {
                b'O' => r.flag_bytes(b'O', tok),
                b'k' => r.key(key, binary),
                b'c' => r.flag_num(b'c', cas),
                _ => {}
            }
        }
        r.end();
        Ok(())
    }

    fn md(&mut self, app: &App, key: &[u8], flags: &MetaFlags<'_>) -> Result<(), MetaError> {
        let opts = DeleteOpts {
            compare_cas: num_flag::<u64>(flags, b'C', BAD_TOKEN)?,
            new_cas: num_flag::<u64>(flags, b'E', BAD_TOKEN)?,
            invalidate: flags.has(b'I'),
            invalidate_ttl: self.ttl_flag(flags, b'T')?,
            drop_value: flags.has(b'x'),
        };
        let status: &[u8] = match app.ns.delete(key, &opts, self.now) {
            DeleteOutcome::Deleted => {
                self.local.incr(Ctr::DeleteHits);
                b"HD"
            }
            DeleteOutcome::NotFound => {
                self.local.incr(Ctr::DeleteMisses);
                b"NF"
            }
            DeleteOutcome::Exists => {
                self.local.incr(Ctr::DeleteMisses);
                b"EX"
            }
        };
        self.detail(key, Detail::Del);
        if status == b"HD" && flags.has(b'q') {
            return Ok(());
        }
        let mut r = Ret {
            out: &mut self.out,
            num: itoa::Buffer::new(),
        };
        r.word(status);
        r.opaque_key(flags, key, flags.has(b'b'));
        r.end();
        Ok(())
    }

    fn ma(&mut self, app: &App, key: &[u8], flags: &MetaFlags<'_>) -> Result<(), MetaError> {
        let incr = match flags.token(b'M') {
            None => true,
            Some([b'I' | b'i' | b'+']) => true,
            Some([b'D' | b'd' | b'-']) => false,
            Some(_) => return Err(b"CLIENT_ERROR invalid mode for ma M token\r\n"),
        };
        let delta = num_flag::<u64>(flags, b'D', b"CLIENT_ERROR invalid numeric delta value\r\n")?
            .unwrap_or(1);
        let initial = num_flag::<u64>(
            flags,
            b'J',
            b"CLIENT_ERROR invalid numeric initial value\r\n",
        )?
        .unwrap_or(0);
        let vivify = self.ttl_flag(flags, b'N')?.map(|exp| (initial, exp));
        let opts = ArithOpts {
            incr,
            delta,
            compare_cas: num_flag::<u64>(flags, b'C', BAD_TOKEN)?,
            new_cas: num_flag::<u64>(flags, b'E', BAD_TOKEN)?,
            vivify,
            touch: self.ttl_flag(flags, b'T')?,
        };
        let outcome = app.ns.arith(key, &opts, self.now);
        self.count_arith(incr, &outcome);
        let binary = flags.has(b'b');
        let now = self.now;
        let mut r = Ret {
            out: &mut self.out,
            num: itoa::Buffer::new(),
        };
        match outcome {
            ArithOutcome::Value {
                value,
                cas,
                exptime,
            } => {
                if flags.has(b'q') {
                    return Ok(());
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(value);
                if flags.has(b'v') {
                    r.word(b"VA ");
                    let s = r.num.format(digits.len());
                    r.out.extend_from_slice(s.as_bytes());
                } else {
                    r.word(b"HD");
                }
                for (c, tok) in flags.iter() {
                    match c {
                        b'c' => r.flag_num(b'c', cas),
                        b't' => r.ttl(exptime, now),
                        b'O' => r.flag_bytes(b'O', tok),
                        b'k' => r.key(key, binary),
                        _ => {}
                    }
                }
                r.end();
                if flags.has(b'v') {
                    r.out.extend_from_slice(digits.as_bytes());
                    r.end();
                }
            }
            ArithOutcome::NotFound | ArithOutcome::Exists => {
                let word: &[u8] = if matches!(outcome, ArithOutcome::NotFound) {
                    b"NF"
                } else {
                    b"EX"
                };
                r.word(word);
                r.opaque_key(flags, key, binary);
                r.end();
            }
            ArithOutcome::NonNumeric => {
                return Err(b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
            }
            ArithOutcome::OutOfMemory => return Err(b"SERVER_ERROR out of memory\r\n"),
        }
        Ok(())
    }

    fn me(&mut self, app: &App, key: &[u8], binary: bool) {
        let now = self.now;
        let opts = GetOpts {
            bump: false,
            ..GetOpts::default()
        };
        let out = &mut self.out;
        let found = app.ns.get(key, now, &opts, |found| {
            let Some((item, gf)) = found else {
                return false;
            };
            let mut r = Ret {
                out,
                num: itoa::Buffer::new(),
            };
            r.word(b"ME ");
            if binary {
                let start = r.out.len();
                r.out.resize(start + key.len().div_ceil(3) * 4, 0);
                let n = B64.encode_slice(key, &mut r.out[start..]).unwrap_or(0);
                r.out.truncate(start + n);
            } else {
                r.word(key);
            }
            r.word(b" exp=");
            if item.exptime == 0 {
                r.word(b"-1");
            } else {
                let s = r.num.format(item.exptime.saturating_sub(now));
                r.out.extend_from_slice(s.as_bytes());
            }
            r.word(b" la=");
            let s = r.num.format(now.saturating_sub(gf.last_access));
            r.out.extend_from_slice(s.as_bytes());
            r.word(b" cas=");
            let s = r.num.format(item.cas);
            r.out.extend_from_slice(s.as_bytes());
            r.word(if gf.hit_before {
                b" fetch=yes"
            } else {
                b" fetch=no"
            });
            r.word(b" cls=1 size=");
            let s = r.num.format(item.key.len() + item.value.len());
            r.out.extend_from_slice(s.as_bytes());
            r.end();
            true
        });
        if !found {
            self.out.extend_from_slice(b"EN\r\n");
        }
    }
}
