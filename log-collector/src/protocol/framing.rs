//! Splitting TCP byte streams into messages.
//!
//! Syslog over TCP (RFC 6587) comes octet-counted (`LEN SP MSG`) or non-transparent
//! (terminated by LF, or by NUL as Python's `SysLogHandler` sends it); a connection may mix
//! them frame by frame, as rsyslog's `imtcp` allows. JSON lines end with LF. Both framers
//! enforce the size limit themselves: an over-long frame is skipped (octet-counted: exactly its
//! declared length; otherwise up to the next delimiter) and reported once, never buffered.

use std::ops::Range;

/// What a framer found at the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A whole message at `msg`; drop `consumed` bytes from the buffer.
    Frame {
        /// Where the message is in the buffer (without framing bytes).
        msg: Range<usize>,
        /// Bytes to drop, framing included.
        consumed: usize,
    },
    /// Not enough bytes yet; read more and call again with the grown buffer.
    Incomplete,
    /// `consumed` bytes were thrown away; `error` says why when this starts a new discard
    /// (count it once), `None` while an earlier one continues.
    Discard {
        /// Bytes to drop.
        consumed: usize,
        /// Why, when newly detected.
        error: Option<FrameError>,
    },
}

/// Why bytes were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is longer than the limit.
    #[error("frame longer than the limit of {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// An octet count that is not `1*DIGIT SP` (RFC 6587 §3.4.1).
    #[error("bad octet-count header")]
    BadOctetCount,
}

/// Which delimiter ends a non-transparent syslog frame on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Delim {
    /// Not known yet: the first of LF or NUL decides, unless a NUL appears later in what is
    /// buffered (a multi-line Python message).
    #[default]
    Unknown,
    /// LF (or CRLF) ends frames.
    Lf,
    /// NUL ends frames; LF is part of the message (Python tracebacks).
    Nul,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Skipping {
    #[default]
    No,
    Bytes(u64),
    ToDelimiter,
}

/// Syslog TCP framer: one per connection.
#[derive(Debug, Clone)]
pub struct SyslogFramer {
    max: usize,
    delim: Delim,
    skipping: Skipping,
}

/// Longest octet count header: 10 digits then a space (counts up to 9 999 999 999).
const MAX_COUNT_DIGITS: usize = 10;

impl SyslogFramer {
    /// A framer for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        SyslogFramer {
            max: max.max(1),
            delim: Delim::Unknown,
            skipping: Skipping::No,
        }
    }

    /// The next step for `buf`, the bytes buffered so far.
    pub fn next(&mut self, buf: &[u8]) -> Step {
        if let Some(step) = self.continue_skip(buf) {
            return step;
        }
        let Some(&first) = buf.first() else {
            return Step::Incomplete;
        };
        if first.is_ascii_digit() {
            return self.octet_counted(buf);
        }
        if matches!(first, b'\n' | b'\0' | b'\r') {
            // Stray delimiters between frames (CRLF senders, empty lines) are not messages.
            return Step::Discard {
                consumed: 1,
                error: None,
            };
        }
        self.delimited(buf)
    }

    fn continue_skip(&mut self, buf: &[u8]) -> Option<Step> {
        match self.skipping {
            Skipping::No => None,
            Skipping::Bytes(left) => {
                if buf.is_empty() {
                    return Some(Step::Incomplete);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - n as u64;
                self.skipping = if left == 0 {
                    Skipping::No
                } else {
                    Skipping::Bytes(left)
                };
                Some(Step::Discard {
                    consumed: n,
                    error: None,
                })
            }
            Skipping::ToDelimiter => {
                if buf.is_empty() {
                    return Some(Step::Incomplete);
                }
                let found = match self.delim {
                    Delim::Nul => memchr::memchr(0, buf),
                    Delim::Lf => memchr::memchr(b'\n', buf),
                    Delim::Unknown => memchr::memchr2(0, b'\n', buf),
                };
                Some(match found {
                    Some(i) => {
                        self.skipping = Skipping::No;
                        Step::Discard {
                            consumed: i + 1,
                            error: None,
                        }
                    }
                    None => Step::Discard {
                        consumed: buf.len(),
                        error: None,
                    },
                })
            }
        }
    }

    fn octet_counted(&mut self, buf: &[u8]) -> Step {
        let mut len: u64 = 0;
        for (i, &b) in buf.iter().enumerate() {
            if b == b' ' && i > 0 && buf[0] != b'0' {
                let start = i + 1;
                if len > self.max as u64 {
                    let have = (buf.len() - start) as u64;
                    let skip_now = have.min(len);
                    let rest = len - skip_now;
                    self.skipping = if rest == 0 {
                        Skipping::No
                    } else {
                        Skipping::Bytes(rest)
                    };
                    return Step::Discard {
                        consumed: start + skip_now as usize,
                        error: Some(FrameError::TooLong { limit: self.max }),
                    };
                }
                let end = start + len as usize;
                if buf.len() < end {
                    return Step::Incomplete;
                }
                return Step::Frame {
                    msg: start..end,
                    consumed: end,
                };
            }
            if !b.is_ascii_digit() || i >= MAX_COUNT_DIGITS {
                self.skipping = Skipping::ToDelimiter;
                return Step::Discard {
                    consumed: i,
                    error: Some(FrameError::BadOctetCount),
                }
                .nonempty(self, buf);
            }
            len = len * 10 + u64::from(b - b'0');
        }
        Step::Incomplete
    }

    fn delimited(&mut self, buf: &[u8]) -> Step {
        let limit = buf.len().min(self.max + 2);
        let window = &buf[..limit];
        let found = match self.delim {
            Delim::Nul => memchr::memchr(0, window),
            Delim::Lf => memchr::memchr(b'\n', window),
            Delim::Unknown => match memchr::memchr2(0, b'\n', window) {
                Some(i) if window[i] == 0 => {
                    self.delim = Delim::Nul;
                    Some(i)
                }
                // What follows the first LF decides, so the result never depends on how the
                // stream was split into reads: the start of another message (`<PRI>`, an
                // octet count, another line end) makes LF the delimiter; anything else means
                // the LF is inside a multi-line message, which only NUL framing can carry.
                Some(i) => match buf.get(i + 1) {
                    None => return Step::Incomplete,
                    Some(&b) if matches!(b, b'<' | b'\n' | b'\r' | 0) || b.is_ascii_digit() => {
                        self.delim = Delim::Lf;
                        Some(i)
                    }
                    Some(_) => {
                        self.delim = Delim::Nul;
                        memchr::memchr(0, &window[i..]).map(|j| i + j)
                    }
                },
                None => None,
            },
        };
        match found {
            Some(i) => {
                let mut end = i;
                if buf[i] == b'\n' && end > 0 && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                if end > self.max {
                    return Step::Discard {
                        consumed: i + 1,
                        error: Some(FrameError::TooLong { limit: self.max }),
                    };
                }
                Step::Frame {
                    msg: 0..end,
                    consumed: i + 1,
                }
            }
            None if buf.len() > self.max + 1 => {
                self.skipping = Skipping::ToDelimiter;
                Step::Discard {
                    consumed: limit,
                    error: Some(FrameError::TooLong { limit: self.max }),
                }
            }
            None => Step::Incomplete,
        }
    }
}

impl SyslogFramer {
    /// At the end of the stream: what is left in `buf` (if anything but a partial octet-counted
    /// frame or bytes being skipped) is the last message, without its trailing line end.
    pub fn finish(&mut self, buf: &[u8]) -> Option<Range<usize>> {
        if self.skipping != Skipping::No || buf.first().is_none_or(u8::is_ascii_digit) {
            return None;
        }
        let mut end = buf.len();
        while end > 0 && matches!(buf[end - 1], b'\n' | b'\r' | 0) {
            end -= 1;
        }
        (end > 0 && end <= self.max).then_some(0..end)
    }
}

impl Step {
    /// A discard must make progress: with nothing to drop yet, continue the skip now.
    fn nonempty(self, framer: &mut SyslogFramer, buf: &[u8]) -> Step {
        match self {
            Step::Discard { consumed: 0, error } => match framer.continue_skip(buf) {
                Some(Step::Discard { consumed, .. }) => Step::Discard { consumed, error },
                _ => Step::Discard { consumed: 0, error },
            },
            other => other,
        }
    }
}

/// JSON lines framer: LF-terminated lines of at most `max` bytes (a CR before the LF is
/// dropped); a longer line is skipped up to its LF and reported once.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max: usize,
    skipping: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        LineFramer {
            max: max.max(1),
            skipping: false,
        }
    }

    /// The next step for `buf`.
    pub fn next(&mut self, buf: &[u8]) -> Step {
        if buf.is_empty() {
            return Step::Incomplete;
        }
        let window = &buf[..buf.len().min(self.max + 2)];
        let found = if self.skipping {
            memchr::memchr(b'\n', buf)
        } else {
            memchr::memchr(b'\n', window)
        };
        if self.skipping {
            return match found {
                Some(i) => {
                    self.skipping = false;
                    Step::Discard {
                        consumed: i + 1,
                        error: None,
                    }
                }
                None => Step::Discard {
                    consumed: buf.len(),
                    error: None,
                },
            };
        }
        match found {
            Some(i) => {
                let end = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                if end > self.max {
                    return Step::Discard {
                        consumed: i + 1,
                        error: Some(FrameError::TooLong { limit: self.max }),
                    };
                }
                Step::Frame {
                    msg: 0..end,
                    consumed: i + 1,
                }
            }
            None if buf.len() > self.max + 1 => {
                self.skipping = true;
                Step::Discard {
                    consumed: window.len(),
                    error: Some(FrameError::TooLong { limit: self.max }),
                }
            }
            None => Step::Incomplete,
        }
    }
}

/// Drives `next` over a whole buffer as a connection would (for tests and the fuzzer):
/// returns the frames and the errors, plus the bytes left over.
pub fn split_all(
    mut next: impl FnMut(&[u8]) -> Step,
    input: &[u8],
) -> (Vec<Vec<u8>>, Vec<FrameError>, usize) {
    let mut frames = Vec::new();
    let mut errors = Vec::new();
    let mut at = 0;
    loop {
        match next(&input[at..]) {
            Step::Frame { msg, consumed } => {
                assert!(
                    consumed > 0 && msg.end <= consumed,
                    "frame must make progress"
                );
                frames.push(input[at + msg.start..at + msg.end].to_vec());
                at += consumed;
            }
            Step::Discard { consumed, error } => {
                errors.extend(error);
                if consumed == 0 {
                    return (frames, errors, input.len() - at);
                }
                at += consumed;
            }
            Step::Incomplete => return (frames, errors, input.len() - at),
        }
        if at == input.len() {
            return (frames, errors, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Splits a whole stream, including what `finish` makes of its end.
    fn syslog(input: &[u8], max: usize) -> (Vec<Vec<u8>>, Vec<FrameError>, usize) {
        let mut f = SyslogFramer::new(max);
        let (mut frames, errors, rest) = split_all(|b| f.next(b), input);
        let tail = &input[input.len() - rest..];
        match f.finish(tail) {
            Some(r) => {
                frames.push(tail[r].to_vec());
                (frames, errors, 0)
            }
            None => (frames, errors, rest),
        }
    }

    #[test]
    fn octet_counting() {
        let (frames, errors, rest) = syslog(b"5 <1>ab3 <2>", 100);
        assert_eq!(frames, vec![b"<1>ab".to_vec(), b"<2>".to_vec()]);
        assert!(errors.is_empty());
        assert_eq!(rest, 0);
    }

    #[test]
    fn lf_and_crlf() {
        let mut f = SyslogFramer::new(100);
        let (frames, _, rest) = split_all(|b| f.next(b), b"<13>one\n<13>two\r\n<13>thr");
        assert_eq!(frames, vec![b"<13>one".to_vec(), b"<13>two".to_vec()]);
        assert_eq!(rest, 7);
        // A lone LF-terminated message is complete once the next byte or the end arrives.
        let mut f = SyslogFramer::new(100);
        assert_eq!(f.next(b"<13>one\n"), Step::Incomplete);
        assert_eq!(f.finish(b"<13>one\n"), Some(0..7));
        assert_eq!(f.finish(b"12 <13>"), None);
    }

    #[test]
    fn nul_framing_keeps_newlines() {
        let (frames, _, _) = syslog(b"<11>boom\nTraceback\n  x\0<14>next\0", 100);
        assert_eq!(
            frames,
            vec![b"<11>boom\nTraceback\n  x".to_vec(), b"<14>next".to_vec()]
        );
    }

    #[test]
    fn mixed_framing() {
        let (frames, _, _) = syslog(b"4 <1>a<2>b\n<3>c\n", 100);
        assert_eq!(
            frames,
            vec![b"<1>a".to_vec(), b"<2>b".to_vec(), b"<3>c".to_vec()]
        );
    }

    #[test]
    fn oversized_octet_count_is_skipped_exactly() {
        let mut input = b"20 ".to_vec();
        input.extend_from_slice(&[b'x'; 20]);
        input.extend_from_slice(b"3 <1>");
        let (frames, errors, _) = syslog(&input, 10);
        assert_eq!(frames, vec![b"<1>".to_vec()]);
        assert_eq!(errors, vec![FrameError::TooLong { limit: 10 }]);
        // The same across reads of one byte each.
        let mut f = SyslogFramer::new(10);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut errs = 0;
        for &b in &input {
            buf.push(b);
            loop {
                match f.next(&buf) {
                    Step::Frame { msg, consumed } => {
                        got.push(buf[msg].to_vec());
                        buf.drain(..consumed);
                    }
                    Step::Discard { consumed, error } => {
                        errs += usize::from(error.is_some());
                        buf.drain(..consumed);
                        if buf.is_empty() {
                            break;
                        }
                    }
                    Step::Incomplete => break,
                }
            }
        }
        assert_eq!(got, vec![b"<1>".to_vec()]);
        assert_eq!(errs, 1);
    }

    #[test]
    fn oversized_line_is_skipped_to_its_end() {
        let mut input = vec![b'<'; 50];
        input.extend_from_slice(b"\n<1>ok\n");
        let (frames, errors, _) = syslog(&input, 10);
        assert_eq!(frames, vec![b"<1>ok".to_vec()]);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn bad_octet_count_resyncs_at_delimiter() {
        let (frames, errors, _) = syslog(b"12x junk\n<1>ok\n", 100);
        assert_eq!(frames, vec![b"<1>ok".to_vec()]);
        assert_eq!(errors, vec![FrameError::BadOctetCount]);
        let (_, errors, _) = syslog(b"012345678901 x\n", 100);
        assert_eq!(errors, vec![FrameError::BadOctetCount]);
    }

    #[test]
    fn json_lines() {
        let mut f = LineFramer::new(8);
        let (frames, errors, rest) = split_all(|b| f.next(b), b"{\"a\":1}\r\n0123456789abc\n{}\n{");
        assert_eq!(frames, vec![b"{\"a\":1}".to_vec(), b"{}".to_vec()]);
        assert_eq!(errors, vec![FrameError::TooLong { limit: 8 }]);
        assert_eq!(rest, 1);
    }

    fn message(delims_allowed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 1..40).prop_map(move |mut v| {
            v.retain(|b| !delims_allowed.contains(b));
            v.insert(0, b'<');
            v
        })
    }

    proptest! {
        #[test]
        fn every_prefix_of_an_octet_counted_frame_is_incomplete(msg in proptest::collection::vec(any::<u8>(), 1..200)) {
            let mut input = format!("{} ", msg.len()).into_bytes();
            input.extend_from_slice(&msg);
            for cut in 0..input.len() {
                prop_assert_eq!(SyslogFramer::new(1000).next(&input[..cut]), Step::Incomplete);
            }
            let (frames, errors, rest) = syslog(&input, 1000);
            prop_assert_eq!(frames, vec![msg]);
            prop_assert!(errors.is_empty());
            prop_assert_eq!(rest, 0);
        }

        #[test]
        fn every_prefix_of_a_delimited_frame_is_incomplete(msg in message(b"\n\0\r"), nul in any::<bool>()) {
            let mut input = msg.clone();
            input.push(if nul { 0 } else { b'\n' });
            for cut in 0..input.len() {
                prop_assert_eq!(SyslogFramer::new(1000).next(&input[..cut]), Step::Incomplete);
            }
            let (frames, _, rest) = syslog(&input, 1000);
            prop_assert_eq!(frames, vec![msg]);
            prop_assert_eq!(rest, 0);
        }

        #[test]
        fn every_prefix_of_a_json_line_is_incomplete(line in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut line = line;
            line.retain(|&b| b != b'\n' && b != b'\r');
            let mut input = line.clone();
            input.push(b'\n');
            for cut in 0..input.len() {
                prop_assert_eq!(LineFramer::new(1000).next(&input[..cut]), Step::Incomplete);
            }
            let mut f = LineFramer::new(1000);
            let (frames, _, _) = split_all(|b| f.next(b), &input);
            prop_assert_eq!(frames, vec![line]);
        }

        #[test]
        fn arbitrary_input_never_panics_and_frames_respect_the_limit(input in proptest::collection::vec(any::<u8>(), 0..600), max in 1usize..64) {
            let (frames, _, rest) = syslog(&input, max);
            prop_assert!(rest <= input.len());
            for f in frames {
                prop_assert!(f.len() <= max);
            }
            let mut lf = LineFramer::new(max);
            let (frames, _, _) = split_all(|b| lf.next(b), &input);
            for f in frames {
                prop_assert!(f.len() <= max);
            }
        }
    }
}
