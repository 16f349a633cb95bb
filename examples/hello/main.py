"""The smallest Berth app: a WSGI callable that says hello, and a health check."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        body = b"ok\n"
    elif path == "/":
        version = os.environ.get("BERTH_VERSION", "dev")
        body = f"Hello from Berth! (version {version})\n".encode()
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]
