//! Byte layout of one item inside a segment: a small header, then key, then value.
//! Fixed-width fields come first so they can be rewritten in place (bits, times, cas); the
//! value length and client flags are varints because they are usually small.

/// The item has been read by a client since it was stored (meta `h`, `evicted_unfetched`).
pub(super) const FETCHED: u8 = 1;
/// Read or updated since the last eviction pass looked at it: earns one copy-forward.
pub(super) const ACCESSED: u8 = 2;
/// Marked stale by an invalidation (meta `I`).
pub(super) const STALE: u8 = 4;
/// A recache "win" token has been handed out (meta `W`/`Z`).
pub(super) const WIN_SENT: u8 = 8;
/// Deleted, replaced, expired or evicted: no hash entry points here any more.
pub(super) const DEAD: u8 = 16;
/// The key was sent base64-encoded (meta `b`): return it that way.
pub(super) const BINARY_KEY: u8 = 32;

const AT_BITS: usize = 0;
const AT_KLEN: usize = 1;
const AT_EXPTIME: usize = 2;
const AT_ATIME: usize = 6;
const AT_CAS: usize = 10;

/// Where the header fields sit; the cas field exists only when cas is enabled (`-C` drops it).
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    fixed: usize,
}

impl Layout {
    pub(super) fn new(use_cas: bool) -> Self {
        Layout {
            fixed: if use_cas { AT_CAS + 8 } else { AT_CAS },
        }
    }

    pub(super) fn use_cas(self) -> bool {
        self.fixed > AT_CAS
    }

    /// Bytes an item with these sizes occupies in a segment.
    pub(super) fn item_size(self, klen: usize, vlen: usize, flags: u32) -> usize {
        self.fixed + varint_len(vlen as u32) + varint_len(flags) + klen + vlen
    }

    /// Parse the header of the item starting at `buf[0]`.
    pub(super) fn read(self, buf: &[u8]) -> Header {
        let cas = if self.use_cas() {
            u64_at(buf, AT_CAS)
        } else {
            0
        };
        let mut at = self.fixed;
        let vlen = read_varint(buf, &mut at);
        let flags = read_varint(buf, &mut at);
        Header {
            bits: buf[AT_BITS],
            klen: buf[AT_KLEN],
            exptime: u32_at(buf, AT_EXPTIME),
            atime: u32_at(buf, AT_ATIME),
            cas,
            vlen,
            flags,
            body: at as u32,
        }
    }

    /// Write a whole item at the start of `buf` (exactly `item_size` bytes long); the value is
    /// the concatenation of `value` parts so append/prepend need no extra copy.
    pub(super) fn write(self, buf: &mut [u8], item: &NewItem<'_>) {
        let vlen: usize = item.value.iter().map(|p| p.len()).sum();
        debug_assert_eq!(buf.len(), self.item_size(item.key.len(), vlen, item.flags));
        buf[AT_BITS] = item.bits;
        buf[AT_KLEN] = item.key.len() as u8;
        buf[AT_EXPTIME..AT_EXPTIME + 4].copy_from_slice(&item.exptime.to_le_bytes());
        buf[AT_ATIME..AT_ATIME + 4].copy_from_slice(&item.atime.to_le_bytes());
        if self.use_cas() {
            buf[AT_CAS..AT_CAS + 8].copy_from_slice(&item.cas.to_le_bytes());
        }
        let mut at = self.fixed;
        write_varint(buf, &mut at, vlen as u32);
        write_varint(buf, &mut at, item.flags);
        buf[at..at + item.key.len()].copy_from_slice(item.key);
        at += item.key.len();
        for part in item.value {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    }

    pub(super) fn set_cas(self, buf: &mut [u8], cas: u64) {
        if self.use_cas() {
            buf[AT_CAS..AT_CAS + 8].copy_from_slice(&cas.to_le_bytes());
        }
    }
}

pub(super) fn set_bits(buf: &mut [u8], bits: u8) {
    buf[AT_BITS] = bits;
}

pub(super) fn bits(buf: &[u8]) -> u8 {
    buf[AT_BITS]
}

pub(super) fn set_exptime(buf: &mut [u8], exptime: u32) {
    buf[AT_EXPTIME..AT_EXPTIME + 4].copy_from_slice(&exptime.to_le_bytes());
}

pub(super) fn set_atime(buf: &mut [u8], atime: u32) {
    buf[AT_ATIME..AT_ATIME + 4].copy_from_slice(&atime.to_le_bytes());
}

/// Everything needed to write a fresh item.
pub(super) struct NewItem<'a> {
    pub bits: u8,
    pub exptime: u32,
    pub atime: u32,
    pub cas: u64,
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [&'a [u8]],
}

/// A decoded item header; `body` is the offset of the key from the item's first byte.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub bits: u8,
    pub klen: u8,
    pub exptime: u32,
    pub atime: u32,
    pub cas: u64,
    pub vlen: u32,
    pub flags: u32,
    pub body: u32,
}

impl Header {
    pub(super) fn size(&self) -> usize {
        self.body as usize + self.klen as usize + self.vlen as usize
    }

    pub(super) fn key<'a>(&self, item: &'a [u8]) -> &'a [u8] {
        let at = self.body as usize;
        &item[at..at + self.klen as usize]
    }

    pub(super) fn value<'a>(&self, item: &'a [u8]) -> &'a [u8] {
        let at = self.body as usize + self.klen as usize;
        &item[at..at + self.vlen as usize]
    }

    pub(super) fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Whether the item is still visible at `now`, given the namespace's flush point.
    pub(super) fn liveness(&self, now: u32, flush_at: u32) -> Live {
        if self.exptime != 0 && self.exptime <= now {
            Live::Expired
        } else if flush_at != 0 && flush_at <= now && self.atime <= flush_at {
            Live::Flushed
        } else {
            Live::Yes
        }
    }
}

/// Why an item is or is not visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Live {
    Yes,
    Expired,
    Flushed,
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

pub(super) fn varint_len(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn write_varint(buf: &mut [u8], at: &mut usize, mut v: u32) {
    while v >= 0x80 {
        buf[*at] = (v as u8) | 0x80;
        v >>= 7;
        *at += 1;
    }
    buf[*at] = v as u8;
    *at += 1;
}

fn read_varint(buf: &[u8], at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = buf[*at];
        *at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Parse a stored value as memcached's `safe_strtoull` does for incr/decr: leading whitespace,
/// an optional sign, decimal digits, then whitespace or the end. An empty value, overflow, or a
/// negative number is not numeric.
pub(super) fn parse_counter(v: &[u8]) -> Option<u64> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = 0;
    while i < v.len() && is_space(v[i]) {
        i += 1;
    }
    let negative = match v.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut n: u64 = 0;
    while i < v.len() && v[i].is_ascii_digit() {
        n = n.checked_mul(10)?.checked_add(u64::from(v[i] - b'0'))?;
        i += 1;
    }
    if i == start || (i < v.len() && !is_space(v[i])) {
        return None;
    }
    if negative {
        // strtoull negates; memcached then rejects results that look negative as signed.
        let r = n.wrapping_neg();
        return if (r as i64) < 0 { None } else { Some(r) };
    }
    Some(n)
}

/// Decimal digits of `v` in a stack buffer; returns the buffer and the used length.
pub(super) fn decimal(v: u64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut tmp = [0u8; 20];
    let mut n = 0;
    let mut x = v;
    loop {
        tmp[n] = b'0' + (x % 10) as u8;
        n += 1;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    for i in 0..n {
        buf[i] = tmp[n - 1 - i];
    }
    (buf, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_and_without_cas() {
        for use_cas in [true, false] {
            let layout = Layout::new(use_cas);
            let value: &[&[u8]] = &[b"hello ", b"world"];
            for (flags, key) in [(0u32, &b"k"[..]), (u32::MAX, &b"a-longer-key"[..])] {
                let size = layout.item_size(key.len(), 11, flags);
                let mut buf = vec![0u8; size];
                let item = NewItem {
                    bits: FETCHED | STALE,
                    exptime: 77,
                    atime: 5,
                    cas: 1234,
                    flags,
                    key,
                    value,
                };
                layout.write(&mut buf, &item);
                let h = layout.read(&buf);
                assert_eq!(h.size(), size);
                assert_eq!(h.key(&buf), key);
                assert_eq!(h.value(&buf), b"hello world");
                assert_eq!((h.flags, h.exptime, h.atime), (flags, 77, 5));
                assert_eq!(h.cas, if use_cas { 1234 } else { 0 });
                assert!(h.has(FETCHED) && h.has(STALE) && !h.has(DEAD));
            }
        }
    }

    #[test]
    fn header_is_small() {
        // 100-byte value, 0 flags: 18 fixed + 1 + 1 with cas.
        assert_eq!(Layout::new(true).item_size(12, 100, 0), 18 + 2 + 12 + 100);
        assert_eq!(Layout::new(false).item_size(12, 100, 0), 10 + 2 + 12 + 100);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u32::MAX), 5);
    }

    #[test]
    fn in_place_setters() {
        let layout = Layout::new(true);
        let mut buf = vec![0u8; layout.item_size(1, 1, 0)];
        layout.write(
            &mut buf,
            &NewItem {
                bits: 0,
                exptime: 0,
                atime: 0,
                cas: 1,
                flags: 0,
                key: b"k",
                value: &[b"v"],
            },
        );
        set_bits(&mut buf, DEAD);
        set_exptime(&mut buf, 9);
        set_atime(&mut buf, 8);
        layout.set_cas(&mut buf, 7);
        let h = layout.read(&buf);
        assert_eq!((bits(&buf), h.exptime, h.atime, h.cas), (DEAD, 9, 8, 7));
        assert_eq!(h.value(&buf), b"v");
    }

    #[test]
    fn liveness_rules() {
        let h = |exptime, atime| Header {
            bits: 0,
            klen: 0,
            exptime,
            atime,
            cas: 0,
            vlen: 0,
            flags: 0,
            body: 0,
        };
        assert_eq!(h(0, 0).liveness(100, 0), Live::Yes);
        assert_eq!(h(100, 0).liveness(100, 0), Live::Expired);
        assert_eq!(h(101, 0).liveness(100, 0), Live::Yes);
        // Flush at 50: items last updated at or before 50 die once now >= 50.
        assert_eq!(h(0, 50).liveness(49, 50), Live::Yes);
        assert_eq!(h(0, 50).liveness(50, 50), Live::Flushed);
        assert_eq!(h(0, 51).liveness(60, 50), Live::Yes);
    }

    #[test]
    fn counter_parsing_matches_memcached() {
        assert_eq!(parse_counter(b"0"), Some(0));
        assert_eq!(parse_counter(b"  42"), Some(42));
        assert_eq!(parse_counter(b"9 "), Some(9));
        assert_eq!(parse_counter(b"+7"), Some(7));
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b"000000000000000000000001"), Some(1));
        assert_eq!(parse_counter(b""), None);
        assert_eq!(parse_counter(b"   "), None);
        assert_eq!(parse_counter(b"-5"), None);
        assert_eq!(parse_counter(b"12abc"), None);
        assert_eq!(parse_counter(b"abc"), None);
    }

    #[test]
    fn decimal_digits() {
        for v in [0u64, 9, 10, 12345, u64::MAX] {
            let (buf, n) = decimal(v);
            assert_eq!(&buf[..n], v.to_string().as_bytes());
        }
    }
}
