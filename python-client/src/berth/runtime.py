"""Runs an app's WSGI callable under a production server, inside Berth's runtime contract.

    python -m berth.runtime serve main:application --bind 127.0.0.1:8080 --processes 2 --threads 8
    python -m berth.runtime check main:application      # imports it and checks it is WSGI

The server is granian (a Rust HTTP server with a WSGI interface: about 7x gunicorn's requests
per second for a small app on this machine, see docs/benchmarks.md). In every worker process,
before the app's module is imported, the runtime:

- installs the system log handler (`berth.logging.install()`), and from then on lets loggers
  take only it and `logging.NullHandler`: adding a `FileHandler`, a `StreamHandler` or any other
  handler raises `HandlerNotAllowed` saying what to do instead;
- refuses to open files for writing (and to create, remove, rename files) outside
  `BERTH_SCRATCH_DIR`, raising `PermissionError` naming the scratch directory; `TMPDIR` points
  into the scratch directory so `tempfile` works. The deployer's sandbox is the real wall; this
  is the early, clear error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import stat
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from berth import config
from berth import logging as berth_logging

__all__ = [
    "HandlerNotAllowed",
    "WSGIApp",
    "check",
    "load",
    "main",
    "mounted",
    "prepare",
    "restrict_file_writes",
    "restrict_log_handlers",
    "serve",
]

ENV_ENTRY: Final = "BERTH_ENTRY"
ENV_SCRATCH_DIR: Final = "BERTH_SCRATCH_DIR"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class HandlerNotAllowed(TypeError):
    """An app tried to add a log handler other than the system handler or `NullHandler`."""


# -- restrictions -------------------------------------------------------------------------------

_handlers_restricted = False


def restrict_log_handlers() -> None:
    """From now on `Logger.addHandler` accepts only `BerthHandler` and `NullHandler`."""
    global _handlers_restricted
    if _handlers_restricted:
        return
    original = logging.Logger.addHandler

    def add_handler(self: logging.Logger, hdlr: logging.Handler) -> None:
        if not isinstance(hdlr, berth_logging.BerthHandler | logging.NullHandler):
            raise HandlerNotAllowed(
                f"logger {self.name!r}: {type(hdlr).__name__} is not allowed under Berth: "
                "apps log through the system handler the runtime installed on the root logger "
                "(records reach `berth logs`); log with logging.getLogger(__name__) and let "
                "records propagate, or add logging.NullHandler() to silence a library"
            )
        original(self, hdlr)

    logging.Logger.addHandler = add_handler  # type: ignore[method-assign]
    _handlers_restricted = True


_WRITE_FLAGS: Final = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_ALWAYS_WRITABLE: Final = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty"})
# Audit events that change the file system, and which of their arguments are paths.
_PATH_EVENTS: Final = {
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.mkdir": (0,),
    "os.rmdir": (0,),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
}
_scratch_root: str | None = None


def _outside(path: object, scratch: str) -> str | None:
    """The resolved `path` if it lies outside `scratch`; None when allowed or not a path."""
    if isinstance(path, int):
        return None  # a file descriptor: opened (and checked) before
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str | os.PathLike):
        return None
    text = os.fspath(path)
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if text in _ALWAYS_WRITABLE:
        return None
    resolved = os.path.realpath(text)
    if resolved == scratch or resolved.startswith(scratch + os.sep):
        return None
    if resolved in _ALWAYS_WRITABLE or resolved.startswith(("/dev/pts/", "/proc/self/fd/")):
        return None
    return resolved


def _refuse(what: str, path: str, scratch: str) -> PermissionError:
    return PermissionError(
        f"{what} {path!r} is not allowed under Berth: an app may write files only in its "
        f"scratch directory {scratch} ({ENV_SCRATCH_DIR}, emptied between starts); keep lasting "
        "data in berth.blobs or the database"
    )


def _audit(event: str, args: tuple[Any, ...]) -> None:
    scratch = _scratch_root
    if scratch is None:
        return
    if event == "open":
        path, mode, flags = args
        if mode is None:
            writing = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        else:
            writing = any(c in mode for c in "wax+")
        if writing:
            bad = _outside(path, scratch)
            if bad is not None:
                raise _refuse("opening for writing", bad, scratch)
        return
    positions = _PATH_EVENTS.get(event)
    if positions is not None:
        for i in positions:
            if i < len(args):
                bad = _outside(args[i], scratch)
                if bad is not None:
                    raise _refuse(f"{event} on", bad, scratch)


def restrict_file_writes(scratch_dir: str | os.PathLike[str]) -> None:
    """From now on this process may write, create and remove files only under `scratch_dir`.

    Installed as an audit hook (PEP 578), which cannot be removed; calling it again moves the
    allowed directory. Also points `TMPDIR`/`tempfile` there and stops writing `.pyc` files.
    """
    global _scratch_root
    scratch = os.path.realpath(os.fspath(scratch_dir))
    try:
        st = os.stat(scratch)
    except OSError as e:
        raise config.ConfigError(f"{ENV_SCRATCH_DIR}={scratch!r} is not usable: {e}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise config.ConfigError(f"{ENV_SCRATCH_DIR}={scratch!r} is not a directory")
    first = _scratch_root is None
    _scratch_root = scratch
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch
    sys.dont_write_bytecode = True
    if first:
        sys.addaudithook(_audit)


# -- loading ------------------------------------------------------------------------------------


def load(entry: str) -> WSGIApp:
    """Imports `module:attribute` (attribute may be dotted) and returns it if callable.

    Raises `ImportError` or `TypeError` with a message naming the entry point.
    """
    module_name, sep, attr = entry.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entry point {entry!r} is not module:attribute (e.g. main:application)")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(
                f"entry point {entry!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(obj):
        raise TypeError(f"entry point {entry!r} is {type(obj).__name__}, not a WSGI callable")
    app: WSGIApp = obj
    return app


def prepare(entry: str, *, log: bool = True) -> WSGIApp:
    """What every worker does before serving: reads the config, installs the system log
    handler (when `log`), puts up the restrictions, then imports the app's entry point.
    """
    cfg = config.current()
    if log:
        berth_logging.install(cfg)
    restrict_log_handlers()
    scratch = cfg.get(ENV_SCRATCH_DIR)
    if scratch:
        restrict_file_writes(scratch)
    else:
        logging.getLogger("berth.runtime").warning(
            "%s is not set: file writes are not restricted", ENV_SCRATCH_DIR
        )
    app_dir = os.getcwd()
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    return load(entry)


def mounted(app: WSGIApp) -> WSGIApp:
    """`app`, seeing the path prefix berth-router mounted it under as `SCRIPT_NAME`.

    The router strips a route's prefix from the path and names it in `X-Berth-Script-Name`;
    only the router reaches an app's processes, so the header is trusted, and removed.
    """

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix = environ.pop("HTTP_X_BERTH_SCRIPT_NAME", None)
        if prefix and prefix.startswith("/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix.rstrip("/")
        return app(environ, start_response)

    return call


def _worker_loader(entry: str) -> WSGIApp:
    # Granian calls this in each worker process (module level so it can be pickled).
    return mounted(prepare(entry))


def check(entry: str) -> str | None:
    """Imports `entry` without restrictions or logging; None when it is a WSGI callable,
    else why not (the deployer's import gate runs this in its sandbox). A `ConfigError`
    propagates: the app imports but needs configuration it was not given."""
    app_dir = os.getcwd()
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        load(entry)
    except config.ConfigError:
        raise
    except Exception as e:  # any failure to import is the app's error, reported as text
        return f"{type(e).__name__}: {e}"
    return None


def serve(
    entry: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    uds: str | None = None,
    processes: int = 1,
    threads: int = 8,
    backlog: int = 1024,
) -> None:
    """Serves `entry` with granian until SIGTERM/SIGINT: `processes` worker processes, each
    running the app in up to `threads` threads. `uds` (a Unix socket path) replaces host/port.
    """
    from granian.constants import Interfaces
    from granian.server import Server

    kwargs: dict[str, Any] = {}
    if uds is not None:
        kwargs["uds"] = Path(uds)
    server = Server(
        entry,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=processes,
        blocking_threads=threads,
        backlog=backlog,
        log_access=False,
        workers_kill_timeout=30,
        respawn_failed_workers=True,
        **kwargs,
    )
    server.serve(target_loader=_worker_loader)


# -- command line -------------------------------------------------------------------------------


def _entry_from(arg: str | None) -> str:
    if arg:
        return arg
    env = os.environ.get(ENV_ENTRY)
    if env:
        return env
    manifest = Path("berth.toml")
    if manifest.exists():
        with manifest.open("rb") as f:
            data = tomllib.load(f)
        entry = data.get("entry")
        if isinstance(entry, str) and entry:
            return entry
        raise SystemExit(f"berth.runtime: {manifest.resolve()} has no 'entry = \"module:attr\"'")
    raise SystemExit(
        f"berth.runtime: no entry point: give module:attribute, set {ENV_ENTRY}, "
        'or run in a directory whose berth.toml has entry = "module:attr"'
    )


def _bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    """`python -m berth.runtime {serve,check}`; see the module's documentation."""
    parser = argparse.ArgumentParser(prog="python -m berth.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="serve the app's WSGI callable")
    p_serve.add_argument("entry", nargs="?", help="module:attribute (default: BERTH_ENTRY)")
    p_serve.add_argument(
        "--bind",
        type=_bind,
        default=_bind(os.environ.get("BERTH_BIND", "127.0.0.1:8080")),
        help="host:port to listen on (default: BERTH_BIND or 127.0.0.1:8080)",
    )
    p_serve.add_argument("--uds", help="listen on this Unix socket instead")
    p_serve.add_argument(
        "--processes", type=int, default=int(os.environ.get("BERTH_PROCESSES", "1"))
    )
    p_serve.add_argument("--threads", type=int, default=int(os.environ.get("BERTH_THREADS", "8")))
    p_check = sub.add_parser("check", help="import the entry point and check it is WSGI")
    p_check.add_argument("entry", nargs="?")
    args = parser.parse_args(argv)
    entry = _entry_from(args.entry)
    if args.command == "check":
        try:
            problem = check(entry)
        except config.ConfigError as e:
            print(f"berth.runtime: {entry}: needs configuration: {e}", file=sys.stderr)
            return 2
        if problem is not None:
            print(f"berth.runtime: {entry}: {problem}", file=sys.stderr)
            return 1
        print(f"{entry}: ok")
        return 0
    if args.processes < 1 or args.threads < 1:
        parser.error("--processes and --threads must be at least 1")
    config.current()  # a broken secrets file fails here, before any worker starts
    host, port = args.bind
    serve(entry, host=host, port=port, uds=args.uds, processes=args.processes, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
