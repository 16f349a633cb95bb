"""`python -m berth.runtime` serving a real app under granian, with the restrictions on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import LogCollector, free_port
from test_logging import TOKENS, events

APPS = Path(__file__).parent / "apps"


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, outside: Path) -> None:
        self.proc = proc
        self.port = port
        self.outside = outside

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            body: bytes = r.read()
        return body.decode()


@pytest.fixture(scope="module")
def served(
    log_collector: LogCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    d = tmp_path_factory.mktemp("runtime")
    scratch = d / "scratch"
    scratch.mkdir()
    outside = d / "outside.txt"
    outside.write_text("precious")
    secrets_file = d / "secrets.toml"
    secrets_file.write_text(f'token = "{TOKENS["alpha"]}"\n')
    secrets_file.chmod(0o600)
    port = free_port()
    env = {
        **os.environ,
        "BERTH_APP": "alpha",
        "BERTH_VERSION": "1.0.0",
        "BERTH_INSTANCE": "rt-1",
        "BERTH_LOG_ADDR": log_collector.json_address,
        "BERTH_SECRETS_FILE": str(secrets_file),
        "BERTH_SCRATCH_DIR": str(scratch),
        "OUTSIDE_FILE": str(outside),
    }
    argv = [
        sys.executable, "-m", "berth.runtime", "serve", "rtapp:application",
        "--bind", f"127.0.0.1:{port}", "--processes", "2", "--threads", "2",
    ]  # fmt: skip
    log = (d / "runtime.log").open("wb")
    proc = subprocess.Popen(argv, cwd=APPS, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Served(proc, port, outside)
    deadline = time.monotonic() + 20
    while True:
        try:
            served.get("/pid")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"runtime did not serve: {(d / 'runtime.log').read_text()[-3000:]}")
            time.sleep(0.1)
    yield served
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_serves_from_several_processes(served: Served) -> None:
    pids = {served.get("/pid") for _ in range(40)}
    assert all(p.startswith("ok ") for p in pids)
    assert len(pids) == 2


def test_records_reach_the_log_collector(served: Served, log_collector: LogCollector) -> None:
    assert served.get("/log") == "ok None"
    deadline = time.monotonic() + 10
    while not (got := events(log_collector, "alpha", logger="rtapp")):
        assert time.monotonic() < deadline, "the record never reached the collector"
        time.sleep(0.1)
    assert got[-1]["message"].startswith("hello from ")
    assert got[-1]["version"] == "1.0.0" and got[-1]["instance"] == "rt-1"


def test_other_log_handlers_are_refused_with_a_clear_error(served: Served) -> None:
    answer = served.get("/stream-handler")
    assert answer.startswith("HandlerNotAllowed: ")
    assert "StreamHandler is not allowed" in answer and "NullHandler" in answer
    assert served.get("/null-handler") == "ok None"


def test_writes_outside_the_scratch_dir_are_refused(served: Served) -> None:
    for path in ("/write-outside", "/remove-outside"):
        answer = served.get(path)
        assert answer.startswith("PermissionError: "), answer
        assert "scratch directory" in answer
    assert served.outside.read_text() == "precious"
    assert served.get("/read-outside") == "ok precious"


def test_the_scratch_dir_and_tempfiles_are_writable(served: Served) -> None:
    assert served.get("/write-scratch").startswith("ok ")
    answer = served.get("/tempfile")
    assert answer.startswith("ok ") and "scratch" in answer


def test_the_routers_prefix_becomes_script_name(served: Served) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{served.port}/where", headers={"X-Berth-Script-Name": "/shop"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.read().decode() == "/shop|/where|False"
    assert served.get("/where") == "|/where|False"


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "berth.runtime", *args],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "BERTH_ENTRY"},
    )


def test_check_accepts_a_wsgi_callable() -> None:
    result = run_module("check", "rtapp:application")
    assert result.returncode == 0 and "ok" in result.stdout


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("rtapp:not_callable", "not a WSGI callable"),
        ("rtapp:missing", "has no attribute 'missing'"),
        ("no_such_module:app", "No module named 'no_such_module'"),
        ("rtapp", "not module:attribute"),
    ],
)
def test_check_explains_a_broken_entry_point(entry: str, message: str) -> None:
    result = run_module("check", entry)
    assert result.returncode == 1
    assert message in result.stderr


def test_serve_without_an_entry_point_says_where_it_looked() -> None:
    result = run_module("serve")
    assert result.returncode != 0
    assert "BERTH_ENTRY" in result.stderr
