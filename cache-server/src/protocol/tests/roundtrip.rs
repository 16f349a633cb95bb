//! Property tests: random valid requests are written out the way clients write them and must
//! parse back to the same fields, alone or pipelined; random protocol-shaped bytes must keep
//! the parser's invariants.

use proptest::collection::vec;
use proptest::prelude::*;

use super::super::*;
use super::SMALL;

/// An owned request, the model that is written out and compared with the parse.
#[derive(Debug, Clone)]
enum Model {
    Store {
        cmd: StoreCmd,
        key: Vec<u8>,
        flags: u32,
        exptime: i64,
        data: Vec<u8>,
        cas: u64,
        noreply: bool,
    },
    Get {
        cmd: GetCmd,
        exptime: i64,
        keys: Vec<Vec<u8>>,
    },
    Delete {
        key: Vec<u8>,
        zero: bool,
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: Vec<u8>,
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: Vec<u8>,
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: Option<i64>,
        noreply: bool,
    },
    CacheMemlimit {
        megabytes: u32,
        noreply: bool,
    },
    Verbosity {
        level: u32,
        noreply: bool,
    },
    Version,
    Quit,
    Shutdown {
        graceful: bool,
    },
    Stats {
        args: Vec<Vec<u8>>,
    },
    MetaNoop,
    Meta {
        cmd: MetaCmd,
        key: Vec<u8>,
        flags: Vec<(u8, Vec<u8>)>,
        data: Vec<u8>,
    },
}

/// How a client spells the request: spaces between tokens and the line terminator.
#[derive(Debug, Clone)]
struct Style {
    gap: usize,
    lead: usize,
    bare_newline: bool,
}

impl Model {
    fn write(&self, style: &Style, out: &mut Vec<u8>) {
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut word = |w: &[u8]| words.push(w.to_vec());
        let num = |n: &dyn std::fmt::Display| n.to_string().into_bytes();
        let mut data = None;
        match self {
            Model::Store {
                cmd,
                key,
                flags,
                exptime,
                data: d,
                cas,
                noreply,
            } => {
                let name: &[u8] = match cmd {
                    StoreCmd::Set => b"set",
                    StoreCmd::Add => b"add",
                    StoreCmd::Replace => b"replace",
                    StoreCmd::Append => b"append",
                    StoreCmd::Prepend => b"prepend",
                    StoreCmd::Cas => b"cas",
                };
                word(name);
                word(key);
                word(&num(flags));
                word(&num(exptime));
                word(&num(&d.len()));
                if *cmd == StoreCmd::Cas {
                    word(&num(cas));
                }
                if *noreply {
                    word(b"noreply");
                }
                data = Some(d);
            }
            Model::Get { cmd, exptime, keys } => {
                let name: &[u8] = match cmd {
                    GetCmd::Get => b"get",
                    GetCmd::Gets => b"gets",
                    GetCmd::Gat => b"gat",
                    GetCmd::Gats => b"gats",
                };
                word(name);
                if matches!(cmd, GetCmd::Gat | GetCmd::Gats) {
                    word(&num(exptime));
                }
                keys.iter().for_each(|k| word(k));
            }
            Model::Delete { key, zero, noreply } => {
                word(b"delete");
                word(key);
                if *zero {
                    word(b"0");
                }
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::Arith {
                incr,
                key,
                delta,
                noreply,
            } => {
                word(if *incr { b"incr" } else { b"decr" });
                word(key);
                word(&num(delta));
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::Touch {
                key,
                exptime,
                noreply,
            } => {
                word(b"touch");
                word(key);
                word(&num(exptime));
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::FlushAll { delay, noreply } => {
                word(b"flush_all");
                if let Some(delay) = delay {
                    word(&num(delay));
                }
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::CacheMemlimit { megabytes, noreply } => {
                word(b"cache_memlimit");
                word(&num(megabytes));
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::Verbosity { level, noreply } => {
                word(b"verbosity");
                word(&num(level));
                if *noreply {
                    word(b"noreply");
                }
            }
            Model::Version => word(b"version"),
            Model::Quit => word(b"quit"),
            Model::Shutdown { graceful } => {
                word(b"shutdown");
                if *graceful {
                    word(b"graceful");
                }
            }
            Model::Stats { args } => {
                word(b"stats");
                args.iter().for_each(|a| word(a));
            }
            Model::MetaNoop => word(b"mn"),
            Model::Meta {
                cmd,
                key,
                flags,
                data: d,
            } => {
                let name: &[u8] = match cmd {
                    MetaCmd::Get => b"mg",
                    MetaCmd::Set => b"ms",
                    MetaCmd::Delete => b"md",
                    MetaCmd::Arith => b"ma",
                    MetaCmd::Debug => b"me",
                };
                word(name);
                word(key);
                if *cmd == MetaCmd::Set {
                    word(&num(&d.len()));
                    data = Some(d);
                }
                for (flag, token) in flags {
                    let mut f = vec![*flag];
                    f.extend_from_slice(token);
                    word(&f);
                }
            }
        }
        out.resize(out.len() + style.lead, b' ');
        let gap = vec![b' '; style.gap];
        out.extend_from_slice(&words.join(&gap[..]));
        out.extend_from_slice(if style.bare_newline { b"\n" } else { b"\r\n" });
        if let Some(data) = data {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Assert that `req` carries exactly this model's fields.
    fn check(&self, req: &Request<'_>) {
        let owned = |w: Words<'_>| w.map(<[u8]>::to_vec).collect::<Vec<_>>();
        match (self, req) {
            (
                Model::Store {
                    cmd,
                    key,
                    flags,
                    exptime,
                    data,
                    cas,
                    noreply,
                },
                Request::Store {
                    cmd: c,
                    key: k,
                    flags: f,
                    exptime: e,
                    data: d,
                    cas: s,
                    noreply: n,
                },
            ) => {
                assert_eq!((cmd, &key[..], flags, exptime), (c, *k, f, e));
                assert_eq!((&data[..], cas, noreply), (*d, s, n));
            }
            (
                Model::Get { cmd, exptime, keys },
                Request::Get {
                    cmd: c,
                    exptime: e,
                    keys: k,
                },
            ) => {
                assert_eq!((cmd, exptime, keys), (c, e, &owned(*k)));
            }
            (Model::Delete { key, noreply, .. }, Request::Delete { key: k, noreply: n }) => {
                assert_eq!((&key[..], noreply), (*k, n));
            }
            (
                Model::Arith {
                    incr,
                    key,
                    delta,
                    noreply,
                },
                Request::Arith {
                    incr: i,
                    key: k,
                    delta: d,
                    noreply: n,
                },
            ) => assert_eq!((incr, &key[..], delta, noreply), (i, *k, d, n)),
            (
                Model::Touch {
                    key,
                    exptime,
                    noreply,
                },
                Request::Touch {
                    key: k,
                    exptime: e,
                    noreply: n,
                },
            ) => assert_eq!((&key[..], exptime, noreply), (*k, e, n)),
            (
                Model::FlushAll { delay, noreply },
                Request::FlushAll {
                    delay: d,
                    noreply: n,
                },
            ) => {
                assert_eq!((delay.unwrap_or(0), noreply), (*d, n));
            }
            (
                Model::CacheMemlimit { megabytes, noreply },
                Request::CacheMemlimit {
                    megabytes: m,
                    noreply: n,
                },
            ) => assert_eq!((u64::from(*megabytes), noreply), (*m, n)),
            (
                Model::Verbosity { level, noreply },
                Request::Verbosity {
                    level: l,
                    noreply: n,
                },
            ) => {
                assert_eq!((level, noreply), (l, n));
            }
            (Model::Version, Request::Version)
            | (Model::Quit, Request::Quit)
            | (Model::MetaNoop, Request::MetaNoop) => {}
            (Model::Shutdown { graceful }, Request::Shutdown { graceful: g }) => {
                assert_eq!(graceful, g);
            }
            (Model::Stats { args }, Request::Stats { args: a }) => assert_eq!(args, &owned(*a)),
            (
                Model::Meta {
                    cmd,
                    key,
                    flags,
                    data,
                },
                Request::Meta(m),
            ) => {
                assert_eq!((cmd, &key[..], &data[..]), (&m.cmd, m.key, m.data));
                let got: Vec<(u8, Vec<u8>)> =
                    m.flags.iter().map(|(c, t)| (c, t.to_vec())).collect();
                assert_eq!(flags, &got);
            }
            (model, req) => panic!("{model:?} parsed as {req:?}"),
        }
    }
}

/// A key as clients send them: printable, no spaces.
fn key() -> impl Strategy<Value = Vec<u8>> {
    vec(0x21u8..=0x7e, 1..=250)
}

fn short_key() -> impl Strategy<Value = Vec<u8>> {
    vec(0x21u8..=0x7e, 1..=12)
}

fn meta_flags(most: usize) -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    let letters: Vec<u8> = crate::protocol::meta::KNOWN_FLAGS.to_vec();
    proptest::sample::subsequence(letters, 0..=most)
        .prop_shuffle()
        .prop_flat_map(|letters| {
            letters
                .into_iter()
                .map(|letter| {
                    // An opaque token counts its `O` against the 32-byte limit.
                    let most = if letter == b'O' { 31 } else { 12 };
                    vec(
                        proptest::char::range('!', '~').prop_map(|c| c as u8),
                        0..=most,
                    )
                    .prop_map(move |token| (letter, token))
                })
                .collect::<Vec<_>>()
        })
}

fn model() -> impl Strategy<Value = Model> {
    let store_cmd = prop_oneof![
        Just(StoreCmd::Set),
        Just(StoreCmd::Add),
        Just(StoreCmd::Replace),
        Just(StoreCmd::Append),
        Just(StoreCmd::Prepend),
        Just(StoreCmd::Cas),
    ];
    let get_cmd = prop_oneof![
        Just(GetCmd::Get),
        Just(GetCmd::Gets),
        Just(GetCmd::Gat),
        Just(GetCmd::Gats)
    ];
    let data = || vec(any::<u8>(), 0..64);
    prop_oneof![
        (
            store_cmd,
            key(),
            any::<u32>(),
            any::<i64>(),
            data(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(cmd, key, flags, exptime, data, cas, noreply)| {
                let cas = if cmd == StoreCmd::Cas { cas } else { 0 };
                Model::Store {
                    cmd,
                    key,
                    flags,
                    exptime,
                    data,
                    cas,
                    noreply,
                }
            }),
        (get_cmd, any::<i64>(), vec(short_key(), 1..40)).prop_map(|(cmd, exptime, keys)| {
            let exptime = if matches!(cmd, GetCmd::Gat | GetCmd::Gats) {
                exptime
            } else {
                0
            };
            Model::Get { cmd, exptime, keys }
        }),
        (key(), any::<bool>(), any::<bool>()).prop_map(|(key, zero, noreply)| Model::Delete {
            key,
            zero,
            noreply
        }),
        (any::<bool>(), key(), any::<u64>(), any::<bool>()).prop_map(
            |(incr, key, delta, noreply)| Model::Arith {
                incr,
                key,
                delta,
                noreply
            }
        ),
        (key(), any::<i64>(), any::<bool>()).prop_map(|(key, exptime, noreply)| Model::Touch {
            key,
            exptime,
            noreply
        }),
        (proptest::option::of(any::<i64>()), any::<bool>())
            .prop_map(|(delay, noreply)| Model::FlushAll { delay, noreply }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(megabytes, noreply)| Model::CacheMemlimit { megabytes, noreply }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(level, noreply)| Model::Verbosity { level, noreply }),
        Just(Model::Version),
        Just(Model::Quit),
        any::<bool>().prop_map(|graceful| Model::Shutdown { graceful }),
        vec(short_key(), 0..6).prop_map(|args| Model::Stats { args }),
        Just(Model::MetaNoop),
        (
            prop_oneof![
                Just(MetaCmd::Get),
                Just(MetaCmd::Delete),
                Just(MetaCmd::Arith)
            ],
            key(),
            meta_flags(17)
        )
            .prop_map(|(cmd, key, flags)| Model::Meta {
                cmd,
                key,
                flags,
                data: Vec::new()
            }),
        (key(), meta_flags(16), data()).prop_map(|(key, flags, data)| Model::Meta {
            cmd: MetaCmd::Set,
            key,
            flags,
            data
        }),
        (key(), any::<bool>()).prop_map(|(key, b)| {
            let flags = if b {
                vec![(b'b', Vec::new())]
            } else {
                Vec::new()
            };
            Model::Meta {
                cmd: MetaCmd::Debug,
                key,
                flags,
                data: Vec::new(),
            }
        }),
    ]
}

fn style() -> impl Strategy<Value = Style> {
    (1..=3usize, 0..=2usize, any::<bool>()).prop_map(|(gap, lead, bare_newline)| Style {
        gap,
        lead,
        bare_newline,
    })
}

proptest! {
    #[test]
    fn a_written_request_parses_back(model in model(), style in style()) {
        let mut bytes = Vec::new();
        model.write(&style, &mut bytes);
        model.check(&super::one_with(&bytes, &Limits::default()));
    }

    #[test]
    fn pipelined_requests_parse_back_in_order(
        batch in vec((model(), style()), 1..10),
    ) {
        let mut bytes = Vec::new();
        for (model, style) in &batch {
            model.write(style, &mut bytes);
        }
        let mut rest = &bytes[..];
        for (model, _) in &batch {
            match parse(rest, &Limits::default()) {
                Parse::Request { req, consumed } => {
                    model.check(&req);
                    rest = &rest[consumed..];
                }
                other => panic!("{model:?} gave {other:?}"),
            }
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(parse(rest, &Limits::default()), Parse::Incomplete);
    }

    #[test]
    fn protocol_shaped_noise_keeps_the_invariants(
        pieces in vec(proptest::sample::select(NOISE), 0..40),
    ) {
        let bytes = pieces.concat();
        check_invariants(&bytes, &Limits::default());
        check_invariants(&bytes, &SMALL);
    }
}

/// Fragments that, glued at random, reach most parser paths.
const NOISE: &[&[u8]] = &[
    b"set ",
    b"cas ",
    b"get ",
    b"gat ",
    b"delete ",
    b"incr ",
    b"touch ",
    b"flush_all ",
    b"verbosity ",
    b"shutdown ",
    b"stats ",
    b"mg ",
    b"ms ",
    b"md ",
    b"ma ",
    b"me ",
    b"mn",
    b"k ",
    b"key123456 ",
    b"0 ",
    b"1 ",
    b"5 ",
    b"-1 ",
    b"64 ",
    b"65 ",
    b"99999999999999999999 ",
    b"noreply",
    b" ",
    b"  ",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"abcde",
    b"v ",
    b"q ",
    b"b ",
    b"O123 ",
    b"T30 ",
    b"1 ",
    b"HTTP/1.1",
    b"\t",
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];
