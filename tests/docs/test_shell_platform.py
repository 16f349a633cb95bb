"""The ```sh and ```console samples of the pages that drive a running Berth (deploying.md,
cli.md, examples.md, troubleshooting.md, and the app restart of ops/upgrades.md) run against
the whole platform (tests/deploy/platform.py: berthd, every service, the router, real
processes on free ports), one platform per page.

Each page runs from a directory laid out like the checkout: `target/release` (the binaries
under test), `.berth/berthd/operator-token` (the platform's), `.venv`, and `examples/` holding
copies of the example apps. An app's name on the page is replaced by a name of the same length
made for the test (MariaDB, where apps get their databases, is shared with other tests), and the
copies carry it in their `berth.toml`. The versions a page deploys from `../guestbook-X.Y.Z`
are copies of the guestbook with that version (and, where the page says so, a health check
that fails). The page's addresses (`127.0.0.1:7100`, `:8080`) become the platform's.

What differs from run to run in a promised output is matched loosely: times, digests and
token ids, an instance's pid, memory and uptime. After a page has run, its effects are read
back from berthd (`--json`).

How a page runs and what it promises: tests/docs/shell_pages.py.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy.platform import Platform, pick_ports, running, runtime_python

from .shell_pages import REPO_ROOT, Outputs, Setup, bin_dir, run_page, where_shown

# What differs from run to run in what berth prints (applied to the promised outputs).
VARYING = [
    (r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z", "…"),  # a time
    (r"\b[0-9a-f]{12}\b", "…"),  # a digest's or a token's id
    (r"\b[0-9a-f]{64}\b", "…"),  # a token, a token's hash
    (r"\b[0-9a-f]{8}…", "…"),  # a token, shortened
    (r"\*[0-9A-F]{40}\b", "…"),  # a token's MySQL hash
    (r"sha256:[0-9a-f]{8}…", "sha256:…"),
    # an instance row: pid, memory, restarts, uptime
    (
        r"(running|stopped) +(healthy|unknown|unhealthy) +\S+ +\S+( MiB)? +\d+ +\S+",
        r"\1  \2  …",
    ),
]

#: The version of the guestbook whose /healthz answers 500: from the start, or after its
#: fifth answer (it passes the deploy's checks, then fails in the watch window).
BROKEN_HEALTH = """

_healthy = application
_answers = [0]


def application(environ, start_response):  # type: ignore[no-untyped-def]
    if environ.get("PATH_INFO") == "/healthz":
        _answers[0] += 1
        if _answers[0] > {after}:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"broken"]
    return _healthy(environ, start_response)
"""


# answers URL COMMAND...: a server a page runs in the foreground; it must answer URL with 200
# (the body is its output), then it is stopped with SIGTERM and must exit 0.
ANSWERS = r"""
answers() {
    local url=$1; shift
    "$@" >answers.out 2>&1 &
    local pid=$!
    curl -fsS --retry 60 --retry-connrefused --retry-delay 1 --max-time 5 "$url" ||
        { kill $pid; cat answers.out >&2; return 1; }
    kill -TERM $pid && wait $pid
}
"""


def same_length_name(prefix: str, like: str) -> str:
    """A fresh app name as long as `like`, so the page's columns stay as wide."""
    name = prefix + secrets.token_hex(8)
    return name[: len(like)]


class Site:
    """The platform, and the directory a page runs in."""

    def __init__(self, platform: Platform, work: Path) -> None:
        self.platform, self.work = platform, work

    def example(
        self,
        example: str,
        name: str,
        version: str | None = None,
        where: Path | None = None,
        health_after: int | None = None,
        tests: bool = False,
    ) -> Path:
        """A copy of examples/EXAMPLE named NAME (in examples/, or at `where`), with its tests
        if asked."""
        dest = where or self.work / "examples" / name
        left_out = ["__pycache__", ".pytest_cache", *([] if tests else ["tests"])]
        shutil.copytree(
            REPO_ROOT / "examples" / example,
            dest,
            ignore=shutil.ignore_patterns(*left_out),
        )
        manifest = dest / "berth.toml"
        text = re.sub(
            r'^name = ".*"$',
            f'name = "{name}"',
            manifest.read_text(),
            flags=re.MULTILINE,
        )
        if version is not None:
            text = re.sub(
                r'^version = ".*"$', f'version = "{version}"', text, flags=re.MULTILINE
            )
        manifest.write_text(text)
        if health_after is not None:
            with (dest / "main.py").open("a") as main:
                main.write(BROKEN_HEALTH.replace("{after}", str(health_after)))
        self.platform.apps.append(name)  # destroyed with the platform
        return dest

    def berth(self, *args: str, stdin: str | None = None) -> Any:
        return self.platform.berth(*args, stdin=stdin)

    def setup(
        self,
        page: str,
        app_names: dict[str, str],
        check: Callable[[Outputs], None],
        replacements: list[tuple[str, str, str]] | None = None,
        on_path: bool = True,
        **kw: Any,
    ) -> Setup:
        """The page's setup: its own replacements, then the app names, then the addresses
        where the page shows them; `berth` is on the PATH unless the page says how to reach
        it."""
        ports = self.platform.ports
        names = [(old, new, "") for old, new in app_names.items()]
        specific = [*(replacements or []), *names]
        addresses = [
            ("127.0.0.1:7100", f"127.0.0.1:{ports['berthd']}"),
            (".localhost:8080", f".localhost:{ports['router']}"),
            ("127.0.0.1:8080", f"127.0.0.1:{ports['router']}"),
        ]
        path = os.environ.get("PATH", "")
        env = {"PATH": f"{self.platform.bin}:{path}" if on_path else path}
        # where `berth logs` finds the collector (its default, 127.0.0.1:8099, on a machine
        # that runs Berth)
        env["BERTH_LOGS_URL"] = f"http://127.0.0.1:{ports['logs_http']}"
        # the reader's shell talks to a running Berth as an operator (a page that says how
        # sets them itself)
        env.update(
            (k, v) for k, v in self.platform.env().items() if k.startswith("BERTH_")
        )
        return Setup(
            env=env,
            cwd=self.work,
            outputs=VARYING,
            check=check,
            timeout=600,
            replacements=[*specific, *where_shown(page, specific, addresses)],
            **kw,
        )


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    runtime_python()
    bins = bin_dir(request)
    urls = ("http://{app}.localhost:{router}/", "http://127.0.0.1:{router}/{app}/")
    with running(
        bins, "berth-shell-docs-", watch_window="30s", public_urls=urls
    ) as platform:
        work = tmp_path / "checkout"
        (work / "target").mkdir(parents=True)
        (work / "target" / "release").symlink_to(bins)
        (work / ".berth" / "berthd").mkdir(parents=True)
        (work / ".berth" / "berthd" / "operator-token").symlink_to(
            platform.tmp / "berthd" / "operator-token"
        )
        for linked in (".venv", "python-client"):
            (work / linked).symlink_to(REPO_ROOT / linked)
        yield Site(platform, work)


def releases(site: Site, app: str) -> list[tuple[str, str, str]]:
    """(release, version, state) of every release of `app`, newest first."""
    return [(r["id"], r["version"], r["state"]) for r in site.platform.releases(app)]


# -- deploy/deploying.md: one app's life, from its creation -----------------------------------


@pytest.mark.timeout(900)
def test_deploying_page(site: Site) -> None:
    app = same_length_name("gbdep", "guestbook")
    site.example("guestbook", app)
    parent = site.work.parent
    site.example("guestbook", app, "1.1.0", parent / f"{app}-1.1.0")
    site.example("guestbook", app, "1.3.0", parent / f"{app}-1.3.0")
    broken = site.example(
        "guestbook", app, "3.0.0", parent / f"{app}-3.0.0", health_after=5
    )

    def check(out: Outputs) -> None:
        live = site.berth("status", app)
        assert live["scale"] == 2, live
        config = {c["key"]: c for c in site.berth("config", "list", app)}
        assert (
            config["GUESTBOOK_TITLE"]["value"] == f"Our {app}" and "MODE" not in config
        )
        assert config["moderator_key"]["secret"], config
        assert releases(site, app)[0][1:] == ("1.1.0", "live"), releases(site, app)

    setup = site.setup(
        "deploy/deploying.md",
        {"guestbook": app},
        check,
        [
            (
                "berth logs guestbook --tail",
                "timeout 3 target/release/berth logs guestbook --tail",
                "",
            )
        ],
        on_path=False,
        before={
            # a new version goes bad after the switch; the watch window rolls it back
            f"releases {app} -n 3": f"berth deploy {broken} && until berth releases {app} -n 1 "
            f"| grep -q 'automatic rollback' && berth status {app} | grep -q '^activity  -$'; "
            "do sleep 0.2; done",
        },
        statuses={"--tail": 124, f"scale {app} 3": 1, f"get {app} moderator_key": 1},
    )
    run_page("deploy/deploying.md", setup)


# -- cli.md: an operator's app, then a developer's ---------------------------------------------


@pytest.mark.timeout(900)
def test_cli_page(site: Site) -> None:
    shop, app = same_length_name("sh", "shop"), same_length_name("gbcli", "guestbook")
    site.platform.apps.append(shop)
    site.example("guestbook", app)
    parent = site.work.parent
    site.example("guestbook", app, "1.2.0", parent / f"{app}-1.2.0")
    broken = site.example(
        "guestbook", app, "2.0.3", parent / f"{app}-2.0.3", health_after=0
    )
    manifest = broken / "berth.toml"
    manifest.write_text(
        manifest.read_text().replace("[health]\n", '[health]\nstart_timeout = "5s"\n')
    )

    def check(out: Outputs) -> None:
        assert shop not in [a["name"] for a in site.berth("apps", "list")], "destroyed"
        status = site.berth("status", app)
        assert status["scale"] == 2, status
        config = {c["key"]: c for c in site.berth("config", "list", app)}
        assert (
            config["GUESTBOOK_TITLE"]["value"] == f"Our {app}" and "MODE" not in config
        )
        assert config["moderator_key"]["secret"] and config["DB_PASSWORD"]["secret"], (
            config
        )

    replacements = [
        # the name typed when berth asks for it again
        (
            (
                "$ berth apps destroy shop                    # asks for the name again (or "
                "--confirm shop)\nThis removes app shop and its tokens at once. Type its name to "
                "confirm: shop\n"
            ),
            "$ berth apps destroy shop --confirm shop\n",
            "",
        ),
        # the revoked token is the first one, the one `apps create` printed
        (
            "revoke shop 4357f5c619e5",
            (
                "revoke shop $(berth tokens list shop --json | "
                'sed -n \'s/.*"id": *"\\([0-9a-f]*\\)".*/\\1/p\' | head -1)'
            ),
            "",
        ),
        # the value typed at the prompt comes on stdin, as berth reads it from a pipe
        (
            (
                "$ berth config set guestbook --secret moderator_key       # prompts, without echo\n"
                "moderator_key:\n"
            ),
            "$ openssl rand -hex 32 | berth config set guestbook --secret moderator_key\n",
            "",
        ),
    ]
    setup = site.setup(
        "cli.md",
        {"guestbook": app, "shop": shop},
        check,
        replacements,
        before={
            # the developer's app, made by an operator, with the secret it needs
            "berth validate": f"berth apps create {app} && openssl rand -hex 32 | "
            f"berth config set {app} --secret moderator_key",
        },
        statuses={f"{app}-2.0.3": 1, f"get {app} moderator_key": 1, "=hunter2": 2},
    )
    setup.env.update(KEY=secrets.token_hex(16), DB_PASSWORD=secrets.token_hex(16))
    # `tokens list` sorts by id, and ids are random
    setup.outputs = [*VARYING, (r"^… +… +(first token|ci)$", "…")]
    run_page("cli.md", setup)


# -- python-client.md: the guestbook's environment, the runtime, berth.testing ---------------


@pytest.mark.timeout(600)
def test_python_client_page(site: Site) -> None:
    app = same_length_name("gbpyc", "guestbook")
    site.berth("apps", "create", app)
    site.berth("config", "set", app, "--secret", "moderator_key", stdin="dev-key\n")
    site.platform.deploy(
        site.example("guestbook", app, tests=True)
    )  # as scripts/run does
    ports, port = site.platform.ports, pick_ports(("serve",))["serve"]

    def check(out: Outputs) -> None:
        assert out.of("runtime check") == "main:application: ok\n", out.of(
            "runtime check"
        )
        assert out.of("runtime serve").strip() == "ok", out.of("runtime serve")
        assert re.search(r"\b\d+ passed", out.of("python-client && ")), out.of(
            "client &&"
        )
        assert re.search(r"\b\d+ passed", out.of("../../.venv")), out.of("../../.venv")

    replacements = [
        ("$PWD/.berth/berthd", str(site.platform.tmp / "berthd"), ""),
        (
            "--data-dir /tmp/berth-blobs &",
            (
                "--data-dir berth-blobs --listen 127.0.0.1:0 "
                "--admin-listen 127.0.0.1:0 >blobs.out & BLOB_PORT=$(wait_listen blobs.out http)"
            ),
            "",
        ),
        ("127.0.0.1:8098", "127.0.0.1:$BLOB_PORT", "berth-blobs"),
        ("127.0.0.1:8098", f"127.0.0.1:{ports['blob']}", "BERTH_DB_HOST"),
        ("BERTH_DB_PORT=6033", f"BERTH_DB_PORT={ports['query']}", ""),
        ("127.0.0.1:5170", f"127.0.0.1:{ports['logs']}", ""),
        ("127.0.0.1:11211", f"127.0.0.1:{ports['cache']}", ""),
        (
            "python -m berth.runtime serve",
            "answers http://127.0.0.1:8080/healthz python -m berth.runtime serve",
            "",
        ),
        ("127.0.0.1:8080", f"127.0.0.1:{port}", "berth.runtime serve"),
        # scripts/test runs both suites whole: here the tests of the configuration, and the
        # guestbook's
        (
            "pytest tests/ --bin-dir",
            "pytest -q -p no:cacheprovider tests/test_config.py --bin-dir",
            "",
        ),
        ("pytest tests/)", "pytest -q -p no:cacheprovider tests/)", ""),
    ]
    setup = site.setup("python-client.md", {"guestbook": app}, check, replacements)
    setup.env.update(
        BERTH_BIN_DIR=str(site.platform.bin),
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}:{setup.env['PATH']}",
    )
    setup.prelude = ANSWERS
    run_page("python-client.md", setup)


# -- examples.md, troubleshooting.md, ops/upgrades.md: a deploy or two ------------------------


@pytest.mark.timeout(600)
def test_examples_page(site: Site) -> None:
    hello, bottle = (
        same_length_name("hidoc", "hello"),
        same_length_name("btdoc", "bottle"),
    )
    site.example("hello", hello)
    site.example("bottle", bottle)

    def check(out: Outputs) -> None:
        for app in (hello, bottle):
            assert releases(site, app)[0][2] == "live", releases(site, app)
            assert site.platform.get(app)[0] == 200, site.platform.get(app)

    run_page(
        "examples.md",
        site.setup("examples.md", {"hello": hello, "bottle": bottle}, check),
    )


@pytest.mark.timeout(600)
def test_troubleshooting_page(site: Site) -> None:
    shop = same_length_name("tr", "shop")
    site.berth("apps", "create", shop)
    live = site.example("hello", shop, "2.1.0", site.work.parent / "live")
    site.platform.deploy(live)
    site.example("hello", shop, "2.0.0", site.work / shop)

    def check(out: Outputs) -> None:
        assert releases(site, shop) == [("v1", "2.1.0", "live")], releases(site, shop)

    setup = site.setup(
        "troubleshooting.md",
        {"shop": shop},
        check,
        [
            ("$ berth deploy .", "$ cd shop && berth deploy .", "")
        ],  # the app's directory
        statuses={"berth deploy .": 1},
    )
    run_page("troubleshooting.md", setup)


@pytest.mark.timeout(600)
def test_upgrades_page_app_restart(site: Site) -> None:
    app = same_length_name("gbupg", "guestbook")
    site.berth("apps", "create", app)
    site.platform.deploy(site.example("hello", app))
    before = {i["id"] for i in site.berth("status", app)["instances"]}

    def check(out: Outputs) -> None:
        instances = site.berth("status", app)["instances"]
        live = {i["id"] for i in instances if i["role"] == "live"}
        assert live and not live & before, instances  # fresh instances serve

    run_page(
        "ops/upgrades.md",
        site.setup("ops/upgrades.md", {"guestbook": app}, check),
        part="berth restart guestbook",
    )


RUNS = {
    "deploy/deploying.md": test_deploying_page,
    "cli.md": test_cli_page,
    "examples.md": test_examples_page,
    "troubleshooting.md": test_troubleshooting_page,
    "python-client.md": test_python_client_page,
}
RUNS_PARTS = {
    ("ops/upgrades.md", "berth restart guestbook"): test_upgrades_page_app_restart
}
