"""A small app to show `berth.testing`: it greets, counts visits in the cache and logs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from berth import cache, config

TITLE = config.get("GREETING_TITLE", "Hello")
SIGNING_KEY = config.require_secret("signing_key")  # stops the app at import when missing
log = logging.getLogger(__name__)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    visits = cache.incr("visits", initial_value=0)
    log.info("visit %s", visits, extra={"path": environ.get("PATH_INFO", "/")})
    body = f"{TITLE}: visit {visits}\n".encode()
    start_response(
        "200 OK",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]
