"""Meta commands byte for byte: mg, ms, md, ma, mn, me, as memcached 1.6.18 answers them.

Return flags come back in the order they were asked for; W/X/Z are appended after them in the
order Z, X, W (1.6.18's proto_text.c). Where 1.6.18 differs from memcached HEAD, a comment says so.
"""

from __future__ import annotations

import base64
import re

from support.wire import Wire

from .conftest import CacheServer


def _cas(mc: Wire, key: bytes) -> int:
    mc.send(b"mg " + key + b" c\r\n")
    return int(mc.expect_match(rb"HD c(\d+)").group(1))


def test_mg_flags(mc: Wire) -> None:
    mc.call(b"set foo 5 0 3\r\nbar\r\n", b"STORED\r\n")
    cas = _cas(mc, b"foo")
    mc.call(b"mg foo v\r\n", b"VA 3\r\nbar\r\n")
    mc.call(b"mg foo\r\n", b"HD\r\n")
    mc.call(b"mg foo k v f c t s\r\n", b"VA 3 kfoo f5 c%d t-1 s3\r\nbar\r\n" % cas)
    mc.call(b"mg foo s v Oxyz k\r\n", b"VA 3 s3 Oxyz kfoo\r\nbar\r\n")
    mc.call(b"mg foo f k\r\n", b"HD f5 kfoo\r\n")
    mc.call(b"mg foo Oabc q\r\n", b"HD Oabc\r\n")


def test_mg_miss(mc: Wire) -> None:
    mc.call(b"mg miss v\r\n", b"EN\r\n")
    mc.call(b"mg miss v k Oabc\r\n", b"EN kmiss Oabc\r\n")  # k and O are echoed on a miss
    mc.call(b"mg miss\r\n", b"EN\r\n")


def test_mg_quiet_pipeline_then_mn(mc: Wire) -> None:
    mc.call(b"set foo 0 0 3\r\nbar\r\n", b"STORED\r\n")
    # q hides misses (EN) but not hits.
    mc.call(b"mg miss v q\r\nmg foo k v q\r\nmg miss2 v q\r\nmn\r\n", b"VA 3 kfoo\r\nbar\r\nMN\r\n")
    mc.call(b"mg miss v q\r\nmn\r\n", b"MN\r\n")


def test_mg_ttl_flag(mc: Wire) -> None:
    mc.call(b"set foo 0 100 1\r\nx\r\n", b"STORED\r\n")
    mc.send(b"mg foo t\r\n")
    assert 99 <= int(mc.expect_match(rb"HD t(\d+)").group(1)) <= 100
    mc.call(b"mg foo T0 t\r\n", b"HD t-1\r\n")  # T updates the TTL before t reports it


def test_mg_base64_key(mc: Wire) -> None:
    key = b"bin\x00key\r\n"
    b64 = base64.b64encode(key)
    mc.call(b"ms " + b64 + b" 2 b\r\nhi\r\n", b"HD\r\n")
    mc.call(b"mg " + b64 + b" b k v\r\n", b"VA 2 k" + b64 + b" b\r\nhi\r\n")
    mc.call(b"mg Zm9v b v\r\n", b"EN\r\n")
    mc.call(b"set foo 0 0 3\r\nbar\r\n", b"STORED\r\n")
    # "Zm9v" is base64 of "foo". The key comes back in the form it was stored in: plain here,
    # because the item was stored by a classic `set`.
    mc.call(b"mg Zm9v b k v\r\n", b"VA 3 kfoo\r\nbar\r\n")


def test_mg_errors(mc: Wire) -> None:
    mc.call(b"mg foo zz\r\n", b"CLIENT_ERROR invalid flag\r\n")
    mc.call(b"mg foo v v\r\n", b"CLIENT_ERROR duplicate flag\r\n")
    mc.call(b"mg " + b"a" * 251 + b" v\r\n", b"CLIENT_ERROR bad command line format\r\n")
    # A meta command without a key: 1.6.18 says ERROR, memcached HEAD says CLIENT_ERROR.
    mc.send(b"mg\r\n")
    assert mc.read_line() in (b"ERROR\r\n", b"CLIENT_ERROR bad command line format\r\n")
    mc.sync()


def test_ms_basic_and_flags(mc: Wire) -> None:
    mc.call(b"ms m1 2\r\nhi\r\n", b"HD\r\n")
    mc.call(b"mg m1 f v t\r\n", b"VA 2 f0 t-1\r\nhi\r\n")
    mc.call(b"ms m1 2 T0 F7\r\nhi\r\n", b"HD\r\n")
    mc.call(b"mg m1 f v t\r\n", b"VA 2 f7 t-1\r\nhi\r\n")
    mc.call(b"ms m1 3 T100 Oop k\r\nabc\r\n", b"HD Oop km1\r\n")
    mc.send(b"mg m1 t v\r\n")
    assert 99 <= int(mc.expect_match(rb"VA 3 t(\d+)").group(1)) <= 100
    mc.expect(b"abc\r\n")
    mc.call(b"get m1\r\n", b"VALUE m1 0 3\r\nabc\r\nEND\r\n")


def test_ms_quiet(mc: Wire) -> None:
    # q hides HD; failures (NS) are still reported.
    mc.call(b"ms m 1 q\r\na\r\nms m 1 q ME\r\nb\r\nmn\r\n", b"NS\r\nMN\r\n")
    mc.call(b"mg m v\r\n", b"VA 1\r\na\r\n")


def test_ms_modes(mc: Wire) -> None:
    mc.call(b"ms m 1 ME\r\nx\r\n", b"HD\r\n")
    mc.call(b"ms m 1 ME\r\ny\r\n", b"NS\r\n")
    mc.call(b"ms other 1 MR\r\nx\r\n", b"NS\r\n")
    mc.call(b"ms m 1 MR\r\nz\r\n", b"HD\r\n")
    mc.call(b"ms m 2 MA\r\nyo\r\n", b"HD\r\n")
    mc.call(b"ms m 2 MP\r\nab\r\n", b"HD\r\n")
    mc.call(b"mg m v\r\n", b"VA 5\r\nabzyo\r\n")
    mc.call(b"ms m 1 MS\r\nw\r\n", b"HD\r\n")
    mc.call(b"mg m v\r\n", b"VA 1\r\nw\r\n")
    mc.call(b"ms other 1 MA\r\nx\r\n", b"NS\r\n")
    mc.call(b"ms other 1 MP\r\nx\r\n", b"NS\r\n")
    mc.call(b"mg other v\r\n", b"EN\r\n")
    mc.call(b"ms m 1 MX\r\nq\r\n", b"CLIENT_ERROR invalid mode for ms M token\r\n")
    mc.sync()


def test_ms_compare_cas(mc: Wire) -> None:
    mc.call(b"ms m 1\r\na\r\n", b"HD\r\n")
    cas = _cas(mc, b"m")
    mc.call(b"ms m 1 C%d\r\nb\r\n" % (cas + 1), b"EX\r\n")
    mc.call(b"ms nope 1 C%d\r\nb\r\n" % cas, b"NF\r\n")
    mc.call(b"ms m 1 C%d\r\nb\r\n" % cas, b"HD\r\n")
    mc.call(b"ms m 1 C%d\r\nc\r\n" % cas, b"EX\r\n")
    mc.call(b"mg m v\r\n", b"VA 1\r\nb\r\n")
    new_cas = _cas(mc, b"m")
    assert new_cas != cas
    # The classic gets sees the same cas value.
    [(_, _, _, gets_cas)] = mc.get_values(b"gets m\r\n")
    assert gets_cas == new_cas


def test_ms_invalidate_with_older_cas_stores_stale(mc: Wire) -> None:
    mc.call(b"ms m 1\r\na\r\n", b"HD\r\n")
    old = _cas(mc, b"m")
    mc.call(b"md m I T30\r\n", b"HD\r\n")
    # I with a cas older than the item's: stored, but still marked stale (X) with the
    # recache token up for grabs (W).
    mc.call(b"ms m 1 I C%d\r\nb\r\n" % old, b"HD\r\n")
    mc.call(b"mg m v\r\n", b"VA 1 X W\r\nb\r\n")
    # A plain set replaces the stale item with a fresh one.
    mc.call(b"ms m 1\r\nc\r\n", b"HD\r\n")
    mc.call(b"mg m v\r\n", b"VA 1\r\nc\r\n")


def test_ms_bad_data_chunk(mc: Wire) -> None:
    mc.call(b"ms m 1\r\nab\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    mc.call(b"mg m v\r\n", b"EN\r\n")


def test_ms_too_large(mc: Wire) -> None:
    over = b"mn\r\n" * (1 << 18) + b"x"
    mc.call(b"ms big %d\r\n" % len(over) + over + b"\r\n",
            b"SERVER_ERROR object too large for cache\r\n")
    mc.sync()
    mc.call(b"mg big v\r\n", b"EN\r\n")


def test_md(mc: Wire) -> None:
    mc.call(b"set d 0 0 1\r\na\r\n", b"STORED\r\n")
    mc.call(b"md d\r\n", b"HD\r\n")
    mc.call(b"md d\r\n", b"NF\r\n")
    mc.call(b"md d Oxx k\r\n", b"NF Oxx kd\r\n")
    mc.call(b"md d q\r\nmn\r\n", b"NF\r\nMN\r\n")  # q hides HD only
    mc.call(b"set d 0 0 1\r\na\r\n", b"STORED\r\n")
    mc.call(b"md d q\r\nmn\r\n", b"MN\r\n")
    mc.call(b"get d\r\n", b"END\r\n")


def test_md_compare_cas(mc: Wire) -> None:
    mc.call(b"set d 0 0 1\r\na\r\n", b"STORED\r\n")
    cas = _cas(mc, b"d")
    mc.call(b"md d C%d\r\n" % (cas + 1), b"EX\r\n")
    mc.call(b"md d C%d\r\n" % cas, b"HD\r\n")
    mc.call(b"mg d v\r\n", b"EN\r\n")


def test_md_base64(mc: Wire) -> None:
    mc.call(b"set foo 0 0 1\r\na\r\n", b"STORED\r\n")
    mc.call(b"md Zm9v b\r\n", b"HD\r\n")
    mc.call(b"get foo\r\n", b"END\r\n")


def test_md_invalidate_then_mg_sees_stale_and_win(mc: Wire) -> None:
    mc.call(b"set d 0 0 1\r\na\r\n", b"STORED\r\n")
    cas = _cas(mc, b"d")
    mc.call(b"md d I T30\r\n", b"HD\r\n")
    # The first fetch of a stale item wins the right to recache (W) and sees it is stale (X);
    # later fetches are told a winner exists (Z). The invalidation bumped the cas.
    mc.send(b"mg d v c t\r\n")
    m = mc.expect_match(rb"VA 1 c(\d+) t(\d+) X W")
    assert int(m.group(1)) != cas and 29 <= int(m.group(2)) <= 30
    mc.expect(b"a\r\n")
    mc.send(b"mg d v\r\n")
    mc.expect(b"VA 1 Z X\r\na\r\n")
    # The classic protocol still serves the stale value.
    mc.call(b"get d\r\n", b"VALUE d 0 1\r\na\r\nEND\r\n")


def test_mg_vivify_on_miss(mc: Wire) -> None:
    mc.send(b"mg v1 N30 v c t\r\n")
    m = mc.expect_match(rb"VA 0 c(\d+) t(\d+) W")
    assert 29 <= int(m.group(2)) <= 30
    mc.expect(b"\r\n")
    mc.send(b"mg v1 N30 v t\r\n")
    mc.expect_match(rb"VA 0 t\d+ Z")
    mc.expect(b"\r\n")
    mc.call(b"mg v1 N30\r\n", b"HD Z\r\n")
    # The winner fills it in; the placeholder flags are gone.
    mc.call(b"ms v1 3 T30\r\nnew\r\n", b"HD\r\n")
    mc.call(b"mg v1 v N30\r\n", b"VA 3\r\nnew\r\n")


def test_mg_recache(mc: Wire) -> None:
    mc.call(b"set r 0 100 1\r\nr\r\n", b"STORED\r\n")
    mc.call(b"mg r R30 v\r\n", b"VA 1\r\nr\r\n")  # 100 s left > 30: no win
    mc.call(b"mg r R200 v\r\n", b"VA 1 W\r\nr\r\n")  # 100 s left < 200: this client wins
    mc.call(b"mg r R200 v\r\n", b"VA 1 Z\r\nr\r\n")  # the token was already handed out
    mc.call(b"set r 0 100 1\r\ns\r\n", b"STORED\r\n")  # a new value clears the token
    mc.call(b"mg r R200 v\r\n", b"VA 1 W\r\ns\r\n")


def test_ma(server: CacheServer, mc: Wire) -> None:
    mc.call(b"ma c\r\n", b"NF\r\n")
    mc.call(b"ma c N0 J13\r\n", b"HD\r\n")
    mc.call(b"mg c v\r\n", b"VA 2\r\n13\r\n")
    mc.call(b"ma c v\r\n", b"VA 2\r\n14\r\n")
    mc.call(b"ma c v MD D20\r\n", b"VA 1\r\n0\r\n")  # decr floors at 0
    mc.send(b"ma c v MI D5 t c\r\n")
    m = mc.expect_match(rb"VA 1 t-1 c(\d+)")
    mc.expect(b"5\r\n")
    assert int(m.group(1)) == _cas(mc, b"c")
    mc.call(b"ma c M+ v\r\n", b"VA 1\r\n6\r\n")
    mc.call(b"ma c M- v\r\n", b"VA 1\r\n5\r\n")
    mc.call(b"ma c v k Oz\r\n", b"VA 1 kc Oz\r\n6\r\n")
    mc.call(b"ma c q\r\nmn\r\n", b"MN\r\n")
    # The value shrank from "14" by a decr earlier, so it is kept space-padded in place
    # (memcached: usually; see test_retrieval._expect_padded).
    mc.send(b"mg c v\r\n")
    reply = mc.read_line() + mc.read_line()
    allowed = {b"VA 2\r\n7 \r\n"} | ({b"VA 1\r\n7\r\n"} if server.is_memcached else set())
    assert reply in allowed, f"mg c v: got {reply!r}, want one of {sorted(allowed)}"
    mc.call(b"ma c D18446744073709551615 v\r\n", b"VA 1\r\n6\r\n")  # wraps at 2^64
    mc.call(b"ma c MX\r\n", b"CLIENT_ERROR invalid mode for ma M token\r\n")


def test_ma_vivify_with_initial_value(mc: Wire) -> None:
    mc.call(b"ma c2 N0 J5 v\r\n", b"VA 1\r\n5\r\n")  # created with J, not incremented
    mc.call(b"ma c2 MD D10 v\r\n", b"VA 1\r\n0\r\n")
    mc.call(b"ma c3 N100 v t\r\n", b"VA 1 t100\r\n0\r\n")  # J defaults to 0


def test_ma_errors(mc: Wire) -> None:
    mc.call(b"set s 0 0 2\r\nab\r\n", b"STORED\r\n")
    mc.call(b"ma s\r\n", b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    mc.call(b"ma nope q\r\nmn\r\n", b"NF\r\nMN\r\n")
    mc.call(b"set n 0 0 1\r\n1\r\n", b"STORED\r\n")
    cas = _cas(mc, b"n")
    mc.call(b"ma n C%d v\r\n" % (cas + 1), b"EX\r\n")
    mc.call(b"ma n C%d v\r\n" % cas, b"VA 1\r\n2\r\n")


def test_mn(mc: Wire) -> None:
    mc.call(b"mn\r\n", b"MN\r\n")
    mc.call(b"mn\r\nmn\r\n", b"MN\r\nMN\r\n")


def test_me_shape(mc: Wire) -> None:
    mc.call(b"me nope\r\n", b"EN\r\n")
    mc.call(b"set r 0 100 1\r\nr\r\n", b"STORED\r\n")
    cas = _cas(mc, b"r")
    mc.send(b"me r\r\n")
    m = mc.expect_match(
        rb"ME r exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)")
    # 1.6.18 prints exp relative to its own clock base (negative here); HEAD prints the TTL.
    assert int(m.group(3)) == cas
    assert int(m.group(6)) > 1
    mc.send(b"me Zm9v b\r\n")
    assert re.fullmatch(rb"EN\r\n", mc.read_line())
