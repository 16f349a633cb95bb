use proptest::prelude::*;

use super::command::{Command, COM_QUERY};
use super::handshake::{
    native_password_response, ClientHello, Greeting, HandshakeResponse, NATIVE_PASSWORD,
};
use super::response::{Expect, Tracker};
use super::*;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_packet(seq, payload, &mut out);
    out
}

#[test]
fn frames_round_trip_and_split_at_16_mib() {
    let big = vec![7u8; MAX_FRAME * 2 + 5];
    let wire = packet(3, &big);
    assert_eq!(wire.len(), big.len() + 3 * 4);
    match decode_packet(&wire, 64 << 20).unwrap() {
        Decode::Done(p, n) => {
            assert_eq!(n, wire.len());
            assert_eq!((p.seq, p.last_seq), (3, 5));
            assert_eq!(p.payload, big);
        }
        Decode::Incomplete => panic!("incomplete"),
    }
    // A payload of exactly MAX_FRAME ends with an empty packet.
    let exact = packet(0, &vec![1u8; MAX_FRAME]);
    assert_eq!(exact.len(), MAX_FRAME + 8);
    assert!(
        matches!(decode_packet(&exact, 32 << 20).unwrap(), Decode::Done(p, _) if p.payload.len() == MAX_FRAME)
    );
    assert!(matches!(
        decode_packet(&exact[..MAX_FRAME + 4], 32 << 20).unwrap(),
        Decode::Incomplete
    ));
}

#[test]
fn oversized_declared_length_is_refused_from_the_header() {
    let err = decode_packet(&[0xFF, 0xFF, 0x10, 0], 1 << 20).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLarge { .. }));
}

#[test]
fn continuation_with_wrong_sequence_is_refused() {
    let mut wire = packet(0, &vec![0u8; MAX_FRAME + 1]);
    wire[MAX_FRAME + 4 + 3] = 9;
    assert!(matches!(
        decode_packet(&wire, 64 << 20),
        Err(ProtocolError::Sequence { .. })
    ));
}

fn greeting() -> Greeting {
    Greeting {
        server_version: "5.5.5-10.11.0-MariaDB".into(),
        connection_id: 42,
        scramble: *b"abcdefghijklmnopqrst",
        capabilities: caps::PROXY_SERVER,
        collation: 45,
        status: status::AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
    }
}

#[test]
fn greeting_round_trips() {
    let g = greeting();
    assert_eq!(Greeting::decode(&g.encode()).unwrap(), g);
}

#[test]
fn handshake_response_round_trips_with_attributes() {
    let r = HandshakeResponse {
        capabilities: caps::PROXY_SERVER,
        max_packet: 1 << 24,
        collation: 45,
        username: b"guestbook".to_vec(),
        auth_response: native_password_response(b"token", b"abcdefghijklmnopqrst"),
        database: Some(b"app_guestbook".to_vec()),
        auth_plugin: Some(NATIVE_PASSWORD.into()),
        attributes: vec![("_client_name".into(), "pymysql".into())],
    };
    assert_eq!(
        ClientHello::decode(&r.encode()).unwrap(),
        ClientHello::Response(r.clone())
    );
    // Without lenenc auth data, the one-byte length form.
    let mut short = r.clone();
    short.capabilities &= !(caps::PLUGIN_AUTH_LENENC_CLIENT_DATA | caps::CONNECT_ATTRS);
    short.attributes.clear();
    assert_eq!(
        ClientHello::decode(&short.encode()).unwrap(),
        ClientHello::Response(short)
    );
}

#[test]
fn ssl_request_is_recognised() {
    let mut p = Vec::new();
    p.extend_from_slice(&(caps::PROTOCOL_41 | caps::SSL).to_le_bytes());
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    assert!(matches!(
        ClientHello::decode(&p).unwrap(),
        ClientHello::SslRequest { collation: 45, .. }
    ));
}

#[test]
fn native_password_matches_the_tenant_hash_check() {
    let hash = berth_common::tenants::hash_token("s3cret");
    let nonce = b"01234567890123456789";
    assert!(hash.verify_mysql_native(nonce, &native_password_response(b"s3cret", nonce)));
    assert!(!hash.verify_mysql_native(nonce, &native_password_response(b"other", nonce)));
}

#[test]
fn commands_decode() {
    let caps = caps::PROXY_SERVER;
    assert_eq!(
        Command::decode(&[COM_QUERY, b'S'], caps).unwrap(),
        Command::Query(b"S")
    );
    assert_eq!(
        Command::decode(&[0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0], caps).unwrap(),
        Command::StmtExecute {
            stmt_id: 1,
            flags: 0
        }
    );
    assert!(matches!(
        Command::decode(&[0x08], caps).unwrap(),
        Command::Refused {
            name: "COM_SHUTDOWN",
            ..
        }
    ));
    assert!(Command::decode(&[], caps).is_err());
    assert!(Command::decode(&[0x19, 1], caps).is_err());
    let mut cu = vec![0x11];
    cu.extend_from_slice(b"app\0");
    cu.push(20);
    cu.extend_from_slice(&[9; 20]);
    cu.extend_from_slice(b"app_app\0");
    cu.extend_from_slice(&45u16.to_le_bytes());
    cu.extend_from_slice(b"mysql_native_password\0");
    match Command::decode(&cu, caps).unwrap() {
        Command::ChangeUser(c) => {
            assert_eq!(c.username, b"app");
            assert_eq!(c.database, b"app_app");
            assert_eq!(c.auth_plugin.as_deref(), Some(NATIVE_PASSWORD));
        }
        other => panic!("{other:?}"),
    }
}

/// A text result set: count, column defs, [EOF], rows, end.
fn result_set(deprecate: bool, rows: &[&[u8]], more: bool, seq: &mut u8) -> Vec<u8> {
    let mut out = Vec::new();
    *seq = encode_packet(*seq, &[1], &mut out);
    *seq = encode_packet(*seq, b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00", &mut out);
    if !deprecate {
        *seq = encode_packet(*seq, &reply::encode_eof(0, 2), &mut out);
    }
    for r in rows {
        *seq = encode_packet(*seq, r, &mut out);
    }
    let st = if more {
        2 | status::MORE_RESULTS_EXISTS
    } else {
        2
    };
    *seq = encode_packet(
        *seq,
        &reply::encode_end(if deprecate { caps::DEPRECATE_EOF } else { 0 }, st),
        &mut out,
    );
    out
}

fn feed_all(t: &mut Tracker, wire: &[u8], chunk: usize) -> usize {
    let mut buf = Vec::new();
    let mut total = 0;
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let p = t.feed(&buf).unwrap();
        total += p.consumed;
        buf.drain(..p.consumed);
        if p.done {
            break;
        }
    }
    total
}

#[test]
fn tracker_ends_result_sets_in_both_eof_modes() {
    for deprecate in [false, true] {
        let mut seq = 1;
        let mut wire = result_set(deprecate, &[b"\x01x", b"\x01y"], true, &mut seq);
        wire.extend(result_set(deprecate, &[], false, &mut seq));
        for chunk in [1, 3, 7, 1000] {
            let mut t = Tracker::new(Expect::ResultSets, deprecate, None);
            assert_eq!(feed_all(&mut t, &wire, chunk), wire.len());
            assert!(t.is_done(), "deprecate={deprecate} chunk={chunk}");
            assert_eq!(t.next_seq(), seq);
        }
        // Any proper prefix is not done.
        for cut in 0..wire.len() {
            let mut t = Tracker::new(Expect::ResultSets, deprecate, None);
            feed_all(&mut t, &wire[..cut], 5);
            assert!(!t.is_done());
        }
    }
}

#[test]
fn tracker_streams_a_row_larger_than_16_mib() {
    let mut seq = 1;
    let mut row = vec![0xFE];
    row.extend_from_slice(&(20u64 << 20).to_le_bytes());
    row.resize(9 + (20 << 20), b'z');
    let wire = result_set(true, &[&row], false, &mut seq);
    let mut t = Tracker::new(Expect::ResultSets, true, None);
    assert_eq!(feed_all(&mut t, &wire, 1 << 20), wire.len());
    assert!(t.is_done());
}

#[test]
fn tracker_prepare_and_limits() {
    for deprecate in [false, true] {
        let mut out = Vec::new();
        let mut s = encode_packet(1, &[0, 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0], &mut out);
        for _ in 0..2 {
            s = encode_packet(s, b"\x03def\x00\x00\x00\x01?\x00\x0c\x3f\x00", &mut out);
        }
        if !deprecate {
            s = encode_packet(s, &reply::encode_eof(0, 2), &mut out);
        }
        s = encode_packet(s, b"\x03def\x00\x00\x00\x01a\x00\x0c\x3f\x00", &mut out);
        if !deprecate {
            encode_packet(s, &reply::encode_eof(0, 2), &mut out);
        }
        let mut t = Tracker::new(Expect::Prepare, deprecate, None);
        assert_eq!(feed_all(&mut t, &out, 4), out.len());
        assert!(t.is_done());
        assert_eq!(t.prepared_id(), Some(7));
    }
    let mut seq = 1;
    let wire = result_set(
        true,
        &[&[1, b'x'][..], &[3, b'a', b'b', b'c']],
        false,
        &mut seq,
    );
    let mut t = Tracker::new(Expect::ResultSets, true, Some(20));
    let p = t.feed(&wire).unwrap();
    assert!(p.over_limit && !p.done);
    assert!(p.consumed < wire.len());
    // An ERR ends the response.
    let err = packet(1, &reply::Err::new(1064, "42000", "x").encode());
    let mut t = Tracker::new(Expect::ResultSets, false, None);
    assert!(t.feed(&err).unwrap().done && t.saw_error());
}

proptest! {
    #[test]
    fn every_prefix_of_a_packet_is_incomplete(payload in proptest::collection::vec(any::<u8>(), 0..300), seq in any::<u8>()) {
        let wire = packet(seq, &payload);
        for cut in 0..wire.len() {
            prop_assert_eq!(decode_packet(&wire[..cut], 1 << 20).unwrap(), Decode::Incomplete);
        }
        let whole = decode_packet(&wire, 1 << 20).unwrap();
        prop_assert!(matches!(whole, Decode::Done(ref p, n) if p.payload == payload && n == wire.len()));
    }

    #[test]
    fn declared_lengths_over_the_limit_are_refused(len in 1025usize..MAX_FRAME, seq in any::<u8>()) {
        let header = [len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        let refused = matches!(decode_packet(&header, 1024), Err(ProtocolError::TooLarge { .. }));
        prop_assert!(refused);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ClientHello::decode(&bytes);
        let _ = Greeting::decode(&bytes);
        let _ = Command::decode(&bytes, caps::PROXY_SERVER);
        let _ = reply::Ok::decode(&bytes);
        let _ = reply::Err::decode(&bytes);
        let _ = decode_packet(&bytes, 1 << 16);
        let mut t = Tracker::new(Expect::ResultSets, true, Some(1000));
        let _ = t.feed(&bytes);
    }
}

#[test]
fn fuzz_seed_corpus_keeps_the_invariants() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/query/corpus/packet");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("the packet fuzz seed corpus directory") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a readable corpus file");
        check_invariants(&bytes);
        n += 1;
    }
    assert!(n >= 8, "the seed corpus went missing");
}

proptest! {
    #[test]
    fn invariants_hold_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_invariants(&bytes);
    }
}
