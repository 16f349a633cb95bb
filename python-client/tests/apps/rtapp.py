"""A WSGI app for the runtime tests: each path tries one thing and answers what happened."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("rtapp")


def _try(action: Callable[[], object]) -> str:
    try:
        return f"ok {action()}"
    except Exception as e:  # the test reads the error's type and message
        return f"{type(e).__name__}: {e}"


def _write_scratch() -> str:
    path = os.path.join(os.environ["BERTH_SCRATCH_DIR"], "note.txt")
    with open(path, "w") as f:
        f.write("x")
    return path


def _tempfile() -> str:
    with tempfile.NamedTemporaryFile() as f:
        return f.name


ACTIONS: dict[str, Callable[[], object]] = {
    "/pid": os.getpid,
    "/log": lambda: log.warning("hello from %s", os.getpid()),
    "/stream-handler": lambda: logging.getLogger("x").addHandler(logging.StreamHandler()),
    "/null-handler": lambda: logging.getLogger("x").addHandler(logging.NullHandler()),
    "/write-outside": lambda: open(os.environ["OUTSIDE_FILE"], "w").close(),
    "/remove-outside": lambda: os.remove(os.environ["OUTSIDE_FILE"]),
    "/read-outside": lambda: open(os.environ["OUTSIDE_FILE"]).read(),  # noqa: SIM115
    "/write-scratch": _write_scratch,
    "/tempfile": _tempfile,
}


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/where":
        start_response("200 OK", [("Content-Type", "text/plain")])
        script = environ.get("SCRIPT_NAME", "")
        leaked = "HTTP_X_BERTH_SCRIPT_NAME" in environ
        return [f"{script}|{environ['PATH_INFO']}|{leaked}".encode()]
    action = ACTIONS.get(environ["PATH_INFO"])
    if action is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such action"]
    body = _try(action).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


not_callable = 42
