//! Properties the protocol decoders keep on any input, checked by the `packet` fuzz target
//! (`fuzz/query`) and by the replay of its seed corpus in the unit tests.

use super::command::Command;
use super::handshake::{ClientHello, Greeting};
use super::response::{Expect, Tracker};
use super::{caps, decode_packet, encode_packet, reply, Decode};

/// Checks every decoder on `data`; panics with a description when a property fails.
pub fn check_invariants(data: &[u8]) {
    for limit in [64, 1 << 16, 64 << 20] {
        check_framing(data, limit);
    }
    let first = ClientHello::decode(data);
    assert_eq!(
        first,
        ClientHello::decode(data),
        "hello decoding is deterministic"
    );
    if let Ok(g) = Greeting::decode(data) {
        assert_eq!(
            Greeting::decode(&g.encode()).as_ref(),
            Ok(&g),
            "greeting round trip"
        );
    }
    for c in [0, caps::PROXY_SERVER] {
        assert_eq!(Command::decode(data, c), Command::decode(data, c));
    }
    if let Ok(ok) = reply::Ok::decode(data) {
        let again = reply::Ok::decode(&ok.encode()).expect("an encoded OK decodes");
        assert_eq!(
            (again.affected_rows, again.last_insert_id, again.status),
            (ok.affected_rows, ok.last_insert_id, ok.status)
        );
    }
    if let Ok(e) = reply::Err::decode(data) {
        let again = reply::Err::decode(&e.encode()).expect("an encoded ERR decodes");
        assert_eq!((again.code, again.sqlstate), (e.code, e.sqlstate));
    }
    for expect in [
        Expect::ResultSets,
        Expect::Prepare,
        Expect::FieldList,
        Expect::OnePacket,
    ] {
        for deprecate in [false, true] {
            check_tracker(data, expect, deprecate);
        }
    }
}

/// A decoded packet re-encodes to the bytes it came from, its payload is within the limit,
/// and every proper prefix of it is `Incomplete`.
fn check_framing(data: &[u8], limit: usize) {
    match decode_packet(data, limit) {
        Ok(Decode::Done(p, n)) => {
            assert!(n <= data.len() && p.payload.len() <= limit);
            let mut again = Vec::new();
            encode_packet(p.seq, &p.payload, &mut again);
            assert_eq!(&again[..], &data[..n], "framing is canonical");
            for cut in [0, n / 2, n.saturating_sub(1)] {
                if cut < n {
                    assert_eq!(decode_packet(&data[..cut], limit), Ok(Decode::Incomplete));
                }
            }
        }
        Ok(Decode::Incomplete) | Err(_) => {}
    }
}

/// Fed all at once or a few bytes at a time, the tracker consumes the same bytes, reaches the
/// same end and fails the same way.
fn check_tracker(data: &[u8], expect: Expect, deprecate: bool) {
    let whole = run_tracker(data, expect, deprecate, data.len().max(1));
    for chunk in [1, 5] {
        assert_eq!(
            run_tracker(data, expect, deprecate, chunk),
            whole,
            "tracker depends on how the bytes arrive"
        );
    }
}

fn run_tracker(data: &[u8], expect: Expect, deprecate: bool, chunk: usize) -> (usize, bool, bool) {
    let mut t = Tracker::new(expect, deprecate, Some(1 << 20));
    let mut buf: Vec<u8> = Vec::new();
    let mut consumed = 0;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        match t.feed(&buf) {
            Ok(p) => {
                assert!(p.consumed <= buf.len());
                consumed += p.consumed;
                buf.drain(..p.consumed);
                if p.done || p.over_limit {
                    return (consumed, p.done, false);
                }
            }
            // Where it fails is the same; what was consumed before depends on the chunks.
            Err(_) => return (0, false, true),
        }
    }
    (consumed, false, false)
}
