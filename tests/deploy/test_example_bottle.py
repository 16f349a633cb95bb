"""examples/bottle (a pastebin on a vendored Bottle) deploys with one command, as it is: the
real `berth` CLI and berthd run its release command, start it under berth-shim in the
sandbox, and the real berth-router serves it with every service it uses.
"""

from __future__ import annotations

import hashlib
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .platform import Platform, eventually, running

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bottle"
APP = "bottle"  # the example's own name (berth.toml); no other test uses it


@pytest.fixture(scope="module")
def platform(pytestconfig: pytest.Config) -> Iterator[Platform]:
    with running(Path(pytestconfig.getoption("--bin-dir"))) as p:
        yield p


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post_paste(p: Platform, title: str, text: str) -> tuple[int, str]:
    """POSTs the form through the router, as a browser on bottle.localhost would; the status
    and the Location it answers."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{p.ports['router']}/pastes",
        data=urllib.parse.urlencode({"title": title, "text": text}).encode(),
        headers={"Host": f"{APP}.localhost"},
        method="POST",
    )
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as r:
            return r.status, r.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


def logs(p: Platform, token: str) -> str:
    env = p.env(token)
    env["BERTH_LOGS_URL"] = f"http://127.0.0.1:{p.ports['logs_http']}"
    done = subprocess.run(
        [str(p.bin / "berth"), "logs", APP, "-n", "200"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


def test_the_bottle_example_deploys_with_one_command_and_serves_pastes(platform: Platform) -> None:
    p = platform
    token = p.create_app(APP)
    done = p.deploy(EXAMPLE)
    assert "Released v1" in done.stdout, done.stdout
    assert p.status(APP)["live"]["version"] == "1.0.0"

    # The home page, through the router, with the title from the manifest's [env].
    status, home = p.get(APP, "/")
    assert status == 200, home
    assert '<h1><a href="/">Bottle pastebin</a></h1>' in home and "<form" in home
    assert p.get(APP, "/healthz") == (200, "ok\n")

    # A paste: a blob named by its content and a row in the table the release command made.
    text = "Hello from a vendored Bottle\n<script>alert(1)</script>\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    status, location = post_paste(p, "deployed", text)
    assert status == 303, location
    assert location == f"http://{APP}.localhost/p/{digest}"
    path = urllib.parse.urlsplit(location).path
    status, page = p.get(APP, path)
    assert status == 200, page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "· 1 view\n" in page
    assert p.get(APP, path + "/raw") == (200, text)
    assert f'<a href="{path}">deployed</a>' in p.get(APP, "/")[1]
    # The same text again is the same paste.
    assert post_paste(p, "again", text) == (303, location)
    assert p.get(APP, f"/p/{'0' * 64}")[0] == 404

    # Its log record, with the structured fields, reaches `berth logs`.
    eventually(lambda: "new paste" in logs(p, token), "the app's log record in berth logs")
    assert "deployed" in logs(p, token)
