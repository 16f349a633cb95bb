"""Every ```python block in docs/ runs.

Pages whose examples are inline blocks (the client reference, the log and query protocols)
are run like notebooks: the blocks of a page, in order, in one interpreter and one
namespace, in a fresh process, against private, real services. Each page can use what an
earlier block defined. A page may show the default addresses and credentials of a
development setup (`127.0.0.1:6033`, user `dev`, …); `PAGES` lists how each is mapped onto
the private services, and a mapping that no longer matches the page fails the test, so the
page and the test cannot drift apart. After a page has run, its effects are read back from
the services (stored log events, rows, objects): a page whose blocks silently do nothing
fails.

A block that only holds mdBook `{{#include …}}` lines shows a file that another test runs:
one from docs/examples/ (tests/docs/test_api_examples.py), or from an app under examples/
with its own tests. Any other python block in a page not listed here fails
`test_no_python_block_escapes`, wherever it appears under docs/.

    .venv/bin/python -m pytest tests/docs/test_python_blocks.py --bin-dir target/release
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
from berth import blobs, config, db, testing

from .fences import fenced_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
EXAMPLES_DIR = DOCS / "examples"

PYTHON_LANGS = {"python", "python3", "py", "pycon", "py3"}
INCLUDE_LINE_RE = re.compile(r"^\s*\{\{#(?:include|rustdoc_include)\s+([^\s}]+)\s*\}\}\s*$")

# Runs the blocks of one page in order, in one namespace, stopping at the first failure.
RUNNER = r"""
import json, sys, traceback
page, blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for line, code in blocks:
    print(f"--- {page}:{line}", flush=True)
    try:
        # Pad with newlines so tracebacks give the page's own line numbers.
        exec(compile("\n" * line + code, page, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the python block at {page}:{line}", flush=True)
        sys.exit(1)
print(f"--- all {len(blocks)} blocks of {page} ran", flush=True)
"""


@dataclass
class Block:
    page: Path
    line: int  # the line of the opening fence, 1-based
    code: str

    @property
    def includes(self) -> list[str] | None:
        """The included paths when the block holds only include lines, else None."""
        lines = [ln for ln in self.code.splitlines() if ln.strip()]
        found = [INCLUDE_LINE_RE.match(ln) for ln in lines]
        if lines and all(found):
            return [m.group(1) for m in found if m]
        return None


def python_blocks(page: Path) -> list[Block]:
    """Every fenced block of `page` whose language is Python."""
    return [
        Block(page, line, body) for line, lang, body in fenced_blocks(page) if lang in PYTHON_LANGS
    ]


def inline_blocks(page: Path) -> list[Block]:
    return [b for b in python_blocks(page) if b.includes is None]


# -- how each page is run -------------------------------------------------------------------


@dataclass
class Setup:
    """The environment a page runs in, how its blocks are adapted, and what to check."""

    env: dict[str, str]
    cwd: Path
    # (text on the page, replacement, only in blocks containing this or "" for all blocks)
    replacements: list[tuple[str, str, str]] = field(default_factory=list)
    check: Callable[[str], None] = lambda out: None


def run_page(page: str, setup: Setup, tmp_path: Path) -> str:
    path = DOCS / page
    blocks = inline_blocks(path)
    assert blocks, f"{page} has no python blocks any more: remove it from PAGES"
    used = [0] * len(setup.replacements)
    adapted = []
    for block in blocks:
        code = block.code
        for i, (text, new, only_in) in enumerate(setup.replacements):
            if only_in and only_in not in code:
                continue
            used[i] += code.count(text)
            code = code.replace(text, new)
        adapted.append((block.line, code))
    stale = [r[0] for r, n in zip(setup.replacements, used, strict=True) if n == 0]
    assert not stale, f"{page} no longer shows {stale}: update PAGES in {Path(__file__).name}"
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(json.dumps([str(path.relative_to(REPO_ROOT)), adapted]))
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    done = subprocess.run(
        [sys.executable, str(runner), str(blocks_file)],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **setup.env},
        cwd=setup.cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-8000:]
    assert f"--- all {len(blocks)} blocks of" in done.stdout, out[-8000:]
    setup.check(out)
    return out


def bin_dir(request: pytest.FixtureRequest) -> str:
    return str(Path(str(request.config.getoption("--bin-dir"))).resolve())


# python-client.md: one session of a fresh app on all four services.

CLIENT_ENV = {"PAGE_SIZE": "25", "DEBUG": "no", "ADMINS": "ann,bob"}


@pytest.fixture
def client_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    with testing.Services(bin_dir=bin_dir(request)) as services:
        services.set_secrets(session_key="s3cr3t")
        env = services.environ(**CLIENT_ENV)
        cfg = config.load(env)

        def check(out: str) -> None:
            events = services.events(logger="shop.orders")
            assert [e["message"] for e in events] == [
                "order 1234 paid",
                "refund failed",
            ], events
            assert events[0]["extra"] == {"amount_cents": 1299, "customer": "c_42"}, events
            assert "ZeroDivisionError" in events[1]["exception"]
            client = blobs.Client.from_config(cfg)
            assert client.get("photos", "cat.jpg").data == b"meow"
            assert list(client.list_keys("listing-demo")) == [
                "a.txt",
                "photos/1.jpg",
                "photos/2.jpg",
            ]
            client.close()
            with db.connect(cfg=cfg) as conn, conn.cursor() as cur:
                cur.execute("SELECT body FROM notes")
                assert ("first",) in cur.fetchall()
            assert "app.log' is not allowed under Berth" in out  # the runtime refused it
            assert "StreamHandler is not allowed under Berth" in out
            assert not (tmp_path / "app.log").exists()
            assert "required configuration key 'SMTP_HOST' is not set" in out

        yield Setup(env=env, cwd=tmp_path, check=check)


def test_python_client_page(client_page: Setup, tmp_path: Path) -> None:
    run_page("python-client.md", client_page, tmp_path)


# protocols/query.md: PyMySQL, mysqlclient and SQLAlchemy through the proxy; TLS through a
# second proxy for the same app that refuses logins without TLS.


@pytest.fixture
def query_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    with testing.Services(bin_dir=bin_dir(request), cache=False, blobs=False, logs=False) as s:
        env = s.environ()
        plain = s.processes["query-proxy"]
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            [
                *(
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                ),
                *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        argv = list(plain.argv)
        conf = Path(argv[argv.index("--config") + 1])
        tls_conf = tmp_path / "query-proxy-tls.toml"
        tls_conf.write_text(
            conf.read_text() + f'tls_cert = "{cert}"\ntls_key = "{key}"\nrequire_tls = true\n'
        )
        argv[argv.index("--config") + 1] = str(tls_conf)
        argv[argv.index("--data-dir") + 1] = str(tmp_path / "tls-data")
        tls = testing.Process(argv, ["mysql"], tmp_path, "query-proxy-tls", env=plain.env)
        try:
            port, tls_port = plain.ports["mysql"], tls.ports["mysql"]
            app, token, database = s.app, s.token, env["BERTH_DB_NAME"]

            def check(out: str) -> None:
                with db.connect(cfg=config.load(env)) as conn, conn.cursor() as cur:
                    cur.execute("SELECT body FROM notes")
                    assert cur.fetchall() == (("hello",),)
                assert "((1,),)" in out or "(1,)" in out, out  # SELECT 1 printed
                # The TLS proxy really refuses plain text: the block did use TLS.
                with pytest.raises(pymysql.OperationalError) as refused:
                    pymysql.connect(
                        host="127.0.0.1",
                        port=tls_port,
                        user=app,
                        password=token,
                        ssl_disabled=True,
                    )
                assert refused.value.args[0] == 1045

            yield Setup(
                env={},
                cwd=tmp_path,
                replacements=[
                    ("port=6033", f"port={tls_port}", "ssl="),
                    ("port=6033", f"port={port}", ""),
                    (
                        'user="dev", password="dev"',
                        f'user="{app}", password="{token}"',
                        "",
                    ),
                    ('database="app_dev"', f'database="{database}"', ""),
                    (
                        "dev:dev@127.0.0.1:6033/app_dev",
                        f"{app}:{token}@127.0.0.1:{port}/{database}",
                        "",
                    ),
                    ('"cert.pem"', json.dumps(str(cert)), ""),
                ],
                check=check,
            )
        finally:
            tls.stop()


def test_query_protocol_page(query_page: Setup, tmp_path: Path) -> None:
    run_page("protocols/query.md", query_page, tmp_path)


# protocols/logs.md: the JSON-lines handler, SysLogHandler over TCP and the OpenTelemetry SDK,
# into one collector with every listener, as a tenant app of its own.


@pytest.fixture
def logs_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    app, token = "docslogs" + secrets.token_hex(4), secrets.token_hex(32)
    (tmp_path / "tenants.toml").write_text(f'[[app]]\nname = "{app}"\ntoken = "{token}"\n')
    (tmp_path / "data").mkdir()
    binary = testing.find_binary("log-collector", bin_dir(request))
    argv = [
        *(str(binary), "--data-dir", str(tmp_path / "data")),
        *("--tenants", str(tmp_path / "tenants.toml")),
        *("--listen-json", "127.0.0.1:0", "--listen-syslog", "127.0.0.1:0"),
        *("--listen-http", "127.0.0.1:0", "--listen-otlp", "127.0.0.1:0"),
        *("--admin-listen", "127.0.0.1:0"),
    ]
    collector = testing.Process(argv, ["json", "syslog-tcp", "http", "otlp"], tmp_path, "logs")
    try:
        ports = collector.ports

        def events() -> list[dict[str, Any]]:
            req = urllib.request.Request(
                f"http://127.0.0.1:{ports['http']}/v1/apps/{app}/events?limit=1000",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(req, timeout=10) as response:
                found: list[dict[str, Any]] = json.load(response)["events"]
            return found

        def check(out: str) -> None:
            got = {(e["source"], e["logger"], e["message"].splitlines()[0]) for e in events()}
            assert ("json", "app.db", "connection lost") in got, got
            assert ("syslog-tcp", "app.db", "lookup failed") in got, got
            assert ("otlp", f"{app}.db", "slow query") in got, got
            assert ("otlp", app, "division failed") in got, got

        yield Setup(
            env={
                "BERTH_LOG_TOKEN": token,
                "BERTH_VERSION": "2.0.1",
                "BERTH_INSTANCE": "docs-0",
            },
            cwd=tmp_path,
            replacements=[
                ('"127.0.0.1", 5170', f'"127.0.0.1", {ports["json"]}', ""),
                ('("127.0.0.1", 5140)', f'("127.0.0.1", {ports["syslog-tcp"]})', ""),
                ("http://127.0.0.1:4317", f"http://127.0.0.1:{ports['otlp']}", ""),
                ("guestbook", app, ""),
            ],
            check=check,
        )
    finally:
        collector.stop()


def test_logs_protocol_page(logs_page: Setup, tmp_path: Path) -> None:
    run_page("protocols/logs.md", logs_page, tmp_path)


PAGES = {
    "python-client.md": test_python_client_page,
    "protocols/query.md": test_query_protocol_page,
    "protocols/logs.md": test_logs_protocol_page,
}


# -- nothing escapes ------------------------------------------------------------------------


def doc_pages() -> list[Path]:
    return [p for p in sorted(DOCS.rglob("*.md")) if EXAMPLES_DIR not in p.parents]


def runs_elsewhere(file: Path) -> bool:
    """Whether another test runs `file`: docs/examples/ (tests/docs/test_api_examples.py) or
    an app under examples/ that has its own tests (scripts/test runs them)."""
    if EXAMPLES_DIR in file.parents:
        return True
    apps = REPO_ROOT / "examples"
    if apps not in file.parents:
        return False
    app = apps / file.relative_to(apps).parts[0]
    return (app / "tests").is_dir() and any((app / "tests").glob("test_*.py"))


def test_the_block_finder_finds_blocks() -> None:
    """The finder itself: the client reference has many blocks, includes among them."""
    blocks = python_blocks(DOCS / "python-client.md")
    assert len(blocks) > 30 and any(b.includes for b in blocks)
    assert all("```" not in b.code for b in blocks)


def escapes(pages: list[Path], docs: Path = DOCS) -> list[str]:
    """The python blocks of `pages` that no test runs, as `page:line: why`."""
    escaped = []
    for page in pages:
        name = str(page.relative_to(docs))
        for block in python_blocks(page):
            where = f"{page}:{block.line}"
            targets = block.includes
            if targets is None:
                if name not in PAGES:
                    escaped.append(f"{where}: an inline python block no test runs")
                continue
            for target in targets:
                file = (page.parent / target.partition(":")[0]).resolve()
                if not runs_elsewhere(file):
                    escaped.append(
                        f"{where}: includes {target}, which is neither in docs/examples/ nor "
                        "in an app under examples/ with its own tests"
                    )
    return escaped


def test_the_rule_catches_stray_blocks(tmp_path: Path) -> None:
    page = tmp_path / "stray.md"
    page.write_text(
        "# A page\n\n```python\nprint(1)\n```\n\n~~~py\nprint(2)\n~~~\n\n"
        "````markdown\n```python\nnot a block of this page\n```\n````\n\n"
        "```python\n{{#include /etc/passwd}}\n```\n\n"
        f"```python\n{{{{#include {EXAMPLES_DIR}/cache_basics.py:get-set}}}}\n```\n\n"
        "```sh\necho not python\n```\n"
    )
    found = escapes([page], tmp_path)
    assert [f.split(": ", 1)[0] for f in found] == [
        f"{page}:3",
        f"{page}:7",
        f"{page}:17",
    ], found


def test_no_python_block_escapes() -> None:
    """A python block is run here (its page is in PAGES) or is an include of a file that
    another test runs."""
    escaped = escapes(doc_pages())
    assert not escaped, (
        "python blocks that no test runs; make them includes of docs/examples/ files (run by "
        "tests/docs/test_api_examples.py) or add the page to PAGES here:\n" + "\n".join(escaped)
    )
