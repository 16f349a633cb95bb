"""docs/getting-started.md, followed word for word on a fresh data directory.

The page's ```sh blocks are its commands. The first (`scripts/run`) is the first terminal: it
is started in the background and followed until Berth says it is running. The others are the
second terminal: they run in order in one bash session (`set -e`, so a failing command fails
the test), from the checkout, with a fresh HOME. Then the outputs the page promises are
checked, and the page is checked to promise exactly those.

Berth's data directory is `.berth/` in the checkout. A clean clone has none; in a developer's
checkout an existing one is moved aside for the test and put back afterwards. The run command
uses fixed ports (7100, 8080, 11211, ...): if something already listens on them (a
`scripts/run` of your own), the test fails and says so. Needs root, like the run command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .fences import fenced_blocks

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "getting-started.md"
DATA = REPO / ".berth"
# Every port scripts/run listens on (see the comment at its top).
PORTS = [
    7100,
    7180,
    9271,
    11211,
    9211,
    8098,
    9298,
    6033,
    9233,
    5170,
    5140,
    4317,
    8099,
    9299,
    8080,
    9280,
]
# What the page says the app answers after each step, in order.
PROMISED = [
    "Hello from first 1.0.0! Visit number 1.",
    "Welcome to first 1.1.0! Visit number 2.",
    "Hello from first 1.0.0! Visit number 3.",
]
START_TIMEOUT = 900  # the run command may build first


def sh_blocks() -> list[str]:
    return [body for _, lang, body in fenced_blocks(PAGE) if lang == "sh"]


def busy_ports() -> list[int]:
    busy = []
    for port in PORTS:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def test_the_page_promises_what_the_test_checks() -> None:
    text = PAGE.read_text()
    for line in PROMISED:
        assert f"`{line}`" in text, f"getting-started.md no longer says `{line}`"
    blocks = sh_blocks()
    assert blocks[0].strip() == "scripts/run", "the first command must be the run command"
    assert len(blocks) >= 5


@pytest.mark.timeout(START_TIMEOUT + 600)
def test_getting_started_word_for_word(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("Getting started needs root (the run command runs apps as their own users)")
    busy = busy_ports()
    if busy:
        pytest.fail(
            f"ports {busy} are in use: stop your own scripts/run (Ctrl-C) before this test, "
            "which follows docs/getting-started.md with the run command's fixed ports"
        )
    blocks = sh_blocks()
    run_cmd, commands = blocks[0].strip(), blocks[1:]

    saved = None
    if DATA.exists():
        saved = REPO / f".berth.saved-by-getting-started-test-{os.getpid()}"
        DATA.rename(saved)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    # A fresh HOME (the page writes the app to ~/first), keeping the Rust toolchain that the
    # run command's build needs, which rustup finds through HOME unless told.
    real_home = Path(os.environ.get("HOME", "/root"))
    env.setdefault("RUSTUP_HOME", str(real_home / ".rustup"))
    env.setdefault("CARGO_HOME", str(real_home / ".cargo"))
    env["HOME"] = str(home)
    run_log = tmp_path / "run.log"
    run = None
    try:
        with run_log.open("wb") as out:
            run = subprocess.Popen(
                ["bash", "-c", run_cmd],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while "Berth is running" not in run_log.read_text(errors="replace"):
            if run.poll() is not None:
                pytest.fail(f"scripts/run exited ({run.returncode}):\n{tail(run_log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"scripts/run did not get Berth running:\n{tail(run_log)}")
            time.sleep(0.5)
        text = run_log.read_text(errors="replace")
        assert "the guestbook: http://guestbook.localhost:8080/" in text
        # The dashboard the page sends readers to, signed in with the token it names.
        token = (DATA / "berthd" / "operator-token").read_text().strip()
        with urllib.request.urlopen(urllib.request.Request(
                "http://127.0.0.1:7180/api/apps", headers={"Authorization": f"Bearer {token}"}),
                timeout=10) as r:
            assert "guestbook" in [a["name"] for a in json.load(r)["apps"]]

        marker = "@@ getting-started block {} done @@"
        script = "set -euo pipefail\n"
        for i, block in enumerate(commands):
            script += block + f"\necho '{marker.format(i)}'\n"
        second = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = second.stdout
        assert second.returncode == 0, (
            f"a command of the page failed (exit {second.returncode}) after block "
            f"{output.count('@@ getting-started block')}:\n{output[-3000:]}\n"
            f"{second.stderr[-3000:]}"
        )
        for i in range(len(commands)):
            assert marker.format(i) in output
        # Each promised answer appears, in the page's order.
        pos = 0
        for line in PROMISED:
            found = output.find(line, pos)
            assert found >= 0, f"expected {line!r} after position {pos} in:\n{output}"
            pos = found + len(line)
        assert re.search(r"^v2\b.*1\.1\.0", output, re.M), output
        assert (home / "first" / "berth.toml").exists()
    finally:
        try:
            if run is not None and run.poll() is None:
                # Not part of the page: the app is removed, so the machine keeps no app user,
                # cgroup or firewall chain from the test.
                subprocess.run(
                    [
                        str(REPO / "target/release/berth"),
                        "apps",
                        "destroy",
                        "first",
                        "--confirm",
                        "first",
                    ],
                    env={
                        **env,
                        "BERTH_TOKEN_FILE": str(DATA / "berthd/operator-token"),
                    },
                    capture_output=True,
                    timeout=120,
                )
                os.killpg(run.pid, signal.SIGTERM)  # what Ctrl-C does
                try:
                    run.wait(timeout=90)
                except subprocess.TimeoutExpired:
                    os.killpg(run.pid, signal.SIGKILL)
                    run.wait()
                    pytest.fail(f"scripts/run did not stop on SIGTERM:\n{tail(run_log)}")
        finally:
            shutil.rmtree(DATA, ignore_errors=True)
            if saved is not None:
                saved.rename(DATA)
    assert run is not None and run.returncode == 0, f"scripts/run stopped badly:\n{tail(run_log)}"


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
