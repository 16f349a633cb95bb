"""Services following berthd's registry (--registry) instead of a tenants file: an app made
with `berth apps create` is served everywhere within seconds, a revoked token stops working,
and a service restarted while berthd is down still serves the last state it kept."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support.procs import ServerProcess


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Suite:
    def __init__(self, bin_dir: Path, tmp: Path) -> None:
        self.bin, self.tmp = bin_dir, tmp
        self.service_token = secrets.token_hex(32)
        (tmp / "service-token").write_text(self.service_token + "\n")
        (tmp / "berthd.toml").write_text(
            f'service_tokens = ["{hashlib.sha256(self.service_token.encode()).hexdigest()}"]\n'
        )
        self.berthd_port = 0
        self.procs: dict[str, ServerProcess] = {}
        self.ports: dict[str, int] = {}
        self.admin_ports: dict[str, int] = {}

    def start_berthd(self) -> None:
        p = ServerProcess(
            [self.bin / "berthd", "--config", self.tmp / "berthd.toml", "--data-dir",
             self.tmp / "berthd", "--listen", f"127.0.0.1:{self.berthd_port}",
             "--admin-listen", "127.0.0.1:0", "--dashboard-listen", "127.0.0.1:0"], self.tmp,
            "berthd")
        self.berthd_port = p.wait_listen(["grpc"])["grpc"][1]
        self.procs["berthd"] = p

    def registry_flags(self) -> list[object]:
        return ["--registry", f"http://127.0.0.1:{self.berthd_port}",
                "--registry-token", self.tmp / "service-token"]

    def start(self, name: str, argv: list[object], kind: str) -> None:
        p = ServerProcess([self.bin / name, *argv, *self.registry_flags()], self.tmp, name)
        addrs = p.wait_listen([kind, "admin"])
        self.ports[name] = addrs[kind][1]
        self.admin_ports[name] = addrs["admin"][1]
        self.procs[name] = p

    def berth(self, *args: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["BERTH_SERVER"] = f"http://127.0.0.1:{self.berthd_port}"
        env["BERTH_TOKEN_FILE"] = str(self.tmp / "berthd" / "operator-token")
        done = subprocess.run([str(self.bin / "berth"), *args, "--json"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    # -- what an app can do with a token, per service --------------------------------------

    def cache_login(self, app: str, token: str) -> bool:
        with socket.create_connection(("127.0.0.1", self.ports["cache-server"]), timeout=5) as s:
            cred = f"{app} {token}".encode()
            s.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(cred), cred))
            return s.recv(200).startswith(b"STORED")

    def blob_put(self, token: str) -> int:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['blob-server']}/buckets/b/keys/k", data=b"hi",
            method="PUT", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def log_hello(self, app: str, token: str) -> bool:
        with socket.create_connection(("127.0.0.1", self.ports["log-collector"]), timeout=5) as s:
            s.sendall(json.dumps({"hello": {"app": app, "token": token}}).encode() + b"\n")
            return b'"ok":"hello"' in s.recv(500)

    def serves(self, app: str, token: str) -> dict[str, bool]:
        return {
            "cache": self.cache_login(app, token),
            "blob": self.blob_put(token) in (200, 204),
            "logs": self.log_hello(app, token),
        }


@pytest.fixture
def suite(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[Suite]:
    bin_dir = Path(pytestconfig.getoption("--bin-dir"))
    for name in ("berthd", "berth", "cache-server", "blob-server", "log-collector"):
        if not (bin_dir / name).exists():
            pytest.fail(f"{bin_dir / name} does not exist: run `cargo build --release --workspace`")
    s = Suite(bin_dir, tmp_path)
    s.start_berthd()
    (tmp_path / "blob").mkdir()
    (tmp_path / "logs").mkdir()
    s.start("cache-server", ["-p", "0", "-l", "127.0.0.1", "--admin-listen", "127.0.0.1:0",
                             "--registry-state", tmp_path / "cache-registry.toml"], "memcache")
    s.start("blob-server", ["--data-dir", tmp_path / "blob", "--listen", "127.0.0.1:0",
                            "--admin-listen", "127.0.0.1:0"], "http")
    s.start("log-collector", ["--data-dir", tmp_path / "logs", "--listen-json", "127.0.0.1:0",
                              "--listen-syslog", "", "--listen-http", "", "--listen-otlp", "",
                              "--admin-listen", "127.0.0.1:0"], "json")
    yield s
    for p in reversed(list(s.procs.values())):
        p.stop()


def test_an_app_created_in_berthd_is_served_everywhere(suite: Suite) -> None:
    assert suite.serves("shop", "0" * 64) == {"cache": False, "blob": False, "logs": False}
    token = suite.berth("apps", "create", "shop", "--limit", "cache_bytes=8MiB")["secret"]
    eventually(lambda: all(suite.serves("shop", token).values()), "every service to serve shop")
    assert suite.serves("shop", "0" * 64) == {"cache": False, "blob": False, "logs": False}


def admin_status(port: int, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_berthds_operator_token_works_on_every_service_following_it(suite: Suite) -> None:
    """None of the services has operator_tokens in a config: berthd's registry brings them."""
    operator = (suite.tmp / "berthd" / "operator-token").read_text().strip()
    for name in ("cache-server", "blob-server", "log-collector"):
        port = suite.admin_ports[name]
        # Without operator tokens /metrics is open; with berthd's, it wants one of them.
        eventually(lambda: admin_status(port, None) == 401, f"{name}'s operators from berthd")
        assert admin_status(port, operator) == 200, name
        assert admin_status(port, secrets.token_hex(32)) == 403, name
    assert suite.cache_login("_operator", operator)
    assert not suite.cache_login("_operator", secrets.token_hex(32))
    # An operator token made by a restarted berthd with a new one reaches them too.
    suite.procs["berthd"].stop()
    (suite.tmp / "berthd" / "operator-token").unlink()
    suite.start_berthd()
    renewed = (suite.tmp / "berthd" / "operator-token").read_text().strip()
    assert renewed != operator
    eventually(lambda: admin_status(suite.admin_ports["blob-server"], renewed) == 200,
               "the new operator token", timeout=20)
    assert admin_status(suite.admin_ports["blob-server"], operator) == 403
    eventually(lambda: suite.cache_login("_operator", renewed), "the cache's operator login",
               timeout=20)


def test_a_revoked_token_stops_working_everywhere(suite: Suite) -> None:
    out = suite.berth("apps", "create", "shop")
    first = out["secret"]
    second = suite.berth("tokens", "create", "shop", "--label", "new")["secret"]
    eventually(lambda: all(suite.serves("shop", second).values()), "the new token")
    suite.berth("tokens", "revoke", "shop", out["token"]["id"])
    eventually(lambda: not any(suite.serves("shop", first).values()), "the revocation")
    assert all(suite.serves("shop", second).values())


def test_services_keep_serving_the_last_state_without_berthd(suite: Suite) -> None:
    token = suite.berth("apps", "create", "shop")["secret"]
    eventually(lambda: all(suite.serves("shop", token).values()), "shop served")
    suite.procs["berthd"].stop()
    for name, kind in (("cache-server", "memcache"), ("blob-server", "http"),
                       ("log-collector", "json")):
        p = suite.procs[name]
        p.stop()
        restarted = ServerProcess(p.argv, suite.tmp, name)  # same flags, berthd unreachable
        suite.ports[name] = restarted.wait_listen([kind])[kind][1]
        suite.procs[name] = restarted
    assert suite.serves("shop", token) == {"cache": True, "blob": True, "logs": True}


def test_a_service_refuses_both_sources(suite: Suite) -> None:
    tenants = suite.tmp / "tenants.toml"
    tenants.write_text('[[app]]\nname = "x"\ntoken = "t"\n')
    done = subprocess.run(
        [str(suite.bin / "blob-server"), "--data-dir", str(suite.tmp / "blob2"), "--tenants",
         str(tenants), *map(str, suite.registry_flags()), "--check-config"],
        capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "choose one" in (done.stderr + done.stdout)
