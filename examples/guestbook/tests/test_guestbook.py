"""The guestbook end to end: every Berth API it uses, against the real services."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from types import ModuleType

import pytest
from berth import cache, testing
from conftest import APP_DIR, MODERATOR_KEY

# The smallest valid PNG (1x1, transparent).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def sign(
    client: testing.Client, name: str, message: str, **files: tuple[str, bytes, str]
) -> testing.Response:
    return client.post("/entries", form={"name": name, "message": message}, files=files or None)


def test_home_page_shows_the_configured_title(client: testing.Client) -> None:
    response = client.get("/")
    assert response.status == 200
    assert "<h1>Test book</h1>" in response.text


def test_an_entry_is_stored_and_shown(client: testing.Client) -> None:
    response = client.post("/entries", form={"name": "Ada", "message": "Hello <there>"})
    assert response.status == 303
    entry = response.header("Location")
    assert entry is not None and entry.startswith("/#entry-")
    page = client.get("/").text
    assert "<b>Ada</b>" in page and "Hello &lt;there&gt;" in page


def test_the_entry_list_is_cached_and_invalidated(
    client: testing.Client, guestbook: ModuleType
) -> None:
    client.get("/")
    assert cache.get(guestbook.ENTRIES_KEY) is not None
    client.post("/entries", form={"name": "Bob", "message": "invalidate"})
    assert cache.get(guestbook.ENTRIES_KEY) is None
    assert "invalidate" in client.get("/").text


def test_visits_are_counted_in_the_cache(client: testing.Client) -> None:
    first = int(re.search(r"(\d+) visits", client.get("/").text).group(1))  # type: ignore[union-attr]
    second = int(re.search(r"(\d+) visits", client.get("/").text).group(1))  # type: ignore[union-attr]
    assert second == first + 1


def test_a_picture_is_served_through_a_signed_url(client: testing.Client) -> None:
    response = sign(client, "Cy", "with a picture", picture=("dot.png", PNG, "image/png"))
    assert response.status == 303
    page = client.get("/").text
    urls = re.findall(r'<img src="([^"]+)" alt="picture by Cy"', page)
    assert urls, page
    url = urls[0].replace("&amp;", "&")
    with urllib.request.urlopen(url, timeout=10) as r:  # no token: the signature is enough
        assert r.read() == PNG
    tampered = url.replace("signature=", "signature=0")
    assert tampered != url
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(tampered, timeout=10)
    assert refused.value.code in (401, 403)


def test_pictures_of_other_types_are_refused(client: testing.Client) -> None:
    response = sign(client, "Eve", "not a picture", picture=("x.sh", b"#!/bin/sh\n", "text/x-sh"))
    assert response.status == 415


def test_the_blob_quota_is_reported_and_enforced(client: testing.Client) -> None:
    stats = client.get("/stats").json()
    assert stats["blob_quota"] == 8 << 20
    big = PNG + bytes(4 << 20)
    assert sign(client, "Fay", "one", picture=("a.png", big, "image/png")).status == 303
    other = PNG + bytes(4 << 20) + b"different"
    assert sign(client, "Fay", "two", picture=("b.png", other, "image/png")).status == 507


def test_mounted_under_a_prefix_its_links_keep_the_prefix(guestbook: ModuleType) -> None:
    client = testing.Client(guestbook.application, script_name="/guestbook")
    assert 'action="/guestbook/entries"' in client.get("/").text
    response = client.post("/entries", form={"name": "Pre", "message": "fix"})
    location = response.header("Location")
    assert location is not None and location.startswith("/guestbook/#entry-")


def test_bad_input_gets_clear_errors(client: testing.Client) -> None:
    assert client.post("/entries", form={"name": "", "message": "x"}).status == 400
    assert client.post("/entries", body=b"{}", content_type="application/json").status == 415
    assert client.get("/nope").status == 404


def test_the_moderator_key_is_a_secret(client: testing.Client) -> None:
    location = client.post("/entries", form={"name": "Spam", "message": "buy now"}).header(
        "Location"
    )
    assert location is not None
    entry_id = location.rsplit("-", 1)[1]
    wrong = client.post(f"/entries/{entry_id}/delete", form={"key": "guess"})
    assert wrong.status == 403
    right = client.post(f"/entries/{entry_id}/delete", form={"key": MODERATOR_KEY})
    assert right.status == 303
    assert "buy now" not in client.get("/").text


def test_served_by_the_runtime_with_logs_and_health(services: testing.Services) -> None:
    env = services.environ(GUESTBOOK_TITLE="Served book")
    with testing.serve("main:application", env, cwd=APP_DIR, processes=2, threads=2) as server:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
            assert r.status == 200
        form = urllib.parse.urlencode({"name": "Runtime", "message": "logged"}).encode()
        request = urllib.request.Request(server.url + "/entries", data=form, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:  # follows the 303
            assert "Served book" in r.read().decode()
        deadline = time.monotonic() + 10
        while not (events := services.events(logger="guestbook", grep="by Runtime")):
            assert time.monotonic() < deadline, "the app's log record never arrived"
            time.sleep(0.1)
        assert events[0]["extra"]["chars"] == len("logged")
        assert events[0]["version"] == "0.0.0-test"


def test_the_release_command_creates_the_schema(services: testing.Services) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schema"],
        cwd=APP_DIR,
        env={**services.environ(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "schema is up to date" in result.stdout


def test_it_refuses_to_start_without_its_secret(
    services: testing.Services, tmp_path: object
) -> None:
    env = services.environ(BERTH_SECRETS_FILE="/nonexistent/secrets.toml")
    result = subprocess.run(
        [sys.executable, "-m", "berth.runtime", "check", "main:application"],
        cwd=APP_DIR,
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs configuration" in result.stderr
    assert "secrets file /nonexistent/secrets.toml" in result.stderr
