"""The app's tests: in-process through the WSGI client, and served by the real runtime."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

from berth import testing

APP_DIR = Path(__file__).resolve().parent


# ANCHOR: in-process
def test_home(services: testing.Services) -> None:
    with services.use(GREETING_TITLE="Test"):  # BERTH_* set, berth.config reloaded
        import main

        client = testing.Client(main.application)
        first, second = client.get("/"), client.get("/")
    assert first.status == 200 and first.text == "Test: visit 1\n"
    assert second.text == "Test: visit 2\n"  # counted in the app's real cache


# ANCHOR_END: in-process


# ANCHOR: served
def test_served(services: testing.Services) -> None:
    with testing.serve("main:application", services.environ(), cwd=APP_DIR) as server:
        with urllib.request.urlopen(server.url + "/hello") as response:
            assert response.status == 200
        deadline = time.monotonic() + 10  # the runtime ships logs in the background
        while not services.events(grep="visit") and time.monotonic() < deadline:
            time.sleep(0.1)
    events = services.events(logger="main")  # the app's stored log events
    assert [e["extra"]["path"] for e in events] == ["/hello"], events


# ANCHOR_END: served
