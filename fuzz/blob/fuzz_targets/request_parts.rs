//! Feeds arbitrary bytes to the blob server's request parsing (route and names, query, Range,
//! entity tags) and checks its invariants, not only "no crash": see
//! `blob_server::http::parse::check_invariants`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blob_server::http::parse::check_invariants(data);
});
