//! JSON lines framing and event parsing on arbitrary bytes; the first byte picks the size
//! limit. Invariants: `log_collector::protocol::invariants`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    log_collector::protocol::invariants::check_json(data);
});
