"""The code of the API chapters (docs/api/*.md) is docs/examples/*.py, pulled into the pages
with mdBook's `{{#include file.py:anchor}}`. This runs every example as a program against
private, real services for a fresh app (`berth.testing.Services`: cache, blob, log and query
servers, a database on the test MariaDB), as the platform would run it, and then looks at the
services from outside to see that the example did what it says. An example asserts its own
results; one that exits 0 without touching the services still fails here.

It also checks that every example is shown by some page (no example nobody reads), and that
every `{{#include}}` in docs/ names a file and anchor that exist (no page showing nothing).

    .venv/bin/python -m pytest tests/docs/test_api_examples.py --bin-dir target/release
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from berth import blobs, cache, config, db, testing

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
EXAMPLES_DIR = DOCS / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))
# An app with its own tests (berth.testing), run with pytest as the app's authors would.
APP_TESTS = EXAMPLES_DIR / "app_tests"

# The app's configuration for the examples, as `berth config set` would give it.
EXTRA_ENV = {"PAGE_SIZE": "25", "ADMINS": "ann,bob", "DEBUG": "no"}
SECRETS = {"session_key": "docs-session-key"}

INCLUDE_RE = re.compile(r"\{\{#(?:include|rustdoc_include)\s+([^\s}]+)\s*\}\}")


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Iterator[testing.Services]:
    """Fresh services (and a fresh app, with its own database) for each example."""
    bin_dir = str(request.config.getoption("--bin-dir"))
    with testing.Services(bin_dir=bin_dir) as services:
        services.set_secrets(**SECRETS)
        yield services


def run_example(path: Path, services: testing.Services, cwd: Path) -> str:
    env = {**os.environ, **services.environ(**EXTRA_ENV)}
    done = subprocess.run(
        [sys.executable, str(path)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        f"{path.name} failed (exit {done.returncode})\n"
        f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    )
    assert done.stdout.rstrip().endswith(f"{path.stem}: ok"), (
        f"{path.name} did not reach its end: its last line must be '{path.stem}: ok'\n"
        f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    )
    return done.stdout


# -- what each example leaves behind, seen from outside -------------------------------------


def app_config(services: testing.Services) -> config.Config:
    return config.load(services.environ(**EXTRA_ENV))


def check_config_basics(services: testing.Services, out: str) -> None:
    env = services.environ()
    assert f"{services.app} {env['BERTH_VERSION']} on {env['BERTH_INSTANCE']}" in out, out
    assert "PAGE_SIZE" in out and "many" in out, "the ConfigError for PAGE_SIZE=many is printed"


def check_cache_basics(services: testing.Services, out: str) -> None:
    client = cache.Client.from_config(app_config(services))
    try:
        assert client.get("greeting") == "hello"
        assert client.get("user:42") == {"name": "Ann", "posts": 3}
        assert client.get("views") == 0
        assert client.get("count", namespace="tenant-b") == 2
    finally:
        client.close()


def check_cache_patterns(services: testing.Services, out: str) -> None:
    client = cache.Client.from_config(app_config(services))
    try:
        assert client.get("profile:7") == {"id": 7, "name": "user 7"}
        assert sorted(client.get("doc:1")["tags"]) == [f"t{i}" for i in range(8)]
    finally:
        client.close()


def check_blobs_basics(services: testing.Services, out: str) -> None:
    client = blobs.Client.from_config(app_config(services))
    try:
        assert client.get("photos", "cat.jpg").data == b"meow"
        assert list(client.list_keys("listing-demo")) == [
            "a.txt",
            "photos/1.jpg",
            "photos/2.jpg",
        ]
        assert client.stat("notes", "counter") is None, "the example deleted it"
        assert client.usage().bytes_used > 0
    finally:
        client.close()
    assert f"{services.app} uses " in out


def check_database_basics(services: testing.Services, out: str) -> None:
    with db.connect(cfg=app_config(services)) as conn, conn.cursor() as cur:
        cur.execute("SELECT author, body FROM notes ORDER BY id")
        assert cur.fetchall() == (
            ("ann", "first"),
            ("bob", "second"),
            ("ann", "Grüße, ☃"),
        )
    assert "1044" in out, "the refusal is printed"


def check_logging_basics(services: testing.Services, out: str) -> None:
    events = services.events(logger="shop.orders")
    assert [(e["level"], e["message"]) for e in events] == [
        ("info", "order 1234 paid"),
        ("error", "refund failed"),
    ], events
    assert events[0]["extra"]["amount_cents"] == 1299
    assert events[0]["extra"]["customer"] == "c_42"
    assert "ValueError" in events[1]["exception"]
    assert all(e["version"] == services.environ()["BERTH_VERSION"] for e in events)
    warned = services.events(logger="py.warnings")
    assert len(warned) == 1 and "PER_PAGE" in warned[0]["message"], warned


CHECKS: dict[str, Callable[[testing.Services, str], None]] = {
    "config_basics": check_config_basics,
    "cache_basics": check_cache_basics,
    "cache_patterns": check_cache_patterns,
    "blobs_basics": check_blobs_basics,
    "database_basics": check_database_basics,
    "logging_basics": check_logging_basics,
}


# -- the tests ------------------------------------------------------------------------------


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= len(CHECKS), f"examples missing from {EXAMPLES_DIR}"
    assert {p.stem for p in EXAMPLES} == set(CHECKS), (
        "every docs/examples/*.py needs a check here of what it leaves in the services "
        "(and every check its example)"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_asserts_its_results(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    asserts = sum(isinstance(node, ast.Assert) for node in ast.walk(tree))
    assert asserts >= 3, f"{path.name} checks its results with assert ({asserts} found)"
    assert f'print("{path.stem}: ok")' in path.read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path: Path, services: testing.Services, tmp_path: Path) -> None:
    out = run_example(path, services, tmp_path)
    check = CHECKS.get(path.stem)
    assert check is not None, f"no check for {path.name} in CHECKS"
    check(services, out)


def includes() -> Iterator[tuple[Path, Path, str | None]]:
    """(page, included file, anchor or None) for every include directive under docs/."""
    for page in sorted(DOCS.rglob("*.md")):
        for target in INCLUDE_RE.findall(page.read_text()):
            name, _, selector = target.partition(":")
            anchor = selector if selector and not selector[0].isdigit() else None
            yield page, (page.parent / name).resolve(), anchor


def test_the_app_tests_example_passes(request: pytest.FixtureRequest) -> None:
    env = {
        **os.environ,
        "BERTH_BIN_DIR": str(Path(str(request.config.getoption("--bin-dir"))).resolve()),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(APP_TESTS),
        ],
        cwd=APP_TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr


def test_every_example_is_included_by_a_page() -> None:
    shown = {file for _, file, _ in includes()}
    files = sorted(EXAMPLES_DIR.rglob("*.py"))
    unshown = [p.relative_to(REPO_ROOT) for p in files if p.resolve() not in shown]
    assert not unshown, f"examples no page includes: {unshown}"


def test_every_include_names_a_file_and_anchor_that_exist() -> None:
    bad = []
    for page, file, anchor in includes():
        where = f"{page.relative_to(REPO_ROOT)}: {file}"
        if not file.is_file():
            bad.append(f"{where} does not exist")
        elif anchor is not None and f"ANCHOR: {anchor}\n" not in file.read_text():
            bad.append(f"{where} has no '# ANCHOR: {anchor}'")
    assert not bad, "\n".join(bad)
