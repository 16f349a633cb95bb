"""Expiry on a real clock: negative, relative and absolute exptimes, touch/gat, delayed flush_all.

The few tests that must see time pass sleep for real (about 2 s each); they batch many checks
per sleep to keep the suite fast.
"""

from __future__ import annotations

import time

import pytest

from support.wire import Wire

from .conftest import CacheServer, CacheServerFactory


def test_negative_exptime_is_immediately_expired(mc: Wire) -> None:
    mc.call(b"set k 0 -1 1\r\nx\r\n", b"STORED\r\n")
    mc.call(b"get k\r\n", b"END\r\n")
    mc.call(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    mc.call(b"touch k -1\r\n", b"TOUCHED\r\n")
    mc.call(b"get k\r\n", b"END\r\n")
    mc.call(b"add k 0 0 1\r\ny\r\n", b"STORED\r\n")  # the expired item no longer blocks add
    mc.call(b"get k\r\n", b"VALUE k 0 1\r\ny\r\nEND\r\n")


def test_absolute_exptime_in_the_past(mc: Wire) -> None:
    past = int(time.time()) - 60
    mc.call(b"set k 0 %d 1\r\nx\r\n" % past, b"STORED\r\n")
    mc.call(b"get k\r\n", b"END\r\n")
    # 30 days + 1 s is already an absolute time (1970), so it is in the past as well.
    mc.call(b"set k 0 2592001 1\r\nx\r\n", b"STORED\r\n")
    mc.call(b"get k\r\n", b"END\r\n")


def test_absolute_exptime_in_the_future(mc: Wire) -> None:
    future = int(time.time()) + 1000
    mc.call(b"set k 0 %d 1\r\nx\r\n" % future, b"STORED\r\n")
    mc.call(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
    mc.send(b"mg k t\r\n")
    ttl = int(mc.expect_match(rb"HD t(\d+)").group(1))
    assert 990 <= ttl <= 1000, ttl


def test_relative_exptime_of_30_days_is_relative(mc: Wire) -> None:
    mc.call(b"set k 0 2592000 1\r\nx\r\n", b"STORED\r\n")
    mc.send(b"mg k t v\r\n")
    ttl = int(mc.expect_match(rb"VA 1 t(\d+)").group(1))
    assert 2591990 <= ttl <= 2592000, ttl
    mc.expect(b"x\r\n")


@pytest.mark.slow
def test_ttl_expires_on_the_clock(mc: Wire) -> None:
    mc.call(b"set plain 0 1 1\r\na\r\n", b"STORED\r\n")
    mc.call(b"set touched 0 0 1\r\nb\r\n", b"STORED\r\n")
    mc.call(b"touch touched 1\r\n", b"TOUCHED\r\n")
    mc.call(b"set gat 0 0 1\r\nc\r\n", b"STORED\r\n")
    mc.call(b"gat 1 gat\r\n", b"VALUE gat 0 1\r\nc\r\nEND\r\n")
    mc.call(b"ms meta 1 T1\r\nd\r\n", b"HD\r\n")
    mc.call(b"set kept 0 100 1\r\ne\r\n", b"STORED\r\n")
    mc.call(b"set extended 0 1 1\r\nf\r\n", b"STORED\r\n")
    mc.call(b"touch extended 100\r\n", b"TOUCHED\r\n")
    mc.call(b"get plain touched gat meta kept extended\r\n",
            b"VALUE plain 0 1\r\na\r\nVALUE touched 0 1\r\nb\r\nVALUE gat 0 1\r\nc\r\n"
            b"VALUE meta 0 1\r\nd\r\nVALUE kept 0 1\r\ne\r\nVALUE extended 0 1\r\nf\r\nEND\r\n")
    time.sleep(2.2)
    mc.call(b"get plain touched gat meta kept extended\r\n",
            b"VALUE kept 0 1\r\ne\r\nVALUE extended 0 1\r\nf\r\nEND\r\n")
    mc.call(b"mg plain v\r\n", b"EN\r\n")
    mc.call(b"touch plain 100\r\n", b"NOT_FOUND\r\n")
    mc.call(b"add plain 0 0 1\r\ng\r\n", b"STORED\r\n")


def test_flush_all_now(mc: Wire) -> None:
    mc.call(b"set a 0 0 1\r\n1\r\nset b 0 100 1\r\n2\r\n", b"STORED\r\nSTORED\r\n")
    mc.call(b"flush_all\r\n", b"OK\r\n")
    mc.call(b"get a b\r\n", b"END\r\n")
    # Items stored right after a flush are visible.
    mc.call(b"set a 0 0 1\r\n3\r\n", b"STORED\r\n")
    mc.call(b"get a\r\n", b"VALUE a 0 1\r\n3\r\nEND\r\n")
    mc.call(b"flush_all 0\r\n", b"OK\r\n")
    mc.call(b"get a\r\n", b"END\r\n")


def test_flush_all_bad_argument(mc: Wire) -> None:
    mc.call(b"flush_all abc\r\n", b"CLIENT_ERROR invalid exptime argument\r\n")
    mc.sync()


@pytest.mark.slow
def test_flush_all_with_delay(mc: Wire) -> None:
    mc.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
    mc.call(b"flush_all 2\r\n", b"OK\r\n")
    mc.call(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")
    deadline = time.monotonic() + 5
    while True:
        mc.send(b"get a\r\n")
        reply = mc.read_until(b"END\r\n")
        if reply == b"END\r\n":
            break
        assert reply == b"VALUE a 0 1\r\n1\r\nEND\r\n", reply
        assert time.monotonic() < deadline, "flush_all 2 did not take effect within 5 s"
        time.sleep(0.1)
    # The flush is one-shot: new items stick again (memcached's flush clock has 1 s
    # granularity, so an item stored in the flush's own second may still be dropped).
    deadline = time.monotonic() + 3
    while True:
        mc.call(b"set b 0 0 1\r\n2\r\n", b"STORED\r\n")
        reply = mc.get_values(b"get b\r\n")
        if reply:
            assert reply == [(b"b", 0, b"2", None)]
            break
        assert time.monotonic() < deadline, "items stored after a delayed flush keep vanishing"
        time.sleep(0.1)


def test_flush_all_noreply(mc: Wire) -> None:
    mc.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
    mc.send(b"flush_all noreply\r\n")
    mc.sync()
    mc.call(b"get a\r\n", b"END\r\n")
    mc.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
    mc.send(b"flush_all 0 noreply\r\n")
    mc.sync()
    mc.call(b"get a\r\n", b"END\r\n")


def test_flush_all_refused_with_F(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-F")
    with server.connect() as w:
        w.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
        w.call(b"flush_all\r\n", b"CLIENT_ERROR flush_all not allowed\r\n")
        w.call(b"flush_all 0\r\n", b"CLIENT_ERROR flush_all not allowed\r\n")
        w.call(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")
