//! Syslog TCP framing (octet counting, LF, NUL) and RFC 5424/3164 parsing on arbitrary bytes;
//! the first byte picks the size limit. Invariants: `log_collector::protocol::invariants`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    log_collector::protocol::invariants::check_syslog(data);
});
