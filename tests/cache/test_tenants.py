"""Tenants: memcached's ASCII auth (`-Y authfile`) and Berth's `--tenants file.toml`.

Login is memcached's fake set: `set <any-key> 0 0 <n>\\r\\n<app> <token>\\r\\n`. memcached itself
checks the auth replies; the namespaces and per-app budgets are Berth's own (ours_only).
"""

from __future__ import annotations

from pathlib import Path

import memcache
import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

from support.wire import Wire

from .conftest import CacheServer, CacheServerFactory

KIB = 1024
MIB = 1024 * KIB


def _login_bytes(app: str, token: str) -> bytes:
    cred = f"{app} {token}".encode()
    return b"set auth 0 0 %d\r\n" % len(cred) + cred + b"\r\n"


def login(w: Wire, app: str, token: str) -> Wire:
    w.call(_login_bytes(app, token), b"STORED\r\n")
    return w


def _authfile(tmp_path: Path) -> Path:
    path = tmp_path / "authfile"
    path.write_text("alpha:tokA\nbeta:tokB\n")
    return path


def _tenants(tmp_path: Path, budget: str = "2MiB") -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        "[[app]]\n"
        'name = "alpha"\n'
        'token = "tokA"\n'
        f'cache_bytes = "{budget}"\n'
        "\n"
        "[[app]]\n"
        'name = "beta"\n'
        'token = "tokB"\n'
        f'cache_bytes = "{budget}"\n'
    )
    return path


@pytest.fixture(params=["authfile", pytest.param("tenants", marks=pytest.mark.ours_only)])
def tenant_server(request: pytest.FixtureRequest, cache_servers: CacheServerFactory,
                  tmp_path: Path) -> CacheServer:
    """A server with apps alpha (tokA) and beta (tokB), from `-Y` or from `--tenants`."""
    if request.param == "authfile":
        # -m 128 leaves room for two apps at Berth's default 64 MiB budget each; the default
        # -m is covered by test_authfile_with_default_memory_limit.
        return cache_servers.start("-m", "128", "-Y", str(_authfile(tmp_path)))
    return cache_servers.start("--tenants", str(_tenants(tmp_path)))


def test_authfile_with_default_memory_limit(cache_servers: CacheServerFactory, tmp_path: Path) -> None:
    # A memcached init script with -Y and no -m must keep working when pointed at our binary.
    server: CacheServer = cache_servers.start("-Y", str(_authfile(tmp_path)))
    with server.connect() as w:
        w.call(b"get a\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        login(w, "beta", "tokB")
        w.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")


def test_commands_before_auth_are_refused(tenant_server: CacheServer) -> None:
    with tenant_server.connect() as w:
        w.call(b"get a\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        w.call(b"version\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        w.call(b"mg a v\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        w.call(b"stats\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        login(w, "alpha", "tokA")
        w.call(b"get a\r\n", b"END\r\n")


def test_bad_credentials_are_refused(tenant_server: CacheServer) -> None:
    with tenant_server.connect() as w:
        w.call(_login_bytes("alpha", "tokB"), b"CLIENT_ERROR authentication failure\r\n")
        w.call(_login_bytes("gamma", "tokA"), b"CLIENT_ERROR authentication failure\r\n")
        w.call(b"get a\r\n", b"CLIENT_ERROR unauthenticated\r\n")
        login(w, "beta", "tokB")
        w.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
        w.call(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")


def test_login_data_is_not_stored(tenant_server: CacheServer) -> None:
    with tenant_server.connect() as w:
        login(w, "alpha", "tokA")
        w.call(b"get auth\r\n", b"END\r\n")


@pytest.mark.ours_only
def test_apps_do_not_see_each_others_keys(tenant_server: CacheServer) -> None:
    alpha = login(tenant_server.connect(), "alpha", "tokA")
    beta = login(tenant_server.connect(), "beta", "tokB")
    try:
        alpha.call(b"set x 1 0 5\r\nalpha\r\n", b"STORED\r\n")
        beta.call(b"get x\r\n", b"END\r\n")
        beta.call(b"mg x v\r\n", b"EN\r\n")
        beta.call(b"add x 2 0 4\r\nbeta\r\n", b"STORED\r\n")  # no collision with alpha's x
        alpha.call(b"get x\r\n", b"VALUE x 1 5\r\nalpha\r\nEND\r\n")
        beta.call(b"get x\r\n", b"VALUE x 2 4\r\nbeta\r\nEND\r\n")
        beta.call(b"delete x\r\n", b"DELETED\r\n")
        alpha.call(b"get x\r\n", b"VALUE x 1 5\r\nalpha\r\nEND\r\n")
        beta.call(b"incr x 1\r\n", b"NOT_FOUND\r\n")
        beta.call(b"touch x 10\r\n", b"NOT_FOUND\r\n")
    finally:
        alpha.close()
        beta.close()


@pytest.mark.ours_only
def test_flush_all_is_per_app(tenant_server: CacheServer) -> None:
    alpha = login(tenant_server.connect(), "alpha", "tokA")
    beta = login(tenant_server.connect(), "beta", "tokB")
    try:
        alpha.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
        beta.call(b"set b 0 0 1\r\n2\r\n", b"STORED\r\n")
        alpha.call(b"flush_all\r\n", b"OK\r\n")
        alpha.call(b"get a\r\n", b"END\r\n")
        beta.call(b"get b\r\n", b"VALUE b 0 1\r\n2\r\nEND\r\n")
    finally:
        alpha.close()
        beta.close()


@pytest.mark.ours_only
def test_stats_show_the_callers_own_items(tenant_server: CacheServer) -> None:
    alpha = login(tenant_server.connect(), "alpha", "tokA")
    beta = login(tenant_server.connect(), "beta", "tokB")
    try:
        alpha.call(b"".join(b"set a%d 0 0 1\r\nx\r\n" % i for i in range(3)), b"STORED\r\n" * 3)
        beta.call(b"".join(b"set b%d 0 0 1\r\nx\r\n" % i for i in range(5)), b"STORED\r\n" * 5)
        assert alpha.stats()["curr_items"] == "3"
        assert beta.stats()["curr_items"] == "5"
    finally:
        alpha.close()
        beta.close()


def _fill(w: Wire, prefix: bytes, count: int, size: int, batch: int = 64) -> None:
    """Store `count` values of `size` bytes, pipelined `batch` at a time."""
    value = bytes(range(256)) * (size // 256) + b"v" * (size % 256)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        w.call(b"".join(b"set " + prefix + b"%d 0 0 %d\r\n" % (start + i, size) + value + b"\r\n"
                        for i in range(n)), b"STORED\r\n" * n)


@pytest.mark.ours_only
@pytest.mark.slow
def test_one_app_churning_cannot_evict_another(cache_servers: CacheServerFactory, tmp_path: Path) -> None:
    server: CacheServer = cache_servers.start("--tenants", str(_tenants(tmp_path, "2MiB")))
    alpha = login(server.connect(), "alpha", "tokA")
    beta = login(server.connect(), "beta", "tokB")
    try:
        _fill(beta, b"b", 100, 10 * KIB)  # ~1 MiB, half of beta's budget
        _fill(alpha, b"a", 2048, 10 * KIB)  # 20 MiB: ten times alpha's budget
        keys = b" ".join(b"b%d" % i for i in range(100))
        got = beta.get_values(b"get " + keys + b"\r\n")
        assert len(got) == 100, f"beta lost {100 - len(got)} of its 100 items to alpha's churn"
        assert all(len(data) == 10 * KIB for _, _, data, _ in got)
        stats = alpha.stats()
        assert int(stats["bytes"]) <= 2 * MIB, f"alpha holds {stats['bytes']} bytes, budget 2 MiB"
        assert 0 < int(stats["curr_items"]) < 2048, stats["curr_items"]
        assert int(stats["evictions"]) > 0, stats["evictions"]
        assert int(stats["limit_maxbytes"]) == 2 * MIB, stats["limit_maxbytes"]
        alpha.call(b"get a2047\r\n", b"VALUE a2047 0 %d\r\n" % (10 * KIB) +
                   bytes(range(256)) * 40 + b"\r\nEND\r\n")  # the newest item survived
        assert beta.stats()["evictions"] == "0"
    finally:
        alpha.close()
        beta.close()


@pytest.mark.ours_only
def test_budgets_over_the_memory_limit_are_refused(cache_servers: CacheServerFactory, tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as err:
        cache_servers.start("-m", "3", "--tenants", str(_tenants(tmp_path, "2MiB")), timeout=10)
    assert "exited before printing LISTEN" in str(err.value), err.value


def test_pymemcache_login(tenant_server: CacheServer) -> None:
    c = Client((tenant_server.host, tenant_server.port), connect_timeout=5, timeout=5)
    try:
        with pytest.raises(MemcacheClientError):
            c.set(b"auth", b"alpha wrong", noreply=False)
        # The login is a plain set; noreply=False so a refusal raises instead of passing silently.
        assert c.set(b"auth", b"alpha tokA", noreply=False) is True
        assert c.set(b"k", b"v", noreply=False) is True
        assert c.get(b"k") == b"v"
        assert c.get_many([b"k", b"nope"]) == {b"k": b"v"}
    finally:
        c.close()


def test_python_memcached_login(tenant_server: CacheServer) -> None:
    c = memcache.Client([tenant_server.addr], socket_timeout=5, dead_retry=0)
    try:
        assert not c.set("auth", "alpha wrong")
        assert c.set("auth", "alpha tokA")
        assert c.set("k", b"v")
        assert c.get("k") == b"v"
        assert c.incr("nope") is None
    finally:
        c.disconnect_all()
