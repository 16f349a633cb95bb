"""berth.cache when servers go away, come back, close idle connections, or are several."""

from __future__ import annotations

import socket
import time

import pytest
from pymemcache.client.rendezvous import RendezvousHash
from servers import ServerFactory, free_port, wait_until

from berth import cache
from berth.cache import Client


def assert_everything_misses(client: Client) -> None:
    assert client.get("k") is None
    assert client.set("k", 1) is False
    assert client.add("k", 1) is False
    assert client.replace("k", 1) is False
    assert client.delete("k") == cache.DELETE_NETWORK_FAILURE
    assert client.incr("n", initial_value=1) is None
    assert client.decr("n") is None
    assert client.get_multi(["a", "b"]) == {}
    assert sorted(client.set_multi({"a": 1, "b": 2})) == ["a", "b"]
    assert client.delete_multi(["a"]) is False
    assert client.gets("k") is None
    assert client.cas("k", 2) is False
    assert client.flush_all() is False


def test_nothing_listening_reads_as_miss(caplog: pytest.LogCaptureFixture) -> None:
    client = Client([f"127.0.0.1:{free_port()}"], app="alpha", token="tok-a", retry_interval=0)
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert_everything_misses(client)
    assert "unavailable" in caplog.text
    assert "ConnectionRefusedError" in caplog.text


def test_down_server_is_skipped_until_retry_interval(caplog: pytest.LogCaptureFixture) -> None:
    client = Client([f"127.0.0.1:{free_port()}"], retry_interval=60)
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert client.get("k") is None
        started = time.monotonic()
        for _ in range(100):
            assert client.get("k") is None
        elapsed = time.monotonic() - started
    # One warning for the failure; the resting node is not dialled again.
    assert caplog.text.count("unavailable") == 1
    assert elapsed < 1.0


def test_server_stopping_mid_use_then_returning(start_server: ServerFactory) -> None:
    server = start_server()
    client = Client([server.address], app="alpha", token="tok-a", retry_interval=0)
    assert client.set("k", "v")
    assert client.get("k") == "v"
    server.stop()
    assert_everything_misses(client)
    # Back on the same port (empty, as memcached would be): the client reconnects and, since
    # the server requires a login, only works if it logged in again on the new connection.
    server.start()
    assert client.get("k") is None
    assert client.set("k", "again") is True
    assert client.get("k") == "again"
    client.close()


def test_restart_reauthenticates_stale_pooled_connections(start_server: ServerFactory) -> None:
    server = start_server()
    client = Client([server.address], app="beta", token="tok-b", retry_interval=60)
    assert client.set("k", 1)
    server.restart()
    # The pooled connection is dead; the first call retries once on a new, logged-in one and
    # succeeds, so the node is never marked down (retry_interval=60 would show it).
    assert client.set("k", 2) is True
    assert client.get("k") == 2
    client.close()


def conns_of_app(monitor: socket.socket) -> int:
    """How many connections the monitor's app has open, the monitor included."""
    monitor.sendall(b"stats conns\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        chunk = monitor.recv(65536)
        assert chunk, "monitor connection closed"
        data += chunk
    return sum(1 for line in data.split(b"\r\n") if b":addr " in line)


def test_idle_timeout_closed_connection_is_reauthenticated(start_server: ServerFactory) -> None:
    server = start_server("-o", "idle_timeout=1")
    client = Client([server.address], app="alpha", token="tok-a", retry_interval=60)
    assert client.set("kept", "value")
    monitor = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    monitor.sendall(b"set login 0 0 11\r\nalpha tok-a\r\n")
    assert monitor.recv(100) == b"STORED\r\n"
    # The monitor polls often enough to stay alive; the client's pooled connection idles out.
    assert conns_of_app(monitor) == 2
    wait_until(lambda: conns_of_app(monitor) == 1, what="idle connection close")
    assert client.get("kept") == "value"
    monitor.close()
    client.close()


def test_anonymous_server_without_token(start_server: ServerFactory) -> None:
    server = start_server(tenants=False)
    client = Client([server.address])
    assert client.set("k", "v")
    assert client.get("k") == "v"
    assert client.incr("n", initial_value=0) == 1
    client.close()


def test_keys_spread_over_two_servers_by_rendezvous_hash(start_server: ServerFactory) -> None:
    one, two = start_server(), start_server()
    both = Client([one.address, two.address], app="alpha", token="tok-a", retry_interval=60)
    only_one = Client([one.address], app="alpha", token="tok-a")
    only_two = Client([two.address], app="alpha", token="tok-a")
    keys = [f"key-{i}" for i in range(200)]
    assert both.set_multi({k: k for k in keys}) == []
    assert both.get_multi(keys) == {k: k for k in keys}
    on_one = only_one.get_multi(keys)
    on_two = only_two.get_multi(keys)
    # Every key lives on exactly one server, both hold a fair share, and the owner is the
    # one pymemcache's rendezvous hash names (so other pymemcache clients agree on it).
    assert set(on_one).isdisjoint(on_two)
    assert set(on_one) | set(on_two) == set(keys)
    assert 50 < len(on_one) < 150
    hasher = RendezvousHash()
    hasher.add_node(one.address)
    hasher.add_node(two.address)
    assert {k for k in keys if hasher.get_node(k) == one.address} == set(on_one)
    # Single calls route the same way as multi calls.
    for k in keys[:20]:
        assert both.delete(k) == cache.DELETE_SUCCESSFUL
    assert not set(keys[:20]) & (set(only_one.get_multi(keys)) | set(only_two.get_multi(keys)))

    # One server down: its keys miss, the other's still hit, and nothing moves.
    two.stop()
    alive = both.get_multi(keys)
    assert set(alive) == set(on_one) - set(keys[:20])
    failed = both.set_multi({k: "new" for k in keys})
    assert set(failed) == set(on_two)
    assert set(only_one.get_multi(keys)) == set(on_one)
    for client in (both, only_one, only_two):
        client.close()
