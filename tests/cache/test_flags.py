"""memcached's behaviour flags: -C (no CAS), -M (no evictions), -m (memory limit honoured)."""

from __future__ import annotations

from .conftest import CacheServer, CacheServerFactory


def test_disable_cas(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-C")
    with server.connect() as w:
        w.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
        w.call(b"gets a\r\n", b"VALUE a 0 1 0\r\n1\r\nEND\r\n")
        w.call(b"mg a c v\r\n", b"VA 1 c0\r\n1\r\n")
        w.call(b"cas a 0 0 1 0\r\n2\r\n", b"EXISTS\r\n")
        w.call(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")


def _store_many(server: CacheServer, count: int, size: int) -> dict[bytes, int]:
    value = b"v" * size
    replies: dict[bytes, int] = {}
    with server.connect() as w:
        for i in range(count):
            line = w.store("set", f"k{i}", value)
            replies[line] = replies.get(line, 0) + 1
    return replies


def test_disable_evictions_refuses_when_full(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-M", "-m", "2")
    replies = _store_many(server, 200, 50_000)  # 10 MB into 2 MiB
    stored = replies.get(b"STORED\r\n", 0)
    refused = replies.get(b"SERVER_ERROR out of memory storing object\r\n", 0)
    assert stored + refused == 200, f"unexpected replies: {replies}"
    assert 1 <= stored <= (2 << 20) // 50_000 + 1, replies
    with server.connect() as w:
        # Nothing was evicted to make room: the first items are all still there.
        values = w.get_values(b"get " + b" ".join(b"k%d" % i for i in range(stored)) + b"\r\n")
        assert len(values) == stored, f"{stored - len(values)} of the first {stored} items vanished"
        assert w.stats()["evictions"] == "0"


def test_memory_limit_evicts_oldest(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-m", "2")
    replies = _store_many(server, 200, 50_000)
    assert replies == {b"STORED\r\n": 200}, replies
    with server.connect() as w:
        stats = w.stats()
        assert int(stats["bytes"]) <= 2 << 20, stats["bytes"]
        assert int(stats["evictions"]) > 0
        assert int(stats["curr_items"]) < 200
        [(_, _, data, _)] = w.get_values(b"get k199\r\n")  # the newest item is kept
        assert data == b"v" * 50_000
        w.call(b"get k0\r\n", b"END\r\n")  # the oldest is gone
