//! Feeds arbitrary bytes to the memcached text-protocol parser the way a connection would and
//! checks its invariants (not only "no crash"): see `protocol::check_invariants`.

#![no_main]

use cache_server::protocol::{check_invariants, Limits};
use libfuzzer_sys::fuzz_target;

/// Limits small enough that short inputs reach the key, value and line limits.
const SMALL: Limits = Limits {
    max_key_len: 8,
    item_size_max: 64,
    max_line_len: 32,
};

fuzz_target!(|data: &[u8]| {
    check_invariants(data, &Limits::default());
    check_invariants(data, &SMALL);
});
