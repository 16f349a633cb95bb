//! Feeds arbitrary bytes to the query proxy's wire-protocol decoders (packet framing,
//! handshake, HandshakeResponse41, commands, OK/ERR, the response tracker) and checks their
//! invariants, not only "no crash": see `protocol::check_invariants`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use query_proxy::protocol::check_invariants;

fuzz_target!(|data: &[u8]| {
    check_invariants(data);
});
