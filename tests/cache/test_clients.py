"""Real Python clients against the server: pymemcache (Client, PooledClient, HashClient) and
python-memcached, with round trips of every common call, large and binary-safe values."""

from __future__ import annotations

import os

import memcache
import pytest
from pymemcache.client.base import Client, PooledClient
from pymemcache.client.hash import HashClient

from .conftest import CacheServer, CacheServerFactory

NEAR_1MIB = 1_000_000  # under memcached's -I 1m with its item header, so it fits both servers


def _pym(server: CacheServer) -> Client:
    return Client((server.host, server.port), connect_timeout=5, timeout=5)


def test_pymemcache_round_trips(server: CacheServer) -> None:
    c = _pym(server)
    try:
        assert c.set(b"k", b"v", noreply=False) is True
        assert c.get(b"k") == b"v"
        assert c.get(b"missing") is None
        assert c.add(b"k", b"x", noreply=False) is False
        assert c.add(b"k2", b"x", noreply=False) is True
        assert c.replace(b"nope", b"x", noreply=False) is False
        assert c.append(b"k", b"++", noreply=False) is True
        assert c.prepend(b"k", b"--", noreply=False) is True
        assert c.get(b"k") == b"--v++"
        assert c.set_many({b"m1": b"1", b"m2": b"2", b"m3": b"3"}, noreply=False) == []
        assert c.get_many([b"m1", b"m2", b"nope", b"m3"]) == {b"m1": b"1", b"m2": b"2", b"m3": b"3"}
        value, cas = c.gets(b"m1")
        assert value == b"1" and cas is not None
        assert c.cas(b"m1", b"one", cas, noreply=False) is True
        assert c.cas(b"m1", b"uno", cas, noreply=False) is False
        assert c.cas(b"never", b"x", b"1", noreply=False) is None
        assert c.get(b"m1") == b"one"
        assert c.gets_many([b"m2", b"m3"])[b"m2"][0] == b"2"
        assert c.incr(b"m2", 40, noreply=False) == 42
        assert c.decr(b"m2", 50, noreply=False) == 0
        assert c.incr(b"nope", 1, noreply=False) is None
        assert c.touch(b"m3", 100, noreply=False) is True
        assert c.touch(b"nope", 100, noreply=False) is False
        assert c.delete(b"m3", noreply=False) is True
        assert c.delete(b"m3", noreply=False) is False
        assert c.delete_many([b"m1", b"m2"], noreply=False) is True
        assert c.get_many([b"m1", b"m2"]) == {}
        assert c.version()
        stats = c.stats()
        assert stats[b"curr_items"] >= 2
        assert c.flush_all(noreply=False) is True
        assert c.get(b"k") is None
    finally:
        c.close()


def test_pymemcache_default_noreply_writes_land(server: CacheServer) -> None:
    c = _pym(server)
    try:
        for i in range(100):
            c.set(f"nr{i}".encode(), str(i).encode())  # pymemcache's default is noreply
        got = c.get_many([f"nr{i}".encode() for i in range(100)])
        assert got == {f"nr{i}".encode(): str(i).encode() for i in range(100)}
    finally:
        c.close()


def test_pymemcache_large_and_binary_values(server: CacheServer) -> None:
    c = _pym(server)
    try:
        big = os.urandom(NEAR_1MIB)
        assert c.set(b"big", big, noreply=False) is True
        assert c.get(b"big") == big
        tricky = bytes(range(256)) * 4 + b"\r\nEND\r\nVALUE x 0 1\r\n"
        assert c.set(b"tricky", tricky, noreply=False) is True
        assert c.get(b"tricky") == tricky
        with pytest.raises(Exception) as err:
            c.set(b"toolarge", b"x" * (2 << 20), noreply=False)
        assert "too large" in str(err.value)
        assert c.get(b"tricky") == tricky  # the connection survived the refusal
    finally:
        c.close()


def test_pymemcache_pooled_client(server: CacheServer) -> None:
    c = PooledClient((server.host, server.port), max_pool_size=4, connect_timeout=5, timeout=5)
    try:
        for i in range(50):
            assert c.set(f"p{i}".encode(), f"v{i}".encode(), noreply=False)
        assert c.get_many([f"p{i}".encode() for i in range(50)]) == {
            f"p{i}".encode(): f"v{i}".encode() for i in range(50)}
        assert c.incr(b"p-counter", 1, noreply=False) is None
        assert c.set(b"p-counter", b"10", noreply=False)
        assert c.incr(b"p-counter", 5, noreply=False) == 15
    finally:
        c.close()


def test_pymemcache_hash_client_over_two_servers(cache_servers: CacheServerFactory) -> None:
    a: CacheServer = cache_servers.start()
    b: CacheServer = cache_servers.start()
    c = HashClient([(a.host, a.port), (b.host, b.port)], connect_timeout=5, timeout=5)
    try:
        keys = [f"h{i}".encode() for i in range(200)]
        for k in keys:
            assert c.set(k, k[::-1], noreply=False) is True
        assert c.get_many(keys) == {k: k[::-1] for k in keys}
        items_a = int(a.stats()["curr_items"])
        items_b = int(b.stats()["curr_items"])
        assert items_a + items_b == 200
        assert items_a > 0 and items_b > 0, (items_a, items_b)
        for k in keys[:10]:
            assert c.delete(k, noreply=False) is True
        assert c.get_many(keys[:10]) == {}
    finally:
        c.close()


def _pmc(server: CacheServer) -> memcache.Client:
    return memcache.Client([server.addr], socket_timeout=5, dead_retry=0)


def test_python_memcached_round_trips(server: CacheServer) -> None:
    c = _pmc(server)
    try:
        assert c.set("k", b"v")
        assert c.get("k") == b"v"
        assert c.get("missing") is None
        assert not c.add("k", b"x")
        assert c.add("k2", b"x")
        assert not c.replace("nope", b"x")
        assert c.append("k", b"++")
        assert c.prepend("k", b"--")
        assert c.get("k") == b"--v++"
        assert c.set("s", "text")
        assert c.get("s") == "text"
        assert c.set("obj", {"a": [1, 2, 3]})  # pickled, flags say so
        assert c.get("obj") == {"a": [1, 2, 3]}
        assert c.set("i", 41)
        assert c.incr("i") == 42
        assert c.decr("i", 50) == 0
        assert c.incr("nope") is None
        assert c.set_multi({"m1": b"1", "m2": b"2"}, key_prefix="p:") == []
        assert c.get_multi(["m1", "m2", "m3"], key_prefix="p:") == {"m1": b"1", "m2": b"2"}
        assert c.touch("k", 100)
        assert c.delete("k")
        assert c.get("k") is None
        assert c.delete_multi(["m1", "m2"], key_prefix="p:")
        assert c.get_multi(["m1", "m2"], key_prefix="p:") == {}
        [(_, stats)] = c.get_stats()
        assert "curr_items" in stats
        c.flush_all()
        assert c.get("s") is None
    finally:
        c.disconnect_all()


def test_python_memcached_cas(server: CacheServer) -> None:
    c = memcache.Client([server.addr], socket_timeout=5, dead_retry=0, cache_cas=True)
    other = _pmc(server)
    try:
        assert c.set("k", b"1")
        assert c.gets("k") == b"1"
        assert c.cas("k", b"2")
        assert c.gets("k") == b"2"
        assert other.set("k", b"changed")
        assert not c.cas("k", b"3")  # someone else wrote since our gets
        assert other.get("k") == b"changed"
    finally:
        c.disconnect_all()
        other.disconnect_all()


def test_python_memcached_large_and_binary_values(server: CacheServer) -> None:
    c = _pmc(server)
    try:
        big = os.urandom(NEAR_1MIB)
        assert c.set("big", big)
        assert c.get("big") == big
        tricky = bytes(range(256)) * 4 + b"\r\nEND\r\n"
        assert c.set("tricky", tricky)
        assert c.get("tricky") == tricky
    finally:
        c.disconnect_all()
