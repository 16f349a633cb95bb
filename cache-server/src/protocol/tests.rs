//! Parser unit tests: exact fields for every command, exact replies for every refusal,
//! prefixes, pipelining and the fuzz seed corpus. Meta commands are in `tests/meta.rs`, property
//! tests in `tests/roundtrip.rs`.

mod meta;
mod roundtrip;

use super::*;

/// Limits small enough to reach every limit with short inputs.
const SMALL: Limits = Limits {
    max_key_len: 8,
    item_size_max: 64,
    max_line_len: 32,
};

/// Parse `input` as exactly one complete request, after checking that every proper prefix of
/// it parses as `Incomplete`.
#[track_caller]
fn one_with<'a>(input: &'a [u8], limits: &Limits) -> Request<'a> {
    for end in 0..input.len() {
        assert_eq!(
            parse(&input[..end], limits),
            Parse::Incomplete,
            "prefix of {end} bytes"
        );
    }
    match parse(input, limits) {
        Parse::Request { req, consumed } => {
            assert_eq!(consumed, input.len(), "consumed of {:?}", show(input));
            req
        }
        other => panic!("{:?} gave {other:?}", show(input)),
    }
}

#[track_caller]
fn one(input: &str) -> Request<'_> {
    one_with(input.as_bytes(), &Limits::default())
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The expected refusal of a whole input: it consumes all of `input`.
#[track_caller]
fn refused(input: &str, reply: &'static str, swallow: usize, noreply: bool) {
    refused_with(
        input.as_bytes(),
        &Limits::default(),
        reply,
        input.len(),
        swallow,
        noreply,
    );
}

#[track_caller]
fn refused_with(
    input: &[u8],
    limits: &Limits,
    reply: &'static str,
    consumed: usize,
    swallow: usize,
    noreply: bool,
) {
    let close = reply.is_empty() || reply == "CLIENT_ERROR line too long\r\n";
    let want = Parse::Error {
        reply: reply.as_bytes(),
        consumed,
        swallow,
        noreply,
        close,
    };
    assert_eq!(parse(input, limits), want, "input {:?}", show(input));
}

/// A too-large storage request: the whole input is its line.
#[track_caller]
pub(super) fn too_large(
    input: &[u8],
    limits: &Limits,
    unlink: Option<&str>,
    swallow: usize,
    noreply: bool,
) {
    let want = Parse::TooLarge {
        unlink: unlink.map(str::as_bytes),
        base64_key: false,
        consumed: input.len(),
        swallow,
        noreply,
    };
    assert_eq!(parse(input, limits), want, "input {:?}", show(input));
}

fn words(w: Words<'_>) -> Vec<&[u8]> {
    w.collect()
}

fn key(len: usize) -> String {
    "k".repeat(len)
}

#[test]
fn storage_commands() {
    let store = |cmd, key: &'static [u8], flags, exptime, data: &'static [u8], cas, noreply| {
        Request::Store {
            cmd,
            key,
            flags,
            exptime,
            data,
            cas,
            noreply,
        }
    };
    assert_eq!(
        one("set foo 5 100 3\r\nbar\r\n"),
        store(StoreCmd::Set, b"foo", 5, 100, b"bar", 0, false)
    );
    assert_eq!(
        one("add a 0 0 1 noreply\r\nx\r\n"),
        store(StoreCmd::Add, b"a", 0, 0, b"x", 0, true)
    );
    assert_eq!(
        one("replace a 1 -1 0\r\n\r\n"),
        store(StoreCmd::Replace, b"a", 1, -1, b"", 0, false)
    );
    assert_eq!(
        one("append a 0 0 2\r\nhi\r\n"),
        store(StoreCmd::Append, b"a", 0, 0, b"hi", 0, false)
    );
    assert_eq!(
        one("prepend a 0 0 2 noreply\r\nhi\r\n"),
        store(StoreCmd::Prepend, b"a", 0, 0, b"hi", 0, true)
    );
    assert_eq!(
        one("cas a 4294967295 2592000 2 18446744073709551615\r\nhi\r\n"),
        store(
            StoreCmd::Cas,
            b"a",
            u32::MAX,
            2_592_000,
            b"hi",
            u64::MAX,
            false
        )
    );
    assert_eq!(
        one("cas a 0 -9223372036854775808 1 7 noreply\r\nx\r\n"),
        store(StoreCmd::Cas, b"a", 0, i64::MIN, b"x", 7, true)
    );
    // The data block is binary and found by length, even when it holds `\r\n`.
    assert_eq!(
        one("set k 0 0 8\r\nget x\r\n\0\r\n"),
        store(StoreCmd::Set, b"k", 0, 0, b"get x\r\n\0", 0, false)
    );
    // A bare `\n` ends the line; runs of spaces separate tokens.
    assert_eq!(
        one("  set  k 0  0 1  \nx\r\n"),
        store(StoreCmd::Set, b"k", 0, 0, b"x", 0, false)
    );
    // memcached ignores a sixth token that is not `noreply`.
    assert_eq!(
        one("set k 0 0 1 junk\r\nx\r\n"),
        store(StoreCmd::Set, b"k", 0, 0, b"x", 0, false)
    );
    // Numbers are read like C's strtol: a sign, and whitespace around the digits.
    assert_eq!(
        one("set k +7 -0 1\r\nx\r\n"),
        store(StoreCmd::Set, b"k", 7, 0, b"x", 0, false)
    );
    assert_eq!(
        one("set k \t7 0 1\r\r\nx\r\n"),
        store(StoreCmd::Set, b"k", 7, 0, b"x", 0, false)
    );
    // The longest key and the largest value are accepted.
    let long = format!("set {} 0 0 1\r\nx\r\n", key(250));
    assert!(matches!(one(&long), Request::Store { key, .. } if key.len() == 250));
    let limits = Limits {
        item_size_max: 4,
        ..Limits::default()
    };
    let req = one_with(b"set k 0 0 4\r\nabcd\r\n", &limits);
    assert_eq!(req, store(StoreCmd::Set, b"k", 0, 0, b"abcd", 0, false));
}

#[test]
fn retrieval_commands() {
    let Request::Get { cmd, exptime, keys } = one("get a\r\n") else {
        panic!()
    };
    assert_eq!(
        (cmd, exptime, words(keys)),
        (GetCmd::Get, 0, vec![&b"a"[..]])
    );
    let Request::Get { cmd, keys, .. } = one("gets a  b c\r\n") else {
        panic!()
    };
    assert_eq!(
        (cmd, words(keys)),
        (GetCmd::Gets, vec![&b"a"[..], b"b", b"c"])
    );
    let Request::Get { cmd, exptime, keys } = one("gat 10 a b\n") else {
        panic!()
    };
    assert_eq!(
        (cmd, exptime, words(keys)),
        (GetCmd::Gat, 10, vec![&b"a"[..], b"b"])
    );
    let Request::Get { cmd, exptime, keys } = one("gats -1 a\r\n") else {
        panic!()
    };
    assert_eq!(
        (cmd, exptime, words(keys)),
        (GetCmd::Gats, -1, vec![&b"a"[..]])
    );
    // memcached answers `gat <exptime>` without keys with a bare END.
    let Request::Get { cmd, exptime, keys } = one("gat 5\r\n") else {
        panic!()
    };
    assert_eq!((cmd, exptime, words(keys)), (GetCmd::Gat, 5, vec![]));
    // The ancient `bget` is a plain get.
    let Request::Get { cmd, keys, .. } = one("bget a\r\n") else {
        panic!()
    };
    assert_eq!((cmd, words(keys)), (GetCmd::Get, vec![&b"a"[..]]));
    // Keys are not limited by the 24 tokens of other lines.
    let many: Vec<String> = (0..100).map(|i| format!("key{i}")).collect();
    let line = format!("get {}\r\n", many.join(" "));
    let Request::Get { keys, .. } = one(&line) else {
        panic!()
    };
    let got: Vec<String> = keys.map(show).collect();
    assert_eq!(got, many);
    let line = format!("get a {}\r\n", key(250));
    let Request::Get { keys, .. } = one(&line) else {
        panic!()
    };
    assert_eq!(keys.count(), 2);
}

#[test]
fn other_item_commands() {
    assert_eq!(
        one("delete k\r\n"),
        Request::Delete {
            key: b"k",
            noreply: false
        }
    );
    assert_eq!(
        one("delete k 0\r\n"),
        Request::Delete {
            key: b"k",
            noreply: false
        }
    );
    assert_eq!(
        one("delete k noreply\r\n"),
        Request::Delete {
            key: b"k",
            noreply: true
        }
    );
    assert_eq!(
        one("delete k 0 noreply\r\n"),
        Request::Delete {
            key: b"k",
            noreply: true
        }
    );
    // With nothing after it, `noreply` is the key.
    assert_eq!(
        one("delete noreply\r\n"),
        Request::Delete {
            key: b"noreply",
            noreply: false
        }
    );
    let arith = |incr, delta, noreply| Request::Arith {
        incr,
        key: b"k",
        delta,
        noreply,
    };
    assert_eq!(one("incr k 1\r\n"), arith(true, 1, false));
    assert_eq!(
        one("decr k 18446744073709551615 noreply\r\n"),
        arith(false, u64::MAX, true)
    );
    assert_eq!(one("incr k 0 junk\r\n"), arith(true, 0, false));
    assert_eq!(
        one("touch k 100\r\n"),
        Request::Touch {
            key: b"k",
            exptime: 100,
            noreply: false
        }
    );
    assert_eq!(
        one("touch k -1 noreply\r\n"),
        Request::Touch {
            key: b"k",
            exptime: -1,
            noreply: true
        }
    );
}

#[test]
fn admin_commands() {
    let flush = |delay, noreply| Request::FlushAll { delay, noreply };
    assert_eq!(one("flush_all\r\n"), flush(0, false));
    assert_eq!(one("flush_all 10\r\n"), flush(10, false));
    assert_eq!(one("flush_all noreply\r\n"), flush(0, true));
    assert_eq!(one("flush_all 10 noreply\r\n"), flush(10, true));
    assert_eq!(one("flush_all -1 junk\r\n"), flush(-1, false));
    let memlimit = |megabytes, noreply| Request::CacheMemlimit { megabytes, noreply };
    assert_eq!(one("cache_memlimit 100\r\n"), memlimit(100, false));
    assert_eq!(
        one("cache_memlimit 4294967295 noreply\r\n"),
        memlimit(u64::from(u32::MAX), true)
    );
    assert_eq!(
        one("verbosity 1\r\n"),
        Request::Verbosity {
            level: 1,
            noreply: false
        }
    );
    assert_eq!(
        one("verbosity 3 noreply\r\n"),
        Request::Verbosity {
            level: 3,
            noreply: true
        }
    );
    assert_eq!(one("version\r\n"), Request::Version);
    assert_eq!(one("version please\r\n"), Request::Version);
    assert_eq!(one("quit\r\n"), Request::Quit);
    assert_eq!(one("shutdown\r\n"), Request::Shutdown { graceful: false });
    assert_eq!(
        one("shutdown graceful\r\n"),
        Request::Shutdown { graceful: true }
    );
    let Request::Stats { args } = one("stats\r\n") else {
        panic!()
    };
    assert!(args.is_empty());
    let Request::Stats { args } = one("stats detail  on\r\n") else {
        panic!()
    };
    assert_eq!(words(args), vec![&b"detail"[..], b"on"]);
    assert_eq!(one("mn\r\n"), Request::MetaNoop);
    assert_eq!(one("mn extra\r\n"), Request::MetaNoop);
}

#[test]
fn unknown_commands_and_token_counts_answer_error() {
    let error = "ERROR\r\n";
    for input in [
        "\r\n",
        "\n",
        "   \r\n",
        "\r\r\n",
        "x\r\n",
        "foo\r\n",
        "GET a\r\n",
        "get\r\n",
        "gets  \r\n",
        "gat\r\n",
        "getx a\r\n",
        "set k 0 0\r\n",
        "set k 0 0 1 noreply x\r\n",
        "cas k 0 0 1\r\n",
        "add\r\n",
        "incr k\r\n",
        "incr k 1 noreply x\r\n",
        "decr\r\n",
        "delete\r\n",
        "delete a b c d\r\n",
        "touch k\r\n",
        "touch k 1 2 3\r\n",
        "flush_all 1 2 3\r\n",
        "verbosity\r\n",
        "verbosity 1 2 3\r\n",
        "cache_memlimit\r\n",
        "cache_memlimit abc\r\n",
        "mx foo\r\n",
        "slabs reassign 1 2\r\n",
        "sxx HTTP/1.1\r\n",
        "lru_crawler HTTP/1.1\r\n",
        "bget\r\n",
        "mget a\r\n",
        "set\0 k 0 0 1\r\n",
    ] {
        refused(input, error, 0, false);
    }
    // The bad number is read after `noreply`, which silences the ERROR.
    refused("cache_memlimit abc noreply\r\n", error, 0, true);
    refused("cache_memlimit noreply\r\n", error, 0, true);
}

#[test]
fn http_request_lines_close_silently() {
    for input in [
        "GET / HTTP/1.1\r\n",
        "DELETE HTTP/1.1\r\n",
        "PUT /a/b HTTP/1.0\n",
    ] {
        refused(input, "", 0, false);
    }
}

#[test]
fn storage_refusals() {
    let bad = "CLIENT_ERROR bad command line format\r\n";
    let long = key(251);
    // A refused line with a valid length drops its data block too.
    refused(&format!("set {long} 0 0 5\r\n"), bad, 7, false);
    refused(&format!("set {long} 0 0 5 noreply\r\n"), bad, 7, true);
    refused(&format!("cas {long} 0 0 5 1\r\n"), bad, 7, false);
    refused(&format!("set {long} 0 0 x\r\n"), bad, 0, false);
    refused("set k x 0 5\r\n", bad, 7, false);
    refused("set k 4294967296 0 5\r\n", bad, 7, false);
    refused("set k -1 0 5 noreply\r\n", bad, 7, true);
    refused("set k 0 1.5 5\r\n", bad, 7, false);
    refused("set k 0 9223372036854775808 5\r\n", bad, 7, false);
    refused("set k 0 0x 0\r\n", bad, 2, false);
    refused("cas k 0 0 1 x\r\n", bad, 3, false);
    refused("cas k 0 0 1 -1 noreply\r\n", bad, 3, true);
    refused("cas k 0 0 1 18446744073709551616\r\n", bad, 3, false);
    // A bad length leaves nothing to swallow.
    refused("set k 0 0 -1\r\n", bad, 0, false);
    refused("set k 0 0 4294967295\r\n", bad, 0, false);
    refused("set k 0 0 2147483646\r\n", bad, 0, false);
    refused("set k 0 0 abc noreply\r\n", bad, 0, true);
    refused("set k 0 0 5x\r\n", bad, 0, false);
    refused("set k 0 0 noreply\r\n", bad, 0, true);
    // Too large: refused before anything is buffered.
    too_large(
        b"set k 0 0 1048577\r\n",
        &Limits::default(),
        Some("k"),
        1_048_579,
        false,
    );
    too_large(
        b"append k 0 0 2147483645 noreply\r\n",
        &Limits::default(),
        None,
        2_147_483_647,
        true,
    );
    assert_eq!(
        parse(b"set k 0 0 1048576\r\n", &Limits::default()),
        Parse::Incomplete
    );
    too_large(b"set k 0 0 65\r\n", &SMALL, Some("k"), 67, false);
}

#[test]
fn bad_data_chunks_consume_line_and_block() {
    let chunk = "CLIENT_ERROR bad data chunk\r\n";
    refused("set k 0 0 3\r\nabcde", chunk, 0, false);
    refused("set k 0 0 3 noreply\r\nabc\n\n", chunk, 0, true);
    refused("cas k 0 0 1 5\r\nxy\r", chunk, 0, false);
    // Meta errors are always answered, whatever `q` says.
    refused("ms k 2 q\r\nabcd", chunk, 0, false);
    // memcached goes on parsing after the block: here the leftover `\r\n` is an empty line.
    let input = b"set k 0 0 3\r\nabcde\r\n";
    refused_with(input, &Limits::default(), chunk, 18, 0, false);
    refused_with(&input[18..], &Limits::default(), "ERROR\r\n", 2, 0, false);
}

#[test]
fn retrieval_and_item_refusals() {
    let bad = "CLIENT_ERROR bad command line format\r\n";
    let long = key(251);
    refused(&format!("get {long}\r\n"), bad, 0, false);
    refused(&format!("gets a {long} b\r\n"), bad, 0, false);
    refused(&format!("gat 1 {long}\r\n"), bad, 0, false);
    refused(
        "gat x a\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
        0,
        false,
    );
    let usage = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n";
    refused("delete k 1\r\n", usage, 0, false);
    refused("delete k 1 noreply\r\n", usage, 0, true);
    refused("delete k noreply 0\r\n", usage, 0, false);
    refused("delete k 00\r\n", usage, 0, false);
    refused(&format!("delete {long}\r\n"), bad, 0, false);
    refused(&format!("delete {long} noreply\r\n"), bad, 0, true);
    let delta = "CLIENT_ERROR invalid numeric delta argument\r\n";
    refused("incr k x\r\n", delta, 0, false);
    refused("incr k -1\r\n", delta, 0, false);
    refused("incr k 18446744073709551616\r\n", delta, 0, false);
    refused("decr k x noreply\r\n", delta, 0, true);
    refused(&format!("incr {long} 1\r\n"), bad, 0, false);
    let exptime = "CLIENT_ERROR invalid exptime argument\r\n";
    refused("touch k x\r\n", exptime, 0, false);
    refused("touch k 1x noreply\r\n", exptime, 0, true);
    refused(&format!("touch {long} 1 noreply\r\n"), bad, 0, true);
    refused("flush_all x\r\n", exptime, 0, false);
    refused("flush_all noreply 10\r\n", exptime, 0, false);
    refused("flush_all x noreply\r\n", exptime, 0, true);
    refused("verbosity x\r\n", bad, 0, false);
    refused("verbosity noreply\r\n", bad, 0, true);
    let shutdown = "CLIENT_ERROR invalid shutdown mode\r\n";
    refused("shutdown now\r\n", shutdown, 0, false);
    refused("shutdown graceful x\r\n", shutdown, 0, false);
}

#[test]
fn line_length_limit() {
    let too_long = "CLIENT_ERROR line too long\r\n";
    // A 32-byte line is accepted with either terminator (every prefix, a trailing `\r`
    // included, is `Incomplete`).
    let fits = format!("stats {}", "x".repeat(26));
    for end in ["\r\n", "\n"] {
        let input = format!("{fits}{end}");
        assert!(matches!(
            one_with(input.as_bytes(), &SMALL),
            Request::Stats { .. }
        ));
    }
    // One more byte is too long as soon as it arrives, newline or not.
    let over = format!("stats {}", "x".repeat(27));
    refused_with(over.as_bytes(), &SMALL, too_long, 33, 0, false);
    // The connection closes, so everything buffered is dropped.
    refused_with(
        format!("{over}\r\nget a\r\n").as_bytes(),
        &SMALL,
        too_long,
        42,
        0,
        false,
    );
    // A long buffer is judged on its first bytes only.
    let flood = vec![b'a'; 1 << 20];
    refused_with(&flood, &SMALL, too_long, flood.len(), 0, false);
    // The limit covers the line, not the data block.
    let mut input = b"set k 0 0 60\r\n".to_vec();
    input.extend_from_slice(&[b'x'; 60]);
    input.extend_from_slice(b"\r\n");
    assert!(matches!(one_with(&input, &SMALL), Request::Store { data, .. } if data.len() == 60));
}

#[test]
fn pipelined_requests_parse_one_after_another() {
    let long = key(251);
    let input = format!(
        "set a 0 0 5\r\nget b\r\nget c\r\n\
         mg a v\r\n\
         set {long} 0 0 7\r\nget z\r\n\r\n\
         bogus\r\n\
         ms b 2 T0\r\nhi\r\n\
         delete a noreply\n\
         set k 0 0 1\r\nxyz\
         mn\r\n"
    );
    let mut rest = input.as_bytes();
    let mut next = || {
        let result = parse(rest, &Limits::default());
        let (consumed, swallow) = match &result {
            Parse::Request { consumed, .. } => (*consumed, 0),
            Parse::Error {
                consumed, swallow, ..
            }
            | Parse::TooLarge {
                consumed, swallow, ..
            } => (*consumed, *swallow),
            Parse::Incomplete => panic!("incomplete at {:?}", show(rest)),
        };
        let used = &rest[..consumed];
        rest = &rest[consumed + swallow..];
        (show(used), result)
    };
    let (used, r) = next();
    assert_eq!(used, "set a 0 0 5\r\nget b\r\n");
    assert!(matches!(
        r,
        Parse::Request {
            req: Request::Store { data: b"get b", .. },
            ..
        }
    ));
    let (used, r) = next();
    assert_eq!(used, "get c\r\n");
    assert!(matches!(
        r,
        Parse::Request {
            req: Request::Get {
                cmd: GetCmd::Get,
                ..
            },
            ..
        }
    ));
    let (used, r) = next();
    assert_eq!(used, "mg a v\r\n");
    assert!(matches!(
        r,
        Parse::Request {
            req: Request::Meta(Meta {
                cmd: MetaCmd::Get,
                ..
            }),
            ..
        }
    ));
    // The refused set swallows its block, so `get z` is never run as a command.
    let (used, r) = next();
    assert_eq!(used, format!("set {long} 0 0 7\r\n"));
    assert!(matches!(r, Parse::Error { swallow: 9, .. }));
    let (used, r) = next();
    assert_eq!(used, "bogus\r\n");
    assert!(matches!(
        r,
        Parse::Error {
            reply: b"ERROR\r\n",
            ..
        }
    ));
    let (used, r) = next();
    assert_eq!(used, "ms b 2 T0\r\nhi\r\n");
    assert!(matches!(
        r,
        Parse::Request {
            req: Request::Meta(Meta { data: b"hi", .. }),
            ..
        }
    ));
    let (used, r) = next();
    assert_eq!(used, "delete a noreply\n");
    assert_eq!(
        r,
        Parse::Request {
            req: Request::Delete {
                key: b"a",
                noreply: true
            },
            consumed: 17
        }
    );
    let (used, r) = next();
    assert_eq!(used, "set k 0 0 1\r\nxyz");
    assert!(matches!(
        r,
        Parse::Error {
            reply: b"CLIENT_ERROR bad data chunk\r\n",
            ..
        }
    ));
    let (used, r) = next();
    assert_eq!(used, "mn\r\n");
    assert!(matches!(
        r,
        Parse::Request {
            req: Request::MetaNoop,
            ..
        }
    ));
    assert!(rest.is_empty());
}

#[test]
fn nul_ends_the_line_as_in_memcached() {
    // memcached reads the line as a C string: what follows a NUL is ignored.
    let Request::Get { keys, .. } = one("get a\0 b\r\n") else {
        panic!()
    };
    assert_eq!(words(keys), vec![&b"a"[..]]);
    assert_eq!(one("set k 0 0 1\0junk\r\nx\r\n"), {
        Request::Store {
            cmd: StoreCmd::Set,
            key: b"k",
            flags: 0,
            exptime: 0,
            data: b"x",
            cas: 0,
            noreply: false,
        }
    });
}

#[test]
fn fuzz_seed_corpus_keeps_the_invariants() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/cache/corpus/text_protocol"
    );
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the fuzz seed corpus directory") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a readable corpus file");
        check_invariants(&bytes, &Limits::default());
        check_invariants(&bytes, &SMALL);
        files += 1;
    }
    assert!(files >= 12, "only {files} seed files in {dir}");
}
