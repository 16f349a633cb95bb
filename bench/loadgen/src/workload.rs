//! What the load looks like: key names, the deterministic value of each key (so every hit can be
//! checked byte for byte), and a small fast RNG for choosing keys and operations.

/// Key names are `key:%08d`, as in the issue text, so both servers see identical keys.
pub fn key_name(out: &mut Vec<u8>, index: u64) {
    out.clear();
    out.extend_from_slice(format!("key:{index:08}").as_bytes());
}

/// The value stored under every key is a window of a repeating alphabet, shifted by the key
/// index, so a value returned for the wrong key (or truncated, or corrupted) is detected.
#[derive(Debug, Clone)]
pub struct Values {
    pattern: Vec<u8>,
    size: usize,
}

impl Values {
    /// Values of `size` bytes.
    pub fn new(size: usize) -> Self {
        let pattern = (0..size + 26).map(|i| b'a' + (i % 26) as u8).collect();
        Self { pattern, size }
    }

    /// The value of key `index`.
    pub fn value(&self, index: u64) -> &[u8] {
        let shift = (index % 26) as usize;
        &self.pattern[shift..shift + self.size]
    }

    /// Client flags stored with key `index`, checked on every hit too.
    pub fn flags(index: u64) -> u32 {
        (index % 65_536) as u32
    }
}

/// xorshift64*: a few nanoseconds per draw and no dependency; quality is ample for picking
/// uniformly among keys and between get and set.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is remapped since xorshift would stick at 0).
    pub fn new(seed: u64) -> Self {
        // splitmix64 step so nearby seeds (one per connection) give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (multiply-shift; bias is negligible for n far below 2^64).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format() {
        let mut k = Vec::new();
        key_name(&mut k, 42);
        assert_eq!(k, b"key:00000042");
        key_name(&mut k, 123_456_789);
        assert_eq!(k, b"key:123456789");
    }

    #[test]
    fn values_differ_by_key_and_have_the_size() {
        let v = Values::new(100);
        assert_eq!(v.value(0).len(), 100);
        assert_eq!(&v.value(0)[..3], b"abc");
        assert_eq!(&v.value(1)[..3], b"bcd");
        assert_eq!(v.value(3), v.value(29));
        assert_ne!(v.value(3), v.value(4));
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let mut r = Rng::new(0);
        let mut buckets = [0u32; 10];
        let mut gets = 0;
        for _ in 0..100_000 {
            buckets[r.below(10) as usize] += 1;
            if r.unit() < 0.9 {
                gets += 1;
            }
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
        assert!((89_000..91_000).contains(&gets), "{gets}");
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
