"""Operations: SIGHUP reloads the tenants file (a bad one keeps the old set), the admin port
(/healthz, /readyz, /metrics behind the operator token), --check-config, --print-config, and a
graceful SIGTERM that finishes in-flight uploads and exits 0."""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import time
import tomllib
from pathlib import Path

from .conftest import (
    KIB,
    MIB,
    OPERATOR_HASH,
    OPERATOR_TOKEN,
    BlobServer,
    BlobServerFactory,
    assert_error,
    rand_bytes,
    to_toml,
    upload_headers,
    wait_until,
)


def _tenants(alpha_quota: str, extra: str = "") -> str:
    return f"""
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "{alpha_quota}"

[[app]]
name = "beta"
token = "tokB"
blob_bytes = "1MiB"
{extra}"""


def _admin(server: BlobServer, path: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(*server.admin, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


def test_sighup_reloads_tenants(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(tenants=_tenants("1MiB"))
    assert s.tenants_path is not None
    assert s.alpha.stats()["quota_bytes"] == MIB
    assert_error(s.alpha.put("/buckets/b/keys/k", rand_bytes(MIB + 1, "big")), 507,
                 "quota_exceeded")
    # A larger quota and a new app.
    s.tenants_path.write_text(_tenants("2MiB", '[[app]]\nname = "gamma"\ntoken = "tokC"\n'))
    s.process.send_signal(signal.SIGHUP)
    wait_until("the new quota in /stats", lambda: s.alpha.stats()["quota_bytes"] == 2 * MIB)
    s.alpha.put_ok("/buckets/b/keys/k", rand_bytes(MIB + 1, "big"))
    assert s.client("tokC").put("/buckets/b/keys/k", b"gamma").status == 204
    ops = {a["app"] for a in s.operator().get("/stats").json()["apps"]}
    assert ops == {"alpha", "beta", "gamma"}, ops
    # A broken file is refused whole: the previous set stays, the server keeps serving.
    s.tenants_path.write_text('[[app]]\nname = "alpha"\ntoken = "tokA"\nblob_bytes = "lots"\n')
    s.process.send_signal(signal.SIGHUP)
    wait_until("the reload refusal in the log",
               lambda: "reload refused" in s.process.stderr_tail(20000))
    assert s.alpha.stats()["quota_bytes"] == 2 * MIB
    assert s.client("tokC").get("/buckets/b/keys/k").body == b"gamma"
    assert s.process.proc.poll() is None
    # Removing an app revokes its token; lowering a quota below usage blocks new writes only.
    s.tenants_path.write_text(_tenants("1MiB"))
    s.process.send_signal(signal.SIGHUP)
    wait_until("gamma's removal", lambda: s.client("tokC").get("/stats").status == 401)
    assert s.alpha.stats()["quota_bytes"] == MIB
    assert s.alpha.get("/buckets/b/keys/k").status == 200
    assert_error(s.alpha.put("/buckets/b/keys/more", b"x"), 507, "quota_exceeded")


def test_admin_endpoints(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    assert _admin(s, "/healthz")[0] == 200
    assert _admin(s, "/readyz")[0] == 200
    status, body = _admin(s, "/metrics")
    assert status == 401, body
    status, body = _admin(s, "/metrics", "tokA")
    assert status in (401, 403), body  # an app token is not an operator token
    s.alpha.put_ok("/buckets/b/keys/k", rand_bytes(12345, "m"))
    s.beta.post_blob(b"beta bytes")
    status, body = _admin(s, "/metrics", OPERATOR_TOKEN)
    assert status == 200, body
    used = dict(re.findall(r'^berth_blob_app_bytes_used\{app="(\w+)"\} (\d+)$', body, re.M))
    assert used == {"alpha": "12345", "beta": "10"}, body
    quota = dict(re.findall(r'^berth_blob_app_quota_bytes\{app="(\w+)"\} (\d+)$', body, re.M))
    assert quota == {"alpha": str(256 * MIB), "beta": str(256 * MIB)}, body
    assert re.search(r"^berth_blob_requests_total \d+$", body, re.M), body
    assert re.search(r'^berth_blob_responses_total\{class="2xx"\} [1-9]\d*$', body, re.M), body
    assert "# TYPE berth_blob_app_bytes_used gauge" in body


def test_read_cache_serves_hot_objects_and_reports_it(blob_servers: BlobServerFactory) -> None:
    """A second GET comes from the read cache: /stats and /metrics count the hits, the bytes
    are the same, each app has its own entries, and `read_cache = "0"` turns it off."""
    s = blob_servers.start()
    big = rand_bytes(3 * 256 * KIB + 5, "cache-big")
    small = rand_bytes(3000, "cache-small")
    s.alpha.put_ok("/buckets/c/keys/big", big)
    s.alpha.put_ok("/buckets/c/keys/small", small)
    s.beta.put_ok("/buckets/c/keys/small", small)

    def cache() -> dict[str, int]:
        counters: dict[str, int] = s.operator().get("/stats").json()["read_cache"]
        return counters

    for _ in range(2):
        assert s.alpha.get("/buckets/c/keys/big").body == big
        assert s.alpha.get("/buckets/c/keys/small").body == small
    c = cache()
    assert (c["hits"], c["misses"], c["damaged"]) == (5, 5, 0), c
    # beta's first read of the same bytes is a miss of its own.
    assert s.beta.get("/buckets/c/keys/small").body == small
    assert cache()["misses"] == 6
    r = s.alpha.get("/buckets/c/keys/big", {"Range": "bytes=262140-262150"})
    assert r.status == 206 and r.body == big[262140:262151]
    assert cache()["hits"] == 7
    status, body = _admin(s, "/metrics", OPERATOR_TOKEN)
    assert status == 200, body
    assert re.search(r"^berth_blob_read_cache_hits_total 7$", body, re.M), body
    assert re.search(r"^berth_blob_read_cache_misses_total 6$", body, re.M), body
    assert "# TYPE berth_blob_read_cache_bytes gauge" in body

    off = blob_servers.start(config={"read_cache": "0"})
    off.alpha.put_ok("/buckets/c/keys/small", small)
    for _ in range(2):
        assert off.alpha.get("/buckets/c/keys/small").body == small
    counters = off.operator().get("/stats").json()["read_cache"]
    assert counters == {"bytes": 0, "entries": 0, "hits": 0, "misses": 0, "damaged": 0}


def test_check_config_and_print_config(blob_servers: BlobServerFactory, tmp_path: Path) -> None:
    binary = str(blob_servers.binary())
    good = tmp_path / "good.toml"
    good.write_text(to_toml({"max_name_bytes": 200, "max_list_page": 50,
                             "operator_tokens": [OPERATOR_HASH], "body_idle_timeout": "7s",
                             "listen": "127.0.0.1:1111"}))
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(_tenants("1MiB"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=20)

    p = run("--config", str(good), "--tenants", str(tenants), "--check-config")
    assert p.returncode == 0 and "configuration ok" in p.stdout, p
    p = run("--config", str(good), "--listen", "127.0.0.1:2222", "--max-object-size", "3MiB",
            "--print-config")
    assert p.returncode == 0, p
    cfg = tomllib.loads(p.stdout)
    assert cfg["max_name_bytes"] == 200 and cfg["max_list_page"] == 50, cfg
    assert cfg["body_idle_timeout"] == "7s", cfg
    assert cfg["listen"] == "127.0.0.1:2222", cfg  # flags override the file
    assert cfg["max_object_size"] == "3MiB", cfg
    assert cfg["operator_tokens"] == [OPERATOR_HASH], cfg
    # The printed configuration is itself a valid config file.
    printed = tmp_path / "printed.toml"
    printed.write_text(p.stdout)
    assert run("--config", str(printed), "--check-config").returncode == 0
    bad_cases = {
        "unknown key": ("config", "bogus_key = 1\n", "bogus_key"),
        "bad size": ("config", 'max_object_size = "huge"\n', "bad-config.toml:1"),
        "name limit": ("config", "max_name_bytes = 5000\n", "max_name_bytes"),
        "page": ("config", "max_list_page = 0\n", "max_list_page"),
        "operator token": ("config", 'operator_tokens = ["not-a-hash"]\n', "operator_tokens"),
        "tenants": ("tenants", '[[app]]\nname = "alpha"\ntoken = ""\n', "token"),
        "tenants syntax": ("tenants", "[[app]\n", "tenants"),
    }
    for what, (kind, text, needle) in bad_cases.items():
        f = tmp_path / f"bad-{kind}.toml"
        f.write_text(text)
        p = run(f"--{kind}", str(f), "--check-config")
        assert p.returncode == 2, (what, p)
        assert needle in p.stderr, (what, p.stderr)
    p = run("--tenants", str(tmp_path / "missing.toml"), "--check-config")
    assert p.returncode == 2 and "missing.toml" in p.stderr, p


def test_graceful_sigterm_finishes_uploads_and_exits_0(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start(config={"drain_timeout": "10s"})
    s.alpha.put_ok("/buckets/g/keys/before", b"before")
    # An idle keep-alive connection must not hold the shutdown up.
    idle = http.client.HTTPConnection(s.host, s.port, timeout=10)
    idle.request("GET", "/ping")
    assert idle.getresponse().read() == b"OK"
    # An upload in progress when SIGTERM comes is finished and acknowledged.
    body = rand_bytes(600 * KIB, "in-flight")
    raw = s.raw()
    raw.send(upload_headers("/buckets/g/keys/in-flight", "tokA", len(body)))
    raw.send(body[:300 * KIB])
    wait_until("the upload to be in flight", lambda: s.alpha.stats()["bytes_reserved"] > 0)
    s.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    raw.send(body[300 * KIB:])
    r = raw.read_response(timeout=10)
    raw.close()
    assert r.status == 204, r
    code = s.process.wait_exit(15)
    assert code == 0, s.status_line()
    idle.close()
    s2 = blob_servers.restart(s)
    assert s2.alpha.get("/buckets/g/keys/in-flight").body == body
    assert s2.alpha.get("/buckets/g/keys/before").body == b"before"
    # And a server with nothing going on stops at once.
    started = time.monotonic()
    assert s2.process.stop() == 0
    assert time.monotonic() - started < 5


def test_second_server_on_the_same_data_dir_is_refused(blob_servers: BlobServerFactory) -> None:
    s = blob_servers.start()
    binary = str(blob_servers.binary())
    p = subprocess.run([binary, "--data-dir", str(s.data_dir), "--listen", "127.0.0.1:0",
                        "--admin-listen", "127.0.0.1:0"], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode != 0 and "data directory" in p.stderr, p
    assert s.alpha.put("/buckets/b/keys/k", b"still fine").status == 204


def test_refuses_foreign_data_dirs_and_bad_signing_keys(blob_servers: BlobServerFactory,
                                                       tmp_path: Path) -> None:
    """A data directory that is not a blob store, or a broken signing key, stops the server
    before it listens, with a message that says what is wrong."""
    binary = str(blob_servers.binary())

    def start(data: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, "--data-dir", str(data), "--listen", "127.0.0.1:0",
                               "--admin-listen", "127.0.0.1:0"], capture_output=True, text=True,
                              timeout=20)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "somebody-elses-file").write_text("precious")
    p = start(foreign)
    assert p.returncode != 0 and "LISTEN" not in p.stdout, p
    assert str(foreign) in p.stderr, p.stderr
    assert (foreign / "somebody-elses-file").read_text() == "precious"
    assert sorted(x.name for x in foreign.iterdir()) == ["somebody-elses-file"]
    # A store from the future.
    s = blob_servers.start()
    s.alpha.put_ok("/buckets/b/keys/k", b"v")
    assert s.process.stop() == 0
    fmt = s.data_dir / "FORMAT"
    assert fmt.read_text() == "berth-blob-store 1\n"
    fmt.write_text("berth-blob-store 99\n")
    p = start(s.data_dir)
    assert p.returncode != 0 and "LISTEN" not in p.stdout, p
    fmt.write_text("berth-blob-store 1\n")
    # A broken signing key is refused, not replaced.
    key = s.data_dir / "signing.key"
    key.write_text("not a key")
    p = start(s.data_dir)
    assert p.returncode != 0 and "signing" in p.stderr, p
    assert key.read_text() == "not a key"
