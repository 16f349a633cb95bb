"""berthd and the `berth` CLI's control verbs: apps, tokens, quotas, events, the registry,
authentication and rights, and state that survives kill -9. Real daemon, real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from support.procs import ServerProcess


class Berthd:
    def __init__(self, binary: Path, cli: Path, data: Path, logs: Path) -> None:
        self.binary, self.cli, self.data, self.logs = binary, cli, data, logs
        self.port = 0
        self.proc: ServerProcess | None = None
        self.services_extra = ""  # more [services] lines of berthd's config

    def start(self) -> None:
        # The control plane alone: no router to feed, no services to purge at destroy.
        config = self.logs / "berthd.toml"
        config.write_text('[router]\nadmin_url = ""\n'
                          '[services]\nblob_admin_url = ""\nlogs_admin_url = ""\n'
                          + self.services_extra)
        argv = [self.binary, "--config", config, "--data-dir", self.data, "--listen",
                f"127.0.0.1:{self.port}", "--admin-listen", "127.0.0.1:0",
                "--dashboard-listen", "127.0.0.1:0"]
        self.proc = ServerProcess(argv, self.logs, "berthd")
        addrs = self.proc.wait_listen(["grpc", "admin"])
        self.port = addrs["grpc"][1]

    @property
    def operator_token(self) -> str:
        return (self.data / "operator-token").read_text().strip()

    def berth(self, *args: str, token: str | None = None, stdin: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["BERTH_SERVER"] = f"http://127.0.0.1:{self.port}"
        env["BERTH_TOKEN"] = token if token is not None else self.operator_token
        done = subprocess.run([str(self.cli), *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"berth {' '.join(args)}: {done.stderr}"
        return done

    def json(self, *args: str, token: str | None = None) -> object:
        return json.loads(self.berth(*args, "--json", token=token).stdout)


@pytest.fixture
def berthd(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[Berthd]:
    bin_dir = Path(pytestconfig.getoption("--bin-dir"))
    for name in ("berthd", "berth"):
        if not (bin_dir / name).exists():
            pytest.fail(f"{bin_dir / name} does not exist: run `cargo build --release -p berth-deployer`")
    d = Berthd(bin_dir / "berthd", bin_dir / "berth", tmp_path / "data", tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    d.start()
    yield d
    if d.proc is not None:
        d.proc.stop()


def create(d: Berthd, name: str, *limits: str) -> str:
    out = d.json("apps", "create", name, *[f"--limit={x}" for x in limits])
    assert isinstance(out, dict)
    return str(out["secret"])


def test_first_start_makes_an_operator_token_only_root_can_read(berthd: Berthd) -> None:
    path = berthd.data / "operator-token"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert len(berthd.operator_token) == 64


def test_apps_lifecycle(berthd: Berthd) -> None:
    token = create(berthd, "shop", "cache_bytes=16MiB", "log_rate=5")
    assert len(token) == 64
    apps = berthd.json("apps", "list")
    assert [a["name"] for a in apps] == ["shop"]  # type: ignore[index, union-attr]
    info = berthd.json("apps", "info", "shop")
    assert isinstance(info, dict)
    assert info["limits"]["cache_bytes"] == "16MiB" and info["limits"]["log_rate"] == "5"
    assert info["limits"]["blob_bytes"] == "100GiB"  # defaults filled in
    human = berthd.berth("apps", "list").stdout
    assert "shop" in human and "TOKENS" in human
    done = berthd.berth("apps", "create", "shop", check=False)
    assert done.returncode == 1 and "already exists" in done.stderr
    # destroy asks for the name again
    done = berthd.berth("apps", "destroy", "shop", stdin="shp\n", check=False)
    assert done.returncode == 1 and "needs its name repeated" in done.stderr
    berthd.berth("apps", "destroy", "shop", stdin="shop\n")
    assert berthd.json("apps", "list") == []


def test_quota_sets_and_resets_limits(berthd: Berthd) -> None:
    create(berthd, "shop")
    out = berthd.json("quota", "shop", "blob_bytes=10GiB", "max_processes=8")
    assert isinstance(out, dict)
    assert out["limits"]["blob_bytes"] == "10GiB" and out["limits"]["max_processes"] == "8"
    out = berthd.json("quota", "shop", "--reset", "blob_bytes")
    assert isinstance(out, dict) and out["limits"]["blob_bytes"] == "100GiB"
    done = berthd.berth("quota", "shop", "blob_bytez=1GiB", check=False)
    assert done.returncode == 1 and "blob_bytez" in done.stderr
    done = berthd.berth("quota", "shop", "blob_bytes=lots", check=False)
    assert done.returncode == 1 and "invalid" in done.stderr


def test_bad_names_and_limits_are_refused(berthd: Berthd) -> None:
    for name, words in [("Shop", "lowercase"), ("mysql", "reserved"), ("a" * 40, "28")]:
        done = berthd.berth("apps", "create", name, check=False)
        assert done.returncode == 1 and words in done.stderr, done.stderr
    done = berthd.berth("apps", "create", "shop", "--limit", "nokey", check=False)
    assert done.returncode == 1 and "key=value" in done.stderr
    assert berthd.json("apps", "list") == []


def test_cache_budgets_are_reservations_out_of_the_cache_memory(berthd: Berthd) -> None:
    assert berthd.proc is not None
    berthd.proc.stop()
    berthd.services_extra = 'cache_memory = "100MiB"\n'
    berthd.start()
    create(berthd, "shop")  # the default cache_bytes, 64 MiB
    create(berthd, "blog", "cache_bytes=32MiB")
    done = berthd.berth("apps", "create", "wiki", "--limit", "cache_bytes=8MiB", check=False)
    assert done.returncode == 1
    assert ("the apps' cache_bytes would add up to 109051904 bytes, 4194304 more than the cache "
            "servers' memory of 104857600 bytes") in done.stderr, done.stderr
    assert "wiki" not in berthd.berth("apps", "list").stdout
    done = berthd.berth("quota", "blog", "cache_bytes=40MiB", check=False)
    assert done.returncode == 1 and "cache_memory" in done.stderr, done.stderr
    berthd.berth("quota", "blog", "cache_bytes=4MiB")
    create(berthd, "wiki", "cache_bytes=8MiB")  # fits now: 64 + 4 + 8 MiB


def test_tokens_rotate_and_revoke(berthd: Berthd) -> None:
    first = create(berthd, "shop")
    out = berthd.json("tokens", "create", "shop", "--label", "ci")
    assert isinstance(out, dict)
    second = str(out["secret"])
    tokens = berthd.json("tokens", "list", "shop")
    assert isinstance(tokens, list) and len(tokens) == 2
    assert {t["label"] for t in tokens} == {"first token", "ci"}
    assert first not in json.dumps(tokens) and second not in json.dumps(tokens)
    first_id = next(t["id"] for t in tokens if t["label"] == "first token")
    # the app's own token may manage its own tokens
    berthd.berth("tokens", "revoke", "shop", first_id, token=second)
    done = berthd.berth("apps", "info", "shop", token=first, check=False)
    assert done.returncode == 1 and "not authenticated" in done.stderr
    toml = berthd.json("registry", "show")
    assert isinstance(toml, dict)
    assert first_id not in toml["tenants_toml"]
    assert out["token"]["id"] in toml["tenants_toml"]  # type: ignore[index]


def test_an_app_token_reaches_only_its_own_app(berthd: Berthd) -> None:
    shop = create(berthd, "shop")
    create(berthd, "blog")
    assert [a["name"] for a in berthd.json("apps", "list", token=shop)] == ["shop"]  # type: ignore[index, union-attr]
    for args in (["apps", "info", "blog"], ["tokens", "list", "blog"],
                 ["tokens", "create", "blog"], ["events", "blog"],
                 ["apps", "info", "nosuchapp"]):
        done = berthd.berth(*args, token=shop, check=False)
        assert done.returncode == 1 and "not allowed" in done.stderr, (args, done.stderr)
    for args in (["apps", "create", "mine"], ["quota", "shop", "blob_bytes=1TiB"],
                 ["apps", "destroy", "blog", "--confirm", "blog"], ["registry", "show"]):
        done = berthd.berth(*args, token=shop, check=False)
        assert done.returncode == 1 and "not allowed" in done.stderr, (args, done.stderr)
    # what an app may see of itself
    berthd.berth("apps", "info", "shop", token=shop)
    events = berthd.json("events", token=shop)
    assert isinstance(events, list) and {e["app"] for e in events} == {"shop"}


def test_unknown_and_missing_tokens(berthd: Berthd) -> None:
    done = berthd.berth("apps", "list", token="0" * 64, check=False)
    assert done.returncode == 1 and "unknown token" in done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    done = subprocess.run([str(berthd.cli), "apps", "list", "--server",
                           f"http://127.0.0.1:{berthd.port}"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 1 and "no token" in done.stderr


def test_events_record_who_did_what(berthd: Berthd) -> None:
    create(berthd, "shop")
    berthd.berth("quota", "shop", "log_rate=50")
    events = berthd.json("events", "shop")
    assert isinstance(events, list)
    assert [e["action"] for e in events] == ["app.limits", "app.create"]
    assert events[0]["detail"] == "log_rate=50"
    assert events[0]["actor"].startswith("operator:")


def test_state_survives_kill_9(berthd: Berthd) -> None:
    token = create(berthd, "shop", "cache_bytes=8MiB")
    berthd.berth("quota", "shop", "db_bytes=2GiB")
    assert berthd.proc is not None
    os.kill(berthd.proc.proc.pid, signal.SIGKILL)
    berthd.proc.proc.wait(timeout=10)
    berthd.start()
    info = berthd.json("apps", "info", "shop", token=token)
    assert isinstance(info, dict)
    assert info["limits"]["cache_bytes"] == "8MiB" and info["limits"]["db_bytes"] == "2GiB"
    reg = berthd.json("registry", "show")
    assert isinstance(reg, dict) and reg["generation"] == 2


def test_berthd_down_is_a_clear_error(berthd: Berthd) -> None:
    assert berthd.proc is not None
    berthd.proc.stop()
    berthd.proc = None
    done = berthd.berth("apps", "list", token="x", check=False)
    assert done.returncode == 1 and "cannot reach berthd" in done.stderr
