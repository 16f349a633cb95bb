//! Meta command lines (`mg ms md ma me`): flags, key limits and refusals.

use super::super::*;
use super::{key, one, refused, too_large, SMALL};

fn flags<'a>(f: &MetaFlags<'a>) -> Vec<(char, &'a [u8])> {
    f.iter().map(|(c, t)| (c as char, t)).collect()
}

#[test]
fn meta_commands() {
    let Request::Meta(m) = one("mg foo v t k Oabc\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, m.key, m.data),
        (MetaCmd::Get, &b"foo"[..], &b""[..])
    );
    assert_eq!(
        flags(&m.flags),
        vec![('v', &b""[..]), ('t', b""), ('k', b""), ('O', b"abc")]
    );
    assert_eq!(m.flags.token(b'O'), Some(&b"abc"[..]));
    assert!(m.flags.has(b'v') && !m.flags.has(b'q'));
    let Request::Meta(m) = one("mg foo\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, m.key, m.flags.len()),
        (MetaCmd::Get, &b"foo"[..], 0)
    );
    let Request::Meta(m) = one("ms foo 3 T30 F5 q\r\nbar\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, m.key, m.data),
        (MetaCmd::Set, &b"foo"[..], &b"bar"[..])
    );
    assert_eq!(
        flags(&m.flags),
        vec![('T', &b"30"[..]), ('F', b"5"), ('q', b"")]
    );
    let Request::Meta(m) = one("ms foo 0\n\r\n") else {
        panic!()
    };
    assert_eq!((m.cmd, m.data, m.flags.len()), (MetaCmd::Set, &b""[..], 0));
    let Request::Meta(m) = one("md foo q I\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, flags(&m.flags)),
        (MetaCmd::Delete, vec![('q', &b""[..]), ('I', b"")])
    );
    let Request::Meta(m) = one("ma foo D5 MD N0 J10\r\n") else {
        panic!()
    };
    assert_eq!(m.cmd, MetaCmd::Arith);
    assert_eq!(
        flags(&m.flags),
        vec![('D', &b"5"[..]), ('M', b"D"), ('N', b"0"), ('J', b"10")]
    );
    let Request::Meta(m) = one("me foo\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, m.key, m.flags.len()),
        (MetaCmd::Debug, &b"foo"[..], 0)
    );
    let Request::Meta(m) = one("me Zm9v b\r\n") else {
        panic!()
    };
    assert_eq!(
        (m.cmd, m.key, flags(&m.flags)),
        (MetaCmd::Debug, &b"Zm9v"[..], vec![('b', &b""[..])])
    );
    // `me` reads only an exact `b` and ignores everything else.
    let Request::Meta(m) = one("me foo x 1 1\r\n") else {
        panic!()
    };
    assert!(m.flags.is_empty());
    // A base64 key may be as long as the encoding of a 250-byte key; opaque up to 32 bytes.
    let line = format!("mg {} b O{}\r\n", key(336), "o".repeat(31));
    let Request::Meta(m) = one(&line) else {
        panic!()
    };
    assert_eq!(
        (m.key.len(), m.flags.token(b'O').map(<[u8]>::len)),
        (336, Some(31))
    );
    // 19 tokens are the most memcached takes on a meta line.
    let line = format!("mg k {}\r\n", letters(17));
    let Request::Meta(m) = one(&line) else {
        panic!()
    };
    assert_eq!(m.flags.len(), 17);
    let line = format!("ms k 1 {}\r\nx\r\n", letters(16));
    let Request::Meta(m) = one(&line) else {
        panic!()
    };
    assert_eq!(m.flags.len(), 16);
}

/// `n` distinct one-letter flags.
fn letters(n: usize) -> String {
    let all = std::str::from_utf8(crate::protocol::meta::KNOWN_FLAGS).unwrap();
    all.chars()
        .take(n)
        .map(String::from)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn meta_refusals() {
    let bad = "CLIENT_ERROR bad command line format\r\n";
    for input in [
        "mg\r\n",
        "ms\r\n",
        "md \r\n",
        "ma\r\n",
        "me\r\n",
        "ms k\r\n",
        "ms k x\r\n",
    ] {
        refused(input, bad, 0, false);
    }
    refused("ms k -1 q\r\n", bad, 0, false);
    refused("ms k 2147483646\r\n", bad, 0, false);
    refused(&format!("mg {} q\r\n", key(251)), bad, 0, false);
    refused(&format!("md {} b\r\n", key(337)), bad, 0, false);
    refused(&format!("me {}\r\n", key(251)), bad, 0, false);
    refused(&format!("me {} b\r\n", key(337)), bad, 0, false);
    refused(&format!("ms {} 5 q\r\n", key(251)), bad, 7, false);
    let invalid = "CLIENT_ERROR invalid flag\r\n";
    refused("mg k 1\r\n", invalid, 0, false);
    refused("mg k q v :x\r\n", invalid, 0, false);
    refused("ms k 5 q 1\r\n", invalid, 7, false);
    refused("ma k \x7f\r\n", invalid, 0, false);
    let duplicate = "CLIENT_ERROR duplicate flag\r\n";
    refused("mg k v v\r\n", duplicate, 0, false);
    refused("md k T1 T2\r\n", duplicate, 0, false);
    refused("ms k 5 q q\r\n", duplicate, 7, false);
    let opaque = "CLIENT_ERROR opaque token too long\r\n";
    let long_opaque = format!("O{}", "o".repeat(32));
    refused(&format!("mg k {long_opaque}\r\n"), opaque, 0, false);
    refused(&format!("ms k 1 q {long_opaque}\r\n"), opaque, 3, false);
    // A bad flag is reported before a long opaque, as memcached's two passes do.
    refused(&format!("mg k {long_opaque} 1\r\n"), invalid, 0, false);
    refused(
        &format!("mg k {}\r\n", letters(18)),
        "CLIENT_ERROR options flags are too long\r\n",
        0,
        false,
    );
    let too_long = "CLIENT_ERROR options flags too long\r\n";
    refused(&format!("md k {}\r\n", letters(18)), too_long, 0, false);
    refused(&format!("ma k {}\r\n", letters(40)), too_long, 0, false);
    refused(&format!("ms k 5 {}\r\n", letters(17)), too_long, 7, false);
    too_large(
        b"ms k 1048577 T0 q\r\n",
        &Limits::default(),
        Some("k"),
        1_048_579,
        false,
    );
    too_large(b"ms k 65\r\n", &SMALL, Some("k"), 67, false);
    assert!(matches!(
        parse(b"ms a2V5 65 b\r\n", &SMALL),
        Parse::TooLarge {
            unlink: Some(b"a2V5"),
            base64_key: true,
            ..
        }
    ));
}
