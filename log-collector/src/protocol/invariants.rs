//! Invariants of the wire parsers, checked on arbitrary input by the fuzz targets
//! (fuzz/logs) and by the unit test that replays their seed corpus. Each function panics
//! when an invariant breaks.

use super::framing::{FrameError, LineFramer, Step, SyslogFramer};
use super::{json, syslog, Source};

/// Feeds `input` to a fresh framer in pieces (sizes taken from `cuts`), as reads from a
/// socket would arrive, and returns the frames and errors.
fn feed(
    mut next: impl FnMut(&[u8]) -> Step,
    input: &[u8],
    cuts: &[u8],
) -> (Vec<Vec<u8>>, Vec<FrameError>) {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = usize::from(cuts.get(i % cuts.len().max(1)).copied().unwrap_or(255)).max(1);
        i += 1;
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match next(&buf) {
                Step::Incomplete => break,
                Step::Frame { msg, consumed } => {
                    assert!(consumed > 0 && consumed <= buf.len() && msg.end <= consumed);
                    frames.push(buf[msg].to_vec());
                    buf.drain(..consumed);
                }
                Step::Discard { consumed, error } => {
                    assert!(consumed <= buf.len());
                    errors.extend(error);
                    buf.drain(..consumed);
                    if consumed == 0 || buf.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    (frames, errors)
}

fn limit(data: &[u8]) -> usize {
    16 + usize::from(data.first().copied().unwrap_or(0)) * 4
}

/// Syslog TCP framing and parsing: every frame within the limit; the same frames whether the
/// stream arrives whole or byte by byte or in odd pieces; every parsed message stores as valid
/// JSON with a severity and facility in range.
pub fn check_syslog(data: &[u8]) {
    let max = limit(data);
    let input = data.get(1..).unwrap_or_default();
    let mut whole = SyslogFramer::new(max);
    let (frames, errors) = feed(|b| whole.next(b), input, &[255, 255, 255, 255]);
    let mut bytewise = SyslogFramer::new(max);
    let (frames1, errors1) = feed(|b| bytewise.next(b), input, &[1]);
    let mut odd = SyslogFramer::new(max);
    let (frames2, _) = feed(|b| odd.next(b), input, &[3, 7, 1, 64]);
    assert_eq!(frames, frames1, "framing depends on how reads are split");
    assert_eq!(frames, frames2, "framing depends on how reads are split");
    assert_eq!(errors.len(), errors1.len());
    for f in &frames {
        assert!(f.len() <= max, "frame over the limit");
        check_syslog_message(f);
    }
}

/// One syslog message: parse, and if it parses, store as valid JSON.
pub fn check_syslog_message(frame: &[u8]) {
    let now = 1_795_000_000_000_000_000;
    let _ = syslog::parse_auth_line(frame);
    if let Ok(m) = syslog::parse(frame, now) {
        assert!(m.event.severity <= 7 && m.facility <= 23);
        let mut out = Vec::new();
        m.event.encode_json(Source::SyslogTcp, now, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("stored form is JSON");
        assert!(v.get("sd").is_none());
        if let Some(sd) = v.get("extra").and_then(|e| e.get("sd")) {
            assert!(
                sd.get(syslog::SD_ID).is_none(),
                "credentials are never stored"
            );
        }
    }
}

/// JSON lines: the same lines however reads are split, lines within the limit, and every
/// accepted event stores as valid JSON.
pub fn check_json(data: &[u8]) {
    let max = limit(data);
    let input = data.get(1..).unwrap_or_default();
    let mut whole = LineFramer::new(max);
    let (frames, errors) = feed(|b| whole.next(b), input, &[255, 255, 255, 255]);
    let mut bytewise = LineFramer::new(max);
    let (frames1, errors1) = feed(|b| bytewise.next(b), input, &[1]);
    assert_eq!(frames, frames1, "framing depends on how reads are split");
    assert_eq!(errors.len(), errors1.len());
    for f in &frames {
        assert!(f.len() <= max);
        if let Ok(json::Line::Event(ev, _)) = json::parse_line(f) {
            assert!(ev.severity <= 7);
            let mut out = Vec::new();
            ev.encode_json(Source::Json, 0, &mut out);
            serde_json::from_slice::<serde_json::Value>(&out).expect("stored form is JSON");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/logs/corpus")
            .join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(!out.is_empty(), "empty seed corpus {}", dir.display());
        out
    }

    #[test]
    fn fuzz_seed_corpus_keeps_the_invariants() {
        for input in corpus("syslog") {
            check_syslog(&input);
        }
        for input in corpus("json_lines") {
            check_json(&input);
        }
    }

    proptest::proptest! {
        #[test]
        fn random_input_keeps_the_invariants(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            check_syslog(&data);
            check_json(&data);
        }
    }
}
