"""The ```sh and ```console samples of the wire-protocol pages run, against real servers,
and the rule over every page of docs/: no shell block escapes its test.

How a page runs and what it promises: tests/docs/shell_pages.py. Each page here runs against
private servers this test starts on free ports; after a page has run, its effects are read back
from the servers: a page whose commands silently do nothing fails.

    .venv/bin/python -m pytest tests/docs/test_shell_samples.py --bin-dir target/release
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import importlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from berth import testing

from .ops_support import mariadb
from .shell_pages import (
    ELSEWHERE,
    NOT_RUN,
    Block,
    Outputs,
    Setup,
    bin_dir,
    commands,
    matches,
    not_run_reason,
    pages_with_shell_blocks,
    path_with,
    run_page,
    shell_blocks,
)

# -- protocols/blob.md: a blob server with one app ------------------------------------------


@pytest.fixture
def blob_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    app, token = "shdocs" + secrets.token_hex(4), secrets.token_hex(32)
    (tmp_path / "tenants.toml").write_text(f'[[app]]\nname = "{app}"\ntoken = "{token}"\n')
    (tmp_path / "data").mkdir()
    binary = testing.find_binary("blob-server", str(bin_dir(request)))
    argv = [
        *(str(binary), "--data-dir", str(tmp_path / "data")),
        *("--tenants", str(tmp_path / "tenants.toml")),
        *("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
    ]
    server = testing.Process(argv, ["http"], tmp_path, "blob")
    cwd = tmp_path / "work"
    cwd.mkdir()
    photo = secrets.token_bytes(48211)  # the size the page shows
    (cwd / "photo.jpg").write_bytes(photo)
    port = server.ports["http"]
    try:

        def check(out: Outputs) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("HEAD", "/buckets/notes/keys/first", headers=auth(token))
            head = conn.getresponse()
            head.read()
            assert head.status == 200
            assert head.getheader("Content-Type") == "text/plain"
            assert head.getheader("X-Riak-Meta-Author") == "ann"
            conn.request(
                "GET", f"/blobs/sha256:{hashlib.sha256(photo).hexdigest()}", headers=auth(token)
            )
            blob = conn.getresponse()
            assert blob.status == 200 and blob.read() == photo
            conn.close()
            # "a second run answers 412 precondition_failed"
            once = out.command("If-None-Match: *").text
            again = subprocess.run(
                ["bash", "-c", once],
                env={**os.environ, "BLOB": f"http://127.0.0.1:{port}", "TOKEN": token},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert json.loads(again.stdout)["error"] == "precondition_failed", again

        yield Setup(
            env={},
            cwd=cwd,
            replacements=[
                ("BLOB=http://127.0.0.1:8098", f"BLOB=http://127.0.0.1:{port}", ""),
                ("TOKEN=...", f"TOKEN={token}", ""),
                ("sha256:9f2c…", f"sha256:{hashlib.sha256(photo).hexdigest()}", ""),
                (
                    "?app=guestbook&expires=1795000000&signature=5c1f…",
                    f"?app={app}&expires=…&signature=…",
                    "",
                ),
                ('"expires":1795000000', '"expires":…', ""),
            ],
            check=check,
        )
    finally:
        server.stop()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_blob_page(blob_page: Setup) -> None:
    run_page("protocols/blob.md", blob_page)


# -- protocols/query.md: the development proxy the page starts, a TLS one, provisioning ------

BACKEND_SECRET = "shell-samples-" + "0" * 32


@pytest.fixture
def query_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    bins = bin_dir(request)
    cwd = tmp_path / "work"
    (cwd / "target").mkdir(parents=True)
    (cwd / "target" / "release").symlink_to(bins)  # what `cargo build --release` leaves
    cert, key = cwd / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    # Both development proxies provision the same `dev` app: they must derive the same
    # backend password, so they share the backend secret.
    env = {
        "BERTH_QUERY_BACKEND_SECRET": BACKEND_SECRET,
        "BERTH_QUERY_ADMIN_PASSWORD": "",
        "PATH": path_with(bins),
    }
    tls_conf = tmp_path / "tls.toml"
    tls_conf.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_tls = true\n')
    argv = [
        *(str(testing.find_binary("query-proxy", str(bins))), "--config", str(tls_conf)),
        *("--data-dir", str(tmp_path / "tls-data"), "--listen", "127.0.0.1:0"),
        *("--admin-listen", "127.0.0.1:0"),
    ]
    tls = testing.Process(argv, ["mysql"], tmp_path, "query-proxy-tls", env=env)
    conf = tmp_path / "query-proxy.toml"
    conf.write_text('backend = "127.0.0.1:3306"\nbackend_admin_user = "root"\n')
    app = "shdocs" + secrets.token_hex(4)
    try:

        def check(out: Outputs) -> None:
            assert re.search(r"\bapp_dev\s+app_dev@", out.of("SELECT DATABASE()")), out
            assert out.of("--ssl").split() == ["1", "1"], out
            # The TLS proxy refuses plain text: the block did use TLS.
            plain = subprocess.run(
                [
                    *("mysql", "-h", "127.0.0.1", "-P", str(tls.ports["mysql"])),
                    *("-u", "dev", "--skip-ssl", "app_dev", "-e", "SELECT 1"),
                ],
                env={**os.environ, "MYSQL_PWD": "dev"},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert plain.returncode != 0, plain
            # provision created the app's database, deprovision dropped it again
            assert f"app_{app}" in out.of(f" provision {app}"), out.of(f" provision {app}")
            with mariadb() as conn, conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE %s", (f"app_{app}",))
                assert cur.fetchall() == ()
            hexdigest = hmac.new(b"0123456789abcdef0123", b"guestbook", "sha256").hexdigest()
            assert out.of("openssl dgst").strip() == hexdigest

        yield Setup(
            env=env,
            cwd=cwd,
            replacements=[
                ("cargo build --release -p query-proxy", "test -x target/release/query-proxy", ""),
                (
                    "--data-dir .berth/query-proxy &",
                    "--data-dir .berth/query-proxy --listen 127.0.0.1:0 "
                    "--admin-listen 127.0.0.1:0 >proxy.out & QP=$(wait_listen proxy.out mysql)",
                    "",
                ),
                ("-P 6033", "-P $QP", "SELECT DATABASE()"),
                ("-P 6033", f"-P {tls.ports['mysql']}", "--ssl"),
                ("/etc/berth/query-proxy.toml", str(conf), ""),
                ("guestbook", app, "provision guestbook"),
            ],
            check=check,
        )
    finally:
        tls.stop()
        subprocess.run(
            ["query-proxy", "--config", str(conf), "deprovision", app],
            env={**os.environ, **env},
            capture_output=True,
            timeout=60,
        )


def test_query_page(query_page: Setup) -> None:
    run_page("protocols/query.md", query_page)


# -- protocols/logs.md: a collector without tenants, as the JSON hello (no token) needs ---------


@pytest.fixture
def logs_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    bins = bin_dir(request)
    app, token = "shdocs" + secrets.token_hex(4), secrets.token_hex(32)
    (tmp_path / "data").mkdir()
    argv = [
        *(
            str(testing.find_binary("log-collector", str(bins))),
            "--data-dir",
            str(tmp_path / "data"),
        ),
        *("--listen-json", "127.0.0.1:0", "--listen-syslog", "127.0.0.1:0"),
        *("--listen-http", "127.0.0.1:0", "--listen-otlp", "", "--admin-listen", "127.0.0.1:0"),
    ]
    collector = testing.Process(
        argv, ["json", "syslog-tcp", "syslog-udp", "http"], tmp_path, "logs"
    )
    ports = collector.ports
    assert ports["syslog-tcp"] == ports["syslog-udp"], ports  # the page uses one port for both
    cwd = tmp_path / "work"
    cwd.mkdir()
    url = f"http://127.0.0.1:{ports['http']}"
    try:

        def check(out: Outputs) -> None:
            messages = ["connection lost", "job failed", "over UDP"]
            # the JSON event, then the two logger(1) messages: all stored, in the page's order
            # (UDP has no back-pressure: wait for its datagram)
            events = wait_for_events(url, app, len(messages))
            assert [e["message"] for e in events] == messages, events
            assert [e["source"] for e in events] == ["json", "syslog-tcp", "syslog-udp"], events
            assert (events[1]["logger"], events[1]["level"]) == ("worker", "error"), events
            found = json.loads(out.of("/events?level=error"))
            assert [e["message"] for e in found["events"]] == ["job failed", "connection lost"]
            assert found["app"] == app, found
            # the tail streamed until the test's timeout cut it off
            assert out.of("/tail?level=warning").strip(": \n") == "", out.of("/tail")
            listed = out.of(f"berth logs {app}  ")
            assert re.search(rf"Z {app}\S* ERROR app.db: connection lost$", listed, re.M), listed
            assert "job failed" in listed and "over UDP" in listed, listed
            assert "job failed" in out.of("--tail"), out.of("--tail")
            assert out.of("--grep timeout") == "", out.of("--grep timeout")
            lines = out.of("--json").splitlines()
            assert [json.loads(line)["message"] for line in lines] == messages, lines

        yield Setup(
            env={"TOKEN": token, "PATH": path_with(bins)},
            cwd=cwd,
            replacements=[
                ("/dev/tcp/127.0.0.1/5170", f"/dev/tcp/127.0.0.1/{ports['json']}", ""),
                ('"app":"guestbook"', f'"app":"{app}"', ""),
                ("-P 5140", f"-P {ports['syslog-tcp']}", ""),
                ('token="guestbook:9f86d081…"', f'token="{app}:{token}"', ""),
                ('token="guestbook:…"', f'token="{app}:{token}"', ""),
                ("http://127.0.0.1:8099", url, ""),
                ("/v1/apps/guestbook/", f"/v1/apps/{app}/", ""),
                ("curl -sN", "curl -sN --max-time 2", ""),
                ("BERTH_TOKEN=…", f"BERTH_TOKEN={token}", ""),
                ("berth logs guestbook --tail", f"timeout 2 berth logs {app} --tail", ""),
                ("berth logs guestbook", f"berth logs {app}", ""),
            ],
            # cut off by the test while they follow the stream, as a reader would with ^C
            statuses={"/tail?level=warning": 28, "--tail": 124},
            check=check,
        )
    finally:
        collector.stop()


def wait_for_events(url: str, app: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{url}/v1/apps/{app}/events", timeout=10) as response:
            events: list[dict[str, Any]] = json.load(response)["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_logs_page(logs_page: Setup) -> None:
    run_page("protocols/logs.md", logs_page)


# -- the rule: nothing escapes ----------------------------------------------------------------

RUNS: dict[str, Callable[..., None]] = {
    "protocols/blob.md": test_blob_page,
    "protocols/query.md": test_query_page,
    "protocols/logs.md": test_logs_page,
}

# The test modules that run the shell blocks of pages, each with its RUNS: page -> test.
RUNNERS = [
    "docs.test_shell_samples",
    "docs.test_shell_ops",
    "docs.test_shell_platform",
    "docs.test_shell_benchmarks",
]

# Pages whose shell blocks a test of its own follows, in its own way (not through RUNS).
FOLLOWED = {
    # every ```sh block, in order: the run command, then the second terminal
    "getting-started.md": "test_getting_started.test_getting_started_word_for_word",
}


def runs() -> dict[str, str]:
    """page -> the test that runs its shell blocks."""
    found: dict[str, str] = dict(FOLLOWED)
    for name in RUNNERS:
        for page, test in importlib.import_module(name).RUNS.items():
            assert page not in found, f"{page} is run by {found[page]} and {name}.{test.__name__}"
            found[page] = f"{name.removeprefix('docs.')}.{test.__name__}"
    for page, test in FOLLOWED.items():
        module, _, function = test.partition(".")
        assert callable(getattr(importlib.import_module(f"docs.{module}"), function)), test
    return found


def test_every_shell_block_of_the_docs_runs() -> None:
    """Every sh, bash, shell and console block of docs/ is run by a test or listed in NOT_RUN
    with the reason it cannot run on a test machine."""
    run_by = runs()
    escaped = [
        f"docs/{page}:{block.line}: a ```{block.lang} block no test runs"
        for page in pages_with_shell_blocks()
        for block in shell_blocks(page)
        if not_run_reason(block) is None and page not in run_by
    ]
    assert not escaped, "\n".join(escaped)
    for page, marker in NOT_RUN:
        hits = [b for b in shell_blocks(page) if marker in b.text]
        assert len(hits) == 1, f"NOT_RUN names {marker!r} in {page}: {len(hits)} blocks show it"
    gone = [page for page in run_by if not shell_blocks(page)]
    assert not gone, f"pages with no shell block left to run: {gone}"
    for (page, marker), module in ELSEWHERE.items():
        hits = [b for b in shell_blocks(page) if marker in b.text]
        assert len(hits) == 1, f"ELSEWHERE names {marker!r} in {page}: {len(hits)} blocks show it"
        parts = importlib.import_module(module).RUNS_PARTS
        assert (page, marker) in parts, f"{module} does not run {page}'s {marker!r} block"


def test_the_parser_finds_commands_and_outputs() -> None:
    block = Block("x.md", 1, "sh", "")
    text = (
        "export A=1   # prose\n"
        'curl -sS \\\n  http://x   # "ell"\n'
        "# a prose comment\n"
        "printf x\n"
        '# {"a":1}\n'
        "# [2]\n"
    )
    found = commands(block, text)
    assert [(c.text.split()[0], c.expected) for c in found] == [
        ("export", None),
        ("curl", ["ell"]),
        ("printf", ['{"a":1}', "[2]"]),
    ]
    assert found[1].where == "x.md:3"
    console = commands(
        Block("y.md", 10, "console", ""),
        "$ echo a \\\n  b\na b\n$ true\n$ printf '1\\n2\\n'\n1\n2\n",
    )
    assert [(c.where, c.text, c.expected) for c in console] == [
        ("y.md:11", "echo a \\\n  b", ["a b"]),
        ("y.md:14", "true", []),
        ("y.md:15", "printf '1\\n2\\n'", ["1", "2"]),
    ]
    assert matches(['{"id":"sha256:…","size":3}'], '{"id":"sha256:ab","size":3}\n')
    assert not matches(['{"size":3}'], '{"size":4}')
    # a console block inside a list item; `...` elides, a line of its own any lines
    indented = commands(
        Block("z.md", 1, "console", ""), "   $ berth x\n   a  ...\n   ...\n   end\n"
    )
    assert [(c.text, c.expected, c.console) for c in indented] == [
        ("berth x", ["a  …", "…", "end"], True)
    ]
    assert matches(["a  …", "…", "end"], "a    b c\nmore\nlines\nend\n")
    assert matches(["a  …", "…", "end"], "a b\nend")
    assert not matches(["a  b"], "ab")
    # a command of several lines: a subshell, a quoted argument
    several = commands(block, "(umask 077\n echo a)\ncurl --data '\n {}'\n# \"x\"\n")
    assert [(c.text, c.expected) for c in several] == [
        ("(umask 077\n echo a)", None),
        ("curl --data '\n {}'", ["x"]),
    ]
