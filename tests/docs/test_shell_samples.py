"""The ```sh and ```console samples of the wire-protocol pages run, against real servers.

Each page's shell blocks run in order in one bash session (so a block can use what an earlier
one exported), from a fresh directory, against private servers this test starts on free
ports. A page shows the addresses and tokens of a development setup (`127.0.0.1:8098`,
`TOKEN=...`); `replacements` in each page's setup map them onto the private servers, and a
replacement that no longer matches the page fails the test, so the page and the test cannot
drift apart. Every command must exit 0, unless its setup says which other status it ends with
(a command that follows a stream forever is cut off by a timeout the test adds).

A page promises outputs in comments, which are checked:

- a comment line that starts with `{`, `[` or `"` is a line of the output of the command
  before it (`# {"ack":1}`);
- a trailing comment `# "text"` (or `# "text", prose`) on a command is its whole output,
  without the quotes;
- `…` in a promised output stands for any text (a hash, a time).

Other comments are prose. In a ```console block, `$ ` lines are commands and the lines after
one, up to the next, its output. After a page has run, its effects are read back from the
servers: a page whose commands silently do nothing fails.

A block that cannot run here is listed in `NOT_RUN` with the reason; any other shell block of
the pages in `PAGES` that is not run fails `test_every_shell_block_runs`.

    .venv/bin/python -m pytest tests/docs/test_shell_samples.py --bin-dir target/release
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
from berth import testing

from .fences import fenced_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"

SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session"}
OUTPUT_COMMENT_RE = re.compile(r"^#\s([\[{\"].*)$")
TRAILING_OUTPUT_RE = re.compile(r"\s#\s\"(.*)\"(?:,.*)?\s*$")

# The wire-protocol pages whose shell samples this test runs (cache.md shows its protocol as
# raw request lines, not shell commands: it has none, and must keep none or be added here).
PAGES = ["protocols/blob.md", "protocols/cache.md", "protocols/query.md", "protocols/logs.md"]

# (page, text that identifies the block) -> why it is not run.
NOT_RUN = {
    ("protocols/query.md", "sysbench oltp_point_select"): (
        "a benchmark (8 threads for 5 s) on a shared test host, and sysbench is not installed; "
        "tests/query/test_protocol.py drives the same binary protocol (COM_STMT_*)"
    ),
}


# -- reading the pages ------------------------------------------------------------------------


@dataclass
class Block:
    page: str  # relative to docs/
    line: int  # the line of the opening fence, 1-based
    lang: str
    text: str


def shell_blocks(page: str) -> list[Block]:
    """Every fenced block of `page` whose language is a shell's."""
    return [
        Block(page, line, lang, body)
        for line, lang, body in fenced_blocks(DOCS / page)
        if lang in SHELL_LANGS
    ]


def not_run_reason(block: Block) -> str | None:
    for (page, marker), reason in NOT_RUN.items():
        if page == block.page and marker in block.text:
            return reason
    return None


@dataclass
class Command:
    where: str  # page:line
    text: str
    expected: list[str] | None = None  # promised stdout lines
    trailing: bool = False  # promised by a trailing comment


def commands(block: Block, text: str) -> list[Command]:
    """The commands of a block (its text after replacements) with their promised outputs."""
    lines = text.splitlines()
    found: list[Command] = []

    def where(i: int) -> str:
        return f"{block.page}:{block.line + 1 + i}"

    if block.lang != "console" and block.lang != "shell-session":
        i = 0
        while i < len(lines):
            start, cmd = i, lines[i]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
            i += 1
            stripped = cmd.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                m = OUTPUT_COMMENT_RE.match(stripped)
                if m:
                    assert found, f"{where(start)}: an output comment before any command"
                    assert not found[-1].trailing, f"{where(start)}: a second promised output"
                    found[-1].expected = [*(found[-1].expected or []), unquote(m.group(1))]
                continue
            command = Command(where(start), cmd)
            m = TRAILING_OUTPUT_RE.search(cmd.splitlines()[-1])
            if m:
                command.expected, command.trailing = [m.group(1)], True
            found.append(command)
        return found
    for i, line in enumerate(lines):
        if line.startswith("$ "):
            found.append(Command(where(i), line[2:], []))
        elif found and found[-1].text.endswith("\\") and not found[-1].expected:
            found[-1].text += "\n" + line  # a continued command
        elif found:
            found[-1].expected = [*(found[-1].expected or []), line]
    return found


def unquote(text: str) -> str:
    """`"ell"` is the output `ell`; JSON objects and arrays are their own text."""
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def matches(expected: list[str], got: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in "\n".join(expected).split("…"))
    return re.fullmatch(pattern, got.rstrip("\n"), re.S) is not None


# -- running a page ---------------------------------------------------------------------------

PRELUDE = r"""
set -u
# Servers a page starts in the background stop with it.
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
# wait_listen FILE KIND: wait for a server's `LISTEN KIND host:port` line; print the port.
wait_listen() {
    for _ in $(seq 400); do
        line=$(grep -m1 "^LISTEN $2 " "$1" 2>/dev/null) && { echo "${line##*:}"; return 0; }
        sleep 0.05
    done
    echo "no LISTEN $2 line in $1" >&2
    return 1
}
"""


@dataclass
class Setup:
    """The environment a page's commands run in, how they are adapted, what to check."""

    env: dict[str, str]
    cwd: Path
    # (text on the page, replacement, only in blocks containing this or "" for all blocks)
    replacements: list[tuple[str, str, str]] = field(default_factory=list)
    # text of a command -> the exit status it must end with (0 for every other command)
    statuses: dict[str, int] = field(default_factory=dict)
    check: Callable[[Outputs], None] = lambda out: None


@dataclass
class Outputs:
    commands: list[Command]
    stdout: list[str]

    def of(self, text: str) -> str:
        """The stdout of the one command containing `text`."""
        hits = [i for i, c in enumerate(self.commands) if text in c.text]
        assert len(hits) == 1, f"{len(hits)} commands contain {text!r}"
        return self.stdout[hits[0]]

    def command(self, text: str) -> Command:
        hits = [c for c in self.commands if text in c.text]
        assert len(hits) == 1, f"{len(hits)} commands contain {text!r}"
        return hits[0]


def run_page(page: str, setup: Setup) -> Outputs:
    blocks = [b for b in shell_blocks(page) if not_run_reason(b) is None]
    assert blocks, f"{page} has no shell blocks to run any more: update {Path(__file__).name}"
    used = [0] * len(setup.replacements)
    cmds: list[Command] = []
    for block in blocks:
        text = block.text
        for i, (old, new, only_in) in enumerate(setup.replacements):
            if only_in and only_in not in text:
                continue
            used[i] += text.count(old)
            text = text.replace(old, new)
        cmds += commands(block, text)
    stale = [r[0] for r, n in zip(setup.replacements, used, strict=True) if n == 0]
    assert not stale, f"{page} no longer shows {stale}: update {Path(__file__).name}"
    stale_statuses = [s for s in setup.statuses if not any(s in c.text for c in cmds)]
    assert not stale_statuses, f"{page}: no command contains {stale_statuses}"

    out_dir = setup.cwd / ".shell-samples"
    out_dir.mkdir()
    script = [PRELUDE]
    for n, cmd in enumerate(cmds):
        status = next((s for t, s in setup.statuses.items() if t in cmd.text), 0)
        script.append(
            f"{{\n{cmd.text}\n}} >{out_dir}/{n}.out 2>{out_dir}/{n}.err\n"
            f"rc=$?; echo $rc >{out_dir}/{n}.rc; [ $rc = {status} ] || exit 1\n"
        )
    (out_dir / "page.sh").write_text("".join(script))
    proc = subprocess.Popen(
        ["bash", str(out_dir / "page.sh")],
        cwd=setup.cwd,
        env={**os.environ, **setup.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: servers it started die with it
    )
    try:
        shell_out = proc.communicate(timeout=240)[0].decode(errors="replace")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    stdout: list[str] = []
    for n, cmd in enumerate(cmds):
        files = [out_dir / f"{n}.{ext}" for ext in ("rc", "out", "err")]
        assert files[0].exists(), f"{cmd.where}: never ran\n{shell_out}"
        rc, out, err = (f.read_text(errors="replace") for f in files)
        report = (
            f"{cmd.where}: {cmd.text}\nexit status {rc.strip()}\nstdout:\n{out}\nstderr:\n{err}"
        )
        want = next((s for t, s in setup.statuses.items() if t in cmd.text), 0)
        assert int(rc) == want, f"expected exit status {want}\n{report}"
        if cmd.expected is not None:
            assert matches(cmd.expected, out), f"expected output {cmd.expected}\n{report}"
        stdout.append(out)
    outputs = Outputs(cmds, stdout)
    setup.check(outputs)
    return outputs


def bin_dir(request: pytest.FixtureRequest) -> Path:
    return Path(str(request.config.getoption("--bin-dir"))).resolve()


def path_with(bins: Path) -> str:
    return f"{bins}{os.pathsep}{os.environ.get('PATH', '')}"


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


def mariadb() -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")


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

RUNNERS = {
    "protocols/blob.md": test_blob_page,
    "protocols/query.md": test_query_page,
    "protocols/logs.md": test_logs_page,
}


def test_every_shell_block_runs() -> None:
    """Every shell block of the protocol pages is run by this test or listed in NOT_RUN."""
    escaped = []
    for page in PAGES:
        for block in shell_blocks(page):
            if not_run_reason(block) is None and page not in RUNNERS:
                escaped.append(f"docs/{page}:{block.line}: a ```{block.lang} block no test runs")
    assert not escaped, "\n".join(escaped)
    for page, marker in NOT_RUN:
        hits = [b for b in shell_blocks(page) if marker in b.text]
        assert len(hits) == 1, f"NOT_RUN names {marker!r} in {page}: {len(hits)} blocks show it"


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
