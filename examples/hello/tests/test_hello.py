"""The hello app through berth.testing's in-process WSGI client."""

from __future__ import annotations

import sys
from pathlib import Path

from berth import testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import main


def test_it_says_hello() -> None:
    client = testing.Client(main.app)
    r = client.get("/")
    assert r.status == 200
    assert r.text.startswith("Hello from Berth!")


def test_health_and_unknown_paths() -> None:
    client = testing.Client(main.app)
    assert client.get("/healthz").status == 200
    assert client.get("/nope").status == 404
