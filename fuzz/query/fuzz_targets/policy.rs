//! Feeds arbitrary bytes to the query policy's lexer and `check` under every sql_mode and
//! checks its invariants (not only "no crash"): see `policy::check_invariants`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use query_proxy::policy::check_invariants;

fuzz_target!(|data: &[u8]| {
    check_invariants(data);
});
