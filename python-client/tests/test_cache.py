"""berth.cache against a real multi-tenant cache-server: every call, namespaces and CAS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import CacheServer

from berth import cache, config
from berth.cache import Client


@pytest.fixture
def alpha(server: CacheServer) -> Iterator[Client]:
    client = Client([server.address], app="alpha", token="tok-a")
    assert client.flush_all()
    yield client
    client.close()


@pytest.fixture
def beta(server: CacheServer) -> Iterator[Client]:
    client = Client([server.address], app="beta", token="tok-b")
    assert client.flush_all()
    yield client
    client.close()


VALUES: list[Any] = [
    "text ünïcode",
    b"\x00\xffbytes",
    42,
    -7,
    3.5,
    True,
    {"nested": [1, 2, {"x": None}]},
    ("tuple", 1),
    "",
    b"",
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:20] for v in VALUES])
def test_set_get_round_trips_python_values(alpha: Client, value: Any) -> None:
    assert alpha.set("k", value) is True
    got = alpha.get("k")
    assert got == value
    assert type(got) is type(value)


def test_get_miss_is_none(alpha: Client) -> None:
    assert alpha.get("never-set") is None


def test_expiry_time(alpha: Client) -> None:
    assert alpha.set("fresh", 1, time=60)
    assert alpha.get("fresh") == 1
    # More than 30 days is an absolute Unix time: this one is in 1970, so already expired.
    assert alpha.set("stale", 1, time=30 * 24 * 3600 + 1)
    assert alpha.get("stale") is None
    with pytest.raises(ValueError, match="must not be negative"):
        alpha.set("k", 1, time=-1)


def test_add_and_replace(alpha: Client) -> None:
    assert alpha.replace("k", "r") is False
    assert alpha.get("k") is None
    assert alpha.add("k", "a") is True
    assert alpha.add("k", "b") is False
    assert alpha.get("k") == "a"
    assert alpha.replace("k", "c") is True
    assert alpha.get("k") == "c"


def test_delete_codes(alpha: Client) -> None:
    alpha.set("k", 1)
    assert alpha.delete("k") == cache.DELETE_SUCCESSFUL
    assert alpha.get("k") is None
    assert alpha.delete("k") == cache.DELETE_ITEM_MISSING


def test_incr_decr(alpha: Client) -> None:
    assert alpha.incr("n") is None
    assert alpha.get("n") is None
    assert alpha.incr("n", initial_value=10) == 11
    assert alpha.incr("n", 5) == 16
    assert alpha.decr("n", 6) == 10
    assert alpha.decr("n", 100) == 0  # decr stops at zero, as in memcached and App Engine
    assert alpha.get("n") == 0
    assert alpha.decr("m", 2, initial_value=5) == 3
    assert alpha.incr("z", 0, initial_value=0) == 0
    alpha.set("big", 2**64 - 1)
    assert alpha.incr("big") == 0  # wraps at 2**64


def test_incr_of_non_number_is_none(alpha: Client) -> None:
    alpha.set("s", "not a number")
    assert alpha.incr("s") is None
    assert alpha.incr("s", initial_value=3) is None
    assert alpha.get("s") == "not a number"


def test_incr_rejects_negative_delta_and_initial_value(alpha: Client) -> None:
    with pytest.raises(ValueError, match="delta"):
        alpha.incr("n", -1)
    with pytest.raises(ValueError, match="initial_value"):
        alpha.decr("n", 1, initial_value=-3)


def test_incr_is_atomic_across_threads(alpha: Client) -> None:
    def work() -> None:
        for _ in range(50):
            alpha.incr("hits", initial_value=0)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert alpha.get("hits") == 400


def test_multi_calls_with_key_prefix(alpha: Client) -> None:
    mapping = {f"k{i}": i for i in range(20)}
    assert alpha.set_multi(mapping, key_prefix="p:") == []
    assert alpha.get("p:k3") == 3
    assert alpha.get_multi(["k1", "k2", "absent"], key_prefix="p:") == {"k1": 1, "k2": 2}
    assert alpha.get_multi(list(mapping), key_prefix="p:") == mapping
    assert alpha.delete_multi(["k1", "k2", "absent"], key_prefix="p:") is True
    assert alpha.get_multi(["k1", "k2", "k3"], key_prefix="p:") == {"k3": 3}
    assert alpha.get_multi([]) == {}
    assert alpha.set_multi({}) == []


def test_set_multi_returns_exactly_the_failed_keys(alpha: Client) -> None:
    big = b"x" * (100 * 1024)  # over the server's -I 64k
    failed = alpha.set_multi({"a": 1, "huge": big, "b": 2}, namespace="ns")
    assert failed == ["huge"]
    assert alpha.get_multi(["a", "b", "huge"], namespace="ns") == {"a": 1, "b": 2}


def test_oversized_value_is_refused_not_raised(
    alpha: Client, caplog: pytest.LogCaptureFixture
) -> None:
    big = b"x" * (100 * 1024)
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert alpha.set("huge", big) is False
        assert alpha.add("huge", big) is False
    assert "too large" in caplog.text
    assert alpha.get("huge") is None
    # The connection that saw the error is replaced; the client keeps working.
    assert alpha.set("small", b"x" * 1000) is True
    assert alpha.get("small") == b"x" * 1000


def test_gets_cas(alpha: Client) -> None:
    alpha.set("doc", {"v": 1})
    doc = alpha.gets("doc")
    assert doc == {"v": 1}
    assert alpha.cas("doc", {"v": 2}) is True
    assert alpha.get("doc") == {"v": 2}
    # The CAS id is used up by a cas; a second one without gets fails.
    assert alpha.cas("doc", {"v": 3}) is False
    # Someone else writes in between: cas fails and the other write stays.
    alpha.gets("doc")
    alpha.set("doc", {"v": "other"})
    assert alpha.cas("doc", {"v": 4}) is False
    assert alpha.get("doc") == {"v": "other"}
    # Never fetched, or fetched as a miss: nothing to compare with.
    assert alpha.cas("fresh", 1) is False
    assert alpha.gets("fresh") is None
    assert alpha.cas("fresh", 1) is False
    # cas_reset forgets the remembered ids.
    alpha.gets("doc")
    alpha.cas_reset()
    assert alpha.cas("doc", 5) is False


def test_get_multi_for_cas(alpha: Client) -> None:
    alpha.set_multi({"a": 1, "b": 2}, namespace="n")
    assert alpha.get_multi(["a", "b"], namespace="n", for_cas=True) == {"a": 1, "b": 2}
    alpha.set("b", 20, namespace="n")
    assert alpha.cas("a", 10, namespace="n") is True
    assert alpha.cas("b", 30, namespace="n") is False
    assert alpha.get_multi(["a", "b"], namespace="n") == {"a": 10, "b": 20}


def test_cas_ids_are_per_thread(alpha: Client) -> None:
    alpha.set("doc", 1)
    alpha.gets("doc")
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(alpha.cas("doc", 2)))
    t.start()
    t.join()
    assert result == [False]
    assert alpha.cas("doc", 3) is True


def test_namespaces_separate_keys(alpha: Client) -> None:
    assert alpha.set("k", "plain")
    assert alpha.set("k", "in-a", namespace="a")
    assert alpha.set("k", "in-b", namespace="b")
    assert alpha.get("k") == "plain"
    assert alpha.get("k", namespace="a") == "in-a"
    assert alpha.get("k", namespace="b") == "in-b"
    # The namespace is a plain key prefix on the wire.
    assert alpha.get("a:k") == "in-a"
    assert alpha.delete("k", namespace="a") == cache.DELETE_SUCCESSFUL
    assert alpha.get("k", namespace="b") == "in-b"
    assert alpha.incr("c", namespace="a", initial_value=1) == 2
    assert alpha.get("c") is None
    for bad in ["has space", "colon:", "x" * 101]:
        with pytest.raises(ValueError, match="namespace"):
            alpha.get("k", namespace=bad)


def test_long_and_unusual_keys_are_hashed(alpha: Client) -> None:
    long_a = "a" * 300
    long_b = "a" * 299 + "b"
    assert alpha.set(long_a, 1)
    assert alpha.set(long_b, 2)
    assert alpha.get(long_a) == 1
    assert alpha.get(long_b) == 2
    unusual: list[cache.Key] = ["with space", "tab\tnewline\n", "ünïcode", "", b"\x00\x01"]
    for key in unusual:
        assert alpha.set(key, key), key
        assert alpha.get(key) == key
    # Exactly 250 bytes with the namespace is still a plain key; 251 is hashed.
    key250 = "k" * (250 - len("ns:"))
    assert alpha.set(key250, 250, namespace="ns")
    assert alpha.get("ns:" + key250) == 250
    assert alpha.set(key250 + "k", 251, namespace="ns")
    assert alpha.get(key250 + "k", namespace="ns") == 251


def test_two_apps_are_isolated(alpha: Client, beta: Client) -> None:
    alpha.set("shared-name", "alpha's")
    beta.set("shared-name", "beta's")
    assert alpha.get("shared-name") == "alpha's"
    assert beta.get("shared-name") == "beta's"
    assert alpha.flush_all()
    assert alpha.get("shared-name") is None
    assert beta.get("shared-name") == "beta's"


def test_wrong_token_reads_as_miss(server: CacheServer, caplog: pytest.LogCaptureFixture) -> None:
    client = Client([server.address], app="alpha", token="wrong", retry_interval=0)
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert client.get("k") is None
        assert client.set("k", 1) is False
    assert "refused the login" in caplog.text
    assert "authentication failure" in caplog.text
    client.close()


def test_no_token_against_tenant_server_is_refused_quietly(
    server: CacheServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client([server.address])
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert client.get("k") is None
        # A first `set` is itself a login attempt to the server, failing with bad credentials.
        assert client.set("k", 1) is False
    assert "unauthenticated" in caplog.text
    assert "authentication failure" in caplog.text
    client.close()


def test_token_without_app_name_is_a_config_error(server: CacheServer) -> None:
    with pytest.raises(config.ConfigError, match="BERTH_APP"):
        Client([server.address], token="tok-a")


def test_module_functions_use_berth_config(server: CacheServer, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('token = "tok-a"\n')
    secrets.chmod(0o600)
    config.reload(
        {
            "BERTH_APP": "alpha",
            "BERTH_CACHE_SERVERS": server.address,
            "BERTH_SECRETS_FILE": str(secrets),
        }
    )
    assert cache.flush_all() is True
    assert cache.set("k", "v", time=60) is True
    assert cache.get("k") == "v"
    assert cache.add("k", "w") is False
    assert cache.replace("k", "w", namespace=None) is True
    assert cache.set_multi({"a": 1, "b": 2}, key_prefix="m:") == []
    assert cache.get_multi(["a", "b"], key_prefix="m:") == {"a": 1, "b": 2}
    assert cache.delete_multi(["a"], key_prefix="m:") is True
    assert cache.delete("k") == cache.DELETE_SUCCESSFUL
    assert cache.incr("n", initial_value=1) == 2
    assert cache.decr("n") == 1
    assert cache.gets("n") == 1
    assert cache.cas("n", 9) is True
    cache.gets("n")
    cache.cas_reset()
    assert cache.cas("n", 10) is False
    assert cache.get("n") == 9

    # The default client follows config.reload(): as beta, alpha's keys are not visible.
    first = cache.default_client()
    secrets.write_text('token = "tok-b"\n')
    config.reload(
        {
            "BERTH_APP": "beta",
            "BERTH_CACHE_SERVERS": server.address,
            "BERTH_SECRETS_FILE": str(secrets),
        }
    )
    assert cache.default_client() is not first
    assert cache.get("n") is None
    cache.close()


def test_no_cache_servers_configured_is_all_misses(caplog: pytest.LogCaptureFixture) -> None:
    config.reload({"BERTH_APP": "alpha"})
    with caplog.at_level("WARNING", logger="berth.cache"):
        assert cache.get("k") is None
        assert cache.set("k", 1) is False
        assert cache.set_multi({"a": 1}) == ["a"]
        assert cache.delete("k") == cache.DELETE_NETWORK_FAILURE
    assert caplog.text.count("no cache servers configured") == 1
