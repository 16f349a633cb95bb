"""The pastebin end to end: Bottle's routing, templates and forms over every Berth API it
uses, against the real services."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import urllib.parse
import urllib.request
from types import ModuleType

import pytest
from berth import blobs, cache, db, testing
from conftest import APP_DIR, import_app, release


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def paste(client: testing.Client, text: str, title: str = "") -> str:
    """POSTs a paste as the form does; its path, from the redirect."""
    response = client.post("/pastes", form={"title": title, "text": text})
    assert response.status == 303, response.text
    location = response.header("Location")
    assert location is not None
    return urllib.parse.urlsplit(location).path


def unique(what: str = "text") -> str:
    return f"{what} {secrets.token_hex(8)}\nsecond line <b>not bold</b>\n"


def test_home_page_has_the_configured_title_and_the_form(client: testing.Client) -> None:
    response = client.get("/")
    assert response.status == 200
    assert response.header("Content-Type") == "text/html; charset=UTF-8"
    assert '<h1><a href="/">Test bin</a></h1>' in response.text
    assert '<form method="post" action="/pastes">' in response.text


def test_a_paste_is_stored_as_a_blob_named_by_its_content(client: testing.Client) -> None:
    text = unique()
    path = paste(client, text, title="My <paste>")
    assert path == f"/p/{digest(text)}"
    assert blobs.read(f"sha256:{digest(text)}") == text.encode()
    page = client.get(path)
    assert page.status == 200
    assert "<title>My &lt;paste&gt; · Test bin</title>" in page.text
    assert "second line &lt;b&gt;not bold&lt;/b&gt;" in page.text  # escaped by the template
    raw = client.get(path + "/raw")
    assert raw.status == 200
    assert raw.header("Content-Type") == "text/plain; charset=utf-8"
    assert raw.header("X-Content-Type-Options") == "nosniff"
    assert raw.text == text


def test_the_same_text_twice_is_one_paste_and_keeps_its_first_title(
    client: testing.Client, caplog: pytest.LogCaptureFixture
) -> None:
    text = unique()
    with caplog.at_level(logging.INFO, logger="pastebin"):
        first = paste(client, text, title="first")
        again = paste(client, text, title="second")
    assert first == again
    added = [r for r in caplog.records if r.name == "pastebin" and "new paste" in r.message]
    assert len(added) == 1 and added[0].__dict__["title"] == "first"
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT title, bytes, line_count FROM pastes WHERE id = %s", (digest(text),))
        assert cur.fetchall() == (("first", len(text.encode()), 2),)


def test_lines_a_browser_sends_with_crlf_are_stored_with_lf(client: testing.Client) -> None:
    text = unique().replace("\n", "\r\n")
    path = paste(client, text)
    assert path == f"/p/{digest(text.replace(chr(13) + chr(10), chr(10)))}"
    assert "\r" not in client.get(path + "/raw").text


def test_utf8_text_and_titles_survive(client: testing.Client) -> None:
    text = unique("Grüße, 世界 🐍")
    path = paste(client, text, title="Ünïcode")
    assert client.get(path + "/raw").text == text
    assert "Ünïcode" in client.get(path).text


def test_the_recent_list_is_cached_and_invalidated(
    client: testing.Client, pastebin: ModuleType
) -> None:
    client.get("/")
    assert cache.get(pastebin.RECENT_KEY) is not None
    title = f"listed {secrets.token_hex(4)}"
    path = paste(client, unique(), title=title)
    assert cache.get(pastebin.RECENT_KEY) is None
    home = client.get("/").text
    assert f'<a href="{path}">{title}</a>' in home


def test_a_paste_is_read_from_the_cache_once_read(
    client: testing.Client, caplog: pytest.LogCaptureFixture
) -> None:
    text = unique()
    path = paste(client, text)
    paste_id = digest(text)
    assert client.get(path).status == 200
    # With its blob gone, the paste is still served: from the cache.
    assert blobs.delete(f"sha256:{paste_id}")
    assert client.get(path + "/raw").text == text
    # Evicted too: the app cannot read it any more; the failure is logged and answered 500.
    cache.delete(f"paste:{paste_id}")
    with caplog.at_level(logging.ERROR, logger="pastebin"):
        broken = client.get(path)
    assert broken.status == 500
    assert "Something broke" in broken.text
    record = next(r for r in caplog.records if r.name == "pastebin")
    assert record.getMessage() == f"GET {path} failed"
    assert record.exc_info is not None and isinstance(record.exc_info[1], blobs.NotFound)


def test_views_are_counted_in_the_cache(client: testing.Client) -> None:
    path = paste(client, unique())
    assert "· 1 view\n" in client.get(path).text
    assert "· 2 views" in client.get(path).text


def test_bad_requests_get_clear_errors(client: testing.Client) -> None:
    assert client.post("/pastes", form={"text": "  \n"}).status == 400
    too_long = client.post("/pastes", form={"text": "x" * ((64 << 10) + 1)})
    assert too_long.status == 413 and "at most 64 KiB" in too_long.text
    assert client.post("/pastes", form={"text": "x" * (64 << 10)}).status == 303
    assert client.post("/pastes", form={"text": "ok", "title": "t" * 101}).status == 400
    huge = client.post("/pastes", form={"text": "€" * (40 << 10)})  # 120 KiB, 360 KiB encoded
    assert huge.status == 413
    assert client.get(f"/p/{'0' * 64}").status == 404
    assert client.get("/p/not-a-paste").status == 404
    assert client.get("/pastes").status == 405


def test_mounted_under_a_prefix_its_links_keep_the_prefix(pastebin: ModuleType) -> None:
    client = testing.Client(pastebin.app, script_name="/bin")
    home = client.get("/").text
    assert 'action="/bin/pastes"' in home and 'href="/bin/"' in home
    text = unique()
    response = client.post("/pastes", form={"text": text})
    assert response.header("Location") == f"http://localhost/bin/p/{digest(text)}"
    assert f'href="/bin/p/{digest(text)}/raw"' in client.get(f"/p/{digest(text)}").text


def test_the_redirect_names_the_public_url_the_router_forwards(client: testing.Client) -> None:
    text = unique()
    response = client.post(
        "/pastes",
        form={"text": text},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bin.example.org"},
    )
    assert response.header("Location") == f"https://bin.example.org/p/{digest(text)}"


def test_health_and_head(client: testing.Client) -> None:
    health = client.get("/healthz")
    assert (health.status, health.text) == (200, "ok\n")
    head = client.request("HEAD", "/")
    assert head.status == 200 and head.body == b""


def test_served_by_the_runtime_with_logs(services: testing.Services) -> None:
    env = services.environ(PASTEBIN_TITLE="Served bin")
    with testing.serve("main:app", env, cwd=APP_DIR, processes=2, threads=2) as server:
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
            assert r.status == 200
        text = unique("served")
        form = urllib.parse.urlencode({"title": "from the runtime", "text": text}).encode()
        request = urllib.request.Request(server.url + "/pastes", data=form, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:  # follows the 303
            assert r.url == f"{server.url}/p/{digest(text)}"
            page = r.read().decode()
        assert "Served bin" in page and "from the runtime" in page
        deadline = time.monotonic() + 10
        while not (events := services.events(logger="pastebin", grep="from the runtime")):
            assert time.monotonic() < deadline, "the app's log record never arrived"
            time.sleep(0.1)
        assert events[0]["extra"]["paste"] == digest(text)
        assert events[0]["extra"]["bytes"] == len(text.encode())
        assert events[0]["version"] == "0.0.0-test"


def test_the_release_command_is_idempotent(services: testing.Services) -> None:
    done = release(services)  # the session fixture ran it once already
    assert done.returncode == 0, done.stderr
    assert "schema is up to date" in done.stdout


def test_a_full_blob_quota_is_answered_507() -> None:
    with testing.Services(limits={"blob_bytes": '"200KiB"'}, logs=False) as small:
        assert release(small).returncode == 0
        with small.use():
            client = testing.Client(import_app().app)
            statuses = [
                client.post("/pastes", form={"text": f"{i}" * (60 << 10)}).status for i in range(4)
            ]
    assert statuses == [303, 303, 303, 507]
