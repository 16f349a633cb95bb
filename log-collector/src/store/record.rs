//! The on-disk format, as pure code: segment headers and checksummed records.
//!
//! A segment file is a 32-byte header (`BERTHLOG`, format version, first sequence number,
//! CRC) followed by records. A record is a 28-byte header (payload length, CRC-32 of
//! everything after the CRC, sequence number, receive time in Unix nanoseconds, severity,
//! three zero bytes) and the event as one JSON object. All integers are little-endian.

/// Magic bytes at the start of every segment.
pub const MAGIC: &[u8; 8] = b"BERTHLOG";
/// The segment format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 28;
/// Largest payload a record may declare; anything larger is corruption.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// A segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// Sequence number of the first record the segment was created for.
    pub first_seq: u64,
}

/// Why a segment header is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Shorter than a header (a crash while creating the file).
    #[error("segment header is truncated")]
    Truncated,
    /// Not a segment, or a damaged header.
    #[error("segment header is damaged")]
    Damaged,
    /// Written by a newer (or unknown) format.
    #[error(
        "segment format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&b[..24]);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses a header.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if &b[..8] != MAGIC || crc32fast::hash(&b[..24]) != u32_at(b, 24) {
            return Err(HeaderError::Damaged);
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            version,
            first_seq: u64_at(b, 16),
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A decoded record, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Per-app sequence number (the cursor).
    pub seq: u64,
    /// When the collector received it (Unix nanoseconds, never decreasing within an app).
    pub time: i64,
    /// Severity 0..=7.
    pub level: u8,
    /// The event, one JSON object.
    pub payload: &'a [u8],
}

/// Appends a record to `out`.
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(rec.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&rec.seq.to_le_bytes());
    out.extend_from_slice(&rec.time.to_le_bytes());
    out.extend_from_slice(&[rec.level, 0, 0, 0]);
    out.extend_from_slice(rec.payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The result of decoding at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record of `len` bytes.
    Record(Record<'a>, usize),
    /// The buffer ends inside a record (or is empty).
    Incomplete,
    /// Not a valid record: bad checksum or an impossible length.
    Corrupt,
}

/// Decodes the record at the start of `b`.
pub fn decode(b: &[u8]) -> Decoded<'_> {
    if b.len() < RECORD_HEADER_LEN {
        return Decoded::Incomplete;
    }
    let len = u32_at(b, 0) as usize;
    if len > MAX_PAYLOAD || b[25..28] != [0, 0, 0] || b[24] > 7 {
        return Decoded::Corrupt;
    }
    let total = RECORD_HEADER_LEN + len;
    if b.len() < total {
        return Decoded::Incomplete;
    }
    if crc32fast::hash(&b[8..total]) != u32_at(b, 4) {
        return Decoded::Corrupt;
    }
    let time = i64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8]));
    Decoded::Record(
        Record {
            seq: u64_at(b, 8),
            time,
            level: b[24],
            payload: &b[RECORD_HEADER_LEN..total],
        },
        total,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_damage() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            first_seq: 42,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        assert_eq!(SegmentHeader::decode(&b[..10]), Err(HeaderError::Truncated));
        let mut bad = b;
        bad[17] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(HeaderError::Damaged));
        let newer = SegmentHeader {
            version: 9,
            first_seq: 1,
        }
        .encode();
        assert_eq!(
            SegmentHeader::decode(&newer),
            Err(HeaderError::UnsupportedVersion(9))
        );
    }

    proptest! {
        #[test]
        fn records_round_trip_and_every_prefix_is_incomplete(seq: u64, time: i64, level in 0u8..8, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let rec = Record { seq, time, level, payload: &payload };
            let mut out = Vec::new();
            encode(&rec, &mut out);
            prop_assert_eq!(decode(&out), Decoded::Record(rec, out.len()));
            for cut in 0..out.len() {
                prop_assert_eq!(decode(&out[..cut]), Decoded::Incomplete);
            }
        }

        #[test]
        fn a_flipped_bit_is_never_a_valid_different_record(payload in proptest::collection::vec(any::<u8>(), 1..100), bit in 0usize..800) {
            let rec = Record { seq: 7, time: 9, level: 3, payload: &payload };
            let mut out = Vec::new();
            encode(&rec, &mut out);
            let bit = bit % (out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            match decode(&out) {
                Decoded::Record(r, _) => prop_assert!(false, "corruption accepted: {:?}", r),
                Decoded::Incomplete | Decoded::Corrupt => {}
            }
        }
    }
}
