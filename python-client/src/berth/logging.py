"""The system log handler: the app's `logging` records, as JSON lines, to Berth's log collector.

`install()` puts one `BerthHandler` on the root logger (`berth.runtime` does it before the
app is imported). A log call on the request path only turns the record into a small tuple and
appends it to a bounded in-memory queue; a background thread encodes the queued records as
JSON lines and ships them to `BERTH_LOG_ADDR` over one TCP connection in acknowledged mode, so
a batch leaves the queue only once the collector has it on disk. When the queue is full the
newest records are dropped and counted; when the collector is unreachable the records go to
standard error instead (and are counted), so nothing blocks the app and nothing disappears
without a number saying so (`stats()`).

    import logging
    import berth.logging

    berth.logging.install()          # done for you under `python -m berth.runtime serve`
    logging.getLogger("shop").info("order %s paid", order_id, extra={"amount": 12})
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Final

from berth import config

__all__ = [
    "BerthHandler",
    "Stats",
    "handler",
    "install",
    "installed",
    "lean_records",
    "parse_address",
    "stats",
]

ENV_LOG_ADDR: Final = "BERTH_LOG_ADDR"
ENV_LOG_LEVEL: Final = "BERTH_LOG_LEVEL"

#: The attributes every `LogRecord` has; anything else on a record came from `extra=`.
_PLAIN_RECORD: Final = logging.LogRecord("", 0, "", 0, "", None, None).__dict__
_RECORD_FIELDS: Final = frozenset(_PLAIN_RECORD.keys() | {"message", "asctime", "taskName"})
_PLAIN_FIELD_COUNT: Final = len(_PLAIN_RECORD)

_quote: Callable[[str], str] = json.encoder.encode_basestring

# One queued record: the record, its message when formatted early, its extra fields.
_Item = tuple[logging.LogRecord, "str | None", "dict[str, Any] | None"]

# Argument types whose value cannot change after the call: their message may be formatted
# later, off the request path.
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None), bytes, complex})


@dataclass(frozen=True)
class Stats:
    """What the handler did with the records it was given, since it was created.

    `delivered`: acknowledged by the collector (durable there). `fallback`: written to
    standard error because the collector could not be reached. `dropped`: discarded because
    the queue was full. `refused`: answered with an error by the collector (for example the
    app's rate limit). `queued`: waiting in the queue now.
    """

    delivered: int
    fallback: int
    dropped: int
    refused: int
    queued: int


class BerthHandler(logging.Handler):
    """Ships records to the log collector at `address` ((host, port)) as the app `app`.

    `max_queue` bounds the records held in memory; `batch` the records sent per round trip;
    `retry_interval` (seconds) how long the collector is left alone after a failure (records
    go to `fallback`, default standard error, meanwhile); `timeout` bounds connecting and
    waiting for an acknowledgement. Thread-safe; `emit` never blocks on the network.
    """

    def __init__(
        self,
        address: tuple[str, int],
        app: str,
        token: str | None = None,
        *,
        version: str | None = None,
        instance: str | None = None,
        level: int = logging.NOTSET,
        max_queue: int = 10_000,
        batch: int = 500,
        retry_interval: float = 5.0,
        timeout: float = 5.0,
        fallback: IO[str] | None = None,
    ) -> None:
        super().__init__(level)
        self.address = address
        self.app = app
        self.token = token
        self.version = version
        self.instance = instance
        self.max_queue = max_queue
        self.batch = batch
        self.retry_interval = retry_interval
        self.timeout = timeout
        self._fallback = fallback
        tail = {"stream": "logging", "version": version, "instance": instance}
        self._tail = (
            ","
            + json.dumps({k: v for k, v in tail.items() if v is not None}, ensure_ascii=False)[1:]
            + "\n"
        )
        self._queue: collections.deque[_Item] = collections.deque()
        self._wake = threading.Event()
        self._idle = True
        self._stopping = False
        self._sock: socket.socket | None = None
        self._reader: IO[bytes] | None = None
        self._down_until = 0.0
        self._in_flight = 0
        self._sent_on_conn = 0
        self._flushed = threading.Condition()
        self._delivered = 0
        self._fallback_count = 0
        self._dropped = 0
        self._refused = 0
        self._thread = threading.Thread(target=self._run, name="berth-log-shipper", daemon=True)
        self._thread.start()

    # -- the request path -------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filters and queues `record`; no handler lock is taken (the queue is thread-safe)."""
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        """Queues `record`. The message is formatted now when an argument could change later
        (a list, a dict, an object), else by the shipper thread, like the stdlib's
        `MemoryHandler`; `extra=` fields are captured now; JSON is encoded later."""
        try:
            queue = self._queue
            if len(queue) >= self.max_queue:
                self._dropped += 1
                return
            args = record.args
            message = None
            if args and not (type(args) is tuple and all(type(a) in _IMMUTABLE for a in args)):
                message = record.getMessage()
            extra = None
            if len(record.__dict__) > _PLAIN_FIELD_COUNT:
                extra = {
                    k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS
                } or None
            queue.append((record, message, extra))
            if self._idle:
                # Only the first record after a quiet spell pays for waking the shipper.
                self._idle = False
                self._wake.set()
        except Exception:
            self.handleError(record)

    # -- the shipper thread -----------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                # Publish "idle" first, then look again: a record queued in between either
                # is seen here or sees the flag and wakes us.
                self._idle = True
                if queue:
                    self._idle = False
                    continue
                with self._flushed:
                    self._flushed.notify_all()
                if self._stopping:
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                self._idle = False
                continue
            items: list[_Item] = []
            while queue and len(items) < self.batch:
                items.append(queue.popleft())
            self._in_flight = len(items)
            try:
                self._ship(items)
            finally:
                self._in_flight = 0

    def _ship(self, items: list[_Item]) -> None:
        lines = [self._encode(item) for item in items]
        if time.monotonic() >= self._down_until:
            reason = "unknown error"
            for _attempt in (1, 2):
                try:
                    refused = self._send(lines)
                except (OSError, ValueError) as e:
                    self._disconnect()
                    reason = str(e) or type(e).__name__
                    continue
                self._refused += refused
                self._delivered += len(lines) - refused
                return
            self._down_until = time.monotonic() + self.retry_interval
            self._write_fallback(
                [
                    json.dumps(
                        {
                            "level": "warning",
                            "logger": "berth.logging",
                            "message": f"log collector at {self.address[0]}:{self.address[1]} "
                            f"unreachable ({reason}); writing records to stderr for "
                            f"{self.retry_interval:g}s",
                        }
                    ).encode()
                    + b"\n"
                ]
            )
        self._fallback_count += len(lines)
        self._write_fallback(lines)

    def _encode(self, item: _Item) -> bytes:
        # Hand-assembled (strings escaped by json's C encoder): about 4x faster than
        # json.dumps of a dict, and this runs once per record under the GIL.
        record, message, extra = item
        if message is None:
            message = record.getMessage()
        exc = None
        if record.exc_info:
            exc = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            exc = record.exc_text
        if record.stack_info:
            exc = f"{exc}\n{record.stack_info}" if exc else record.stack_info
        created, level, name = record.created, record.levelname, record.name
        parts = [
            f'{{"timestamp":{created!r},"level":{_quote(level)},"logger":{_quote(name)},'
            f'"message":{_quote(message)}'
        ]
        if exc is not None:
            parts.append(f',"exception":{_quote(exc)}')
        if extra:
            parts.append(',"extra":' + json.dumps(extra, default=repr, ensure_ascii=False))
        parts.append(self._tail)
        return "".join(parts).encode("utf-8", "replace")

    def _connect(self) -> None:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        hello = {"hello": {"app": self.app, "token": self.token, "ack": True}}
        sock.sendall(json.dumps(hello).encode() + b"\n")
        reply = json.loads(reader.readline() or b"{}")
        if reply.get("ok") != "hello":
            reader.close()
            sock.close()
            raise ConnectionError(f"the log collector refused the hello: {reply.get('error')}")
        self._sock, self._reader = sock, reader
        self._sent_on_conn = 0

    def _disconnect(self) -> None:
        for f in (self._reader, self._sock):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._sock = self._reader = None

    def _send(self, lines: list[bytes]) -> int:
        """Sends one batch and waits for its acknowledgement; returns how many were refused."""
        if self._sock is None:
            self._connect()
        assert self._sock is not None and self._reader is not None
        self._sock.sendall(b"".join(lines))
        # Line numbers count every event sent on this connection; ack N covers all up to N.
        self._sent_on_conn += len(lines)
        refused = 0
        while True:
            raw = self._reader.readline()
            if not raw:
                raise ConnectionError("the log collector closed the connection")
            reply = json.loads(raw)
            if "error" in reply:
                first = int(reply.get("line", 0))
                last = int(reply.get("last", first))
                refused += max(1, last - first + 1)
                continue
            if int(reply.get("ack", -1)) >= self._sent_on_conn:
                return min(refused, len(lines))

    def _write_fallback(self, lines: list[bytes]) -> None:
        out = self._fallback or sys.stderr
        with contextlib.suppress(Exception):
            out.write(b"".join(lines).decode("utf-8", "replace"))
            out.flush()

    # -- control ----------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> None:
        """Waits (at most `timeout` seconds) until every queued record was shipped."""
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self._queue or self._in_flight:
                self._wake.set()
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._flushed.wait(min(left, 0.05))

    def stats(self) -> Stats:
        """The handler's counters now."""
        return Stats(
            delivered=self._delivered,
            fallback=self._fallback_count,
            dropped=self._dropped,
            refused=self._refused,
            queued=len(self._queue) + self._in_flight,
        )

    def close(self) -> None:
        """Ships what is queued (up to 5 s), then stops the thread and closes the connection."""
        self.flush()
        self._stopping = True
        self._wake.set()
        self._thread.join(5)
        self._disconnect()
        super().close()


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[addr]:port`) as a pair; raises `ConfigError` otherwise."""
    servers = config.parse_servers(text, ENV_LOG_ADDR)
    if len(servers) != 1:
        raise config.ConfigError(f"{ENV_LOG_ADDR}: expected one host:port, got {text!r}")
    return servers[0]


_installed: BerthHandler | None = None
_install_lock = threading.Lock()


def handler(cfg: config.Config | None = None, **kwargs: Any) -> BerthHandler:
    """A new `BerthHandler` for the app described by `cfg` (default: `config.current()`).

    Raises `ConfigError` when `BERTH_LOG_ADDR` or `BERTH_APP` is missing.
    """
    cfg = cfg or config.current()
    addr = cfg.get(ENV_LOG_ADDR)
    if not addr:
        raise config.ConfigError(
            f"berth.logging: the log collector is not configured: set {ENV_LOG_ADDR} "
            "(e.g. 127.0.0.1:5170)"
        )
    return BerthHandler(
        parse_address(addr),
        cfg.app,
        cfg.token,
        version=cfg.get(config.ENV_VERSION),
        instance=cfg.get(config.ENV_INSTANCE),
        **kwargs,
    )


def lean_records() -> None:
    """Stops `logging` from collecting what the system handler does not ship: the caller's
    file, line and function (a frame walk per call), thread, process and task names. The
    logging HOWTO's "Optimization" switches; `install()` turns them on."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):
        logging.logAsyncioTasks = False


def install(cfg: config.Config | None = None, *, level: int | str | None = None) -> BerthHandler:
    """Makes a `BerthHandler` the root logger's only handler, once per process; returns it.

    `level` (default `BERTH_LOG_LEVEL`, else `INFO`) is set on the root logger. Records still
    queued at exit are shipped (up to 5 s). Calling it again returns the installed handler.
    """
    global _installed
    with _install_lock:
        if _installed is not None:
            return _installed
        cfg = cfg or config.current()
        h = handler(cfg)
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(h)
        if level is None:
            level = (cfg.get(ENV_LOG_LEVEL) or "INFO").upper()
        root.setLevel(level)
        logging.captureWarnings(True)
        lean_records()
        atexit.register(h.close)
        _installed = h
        return h


def installed() -> BerthHandler | None:
    """The handler `install()` put on the root logger, or None."""
    return _installed


def stats() -> Stats:
    """The installed handler's counters; all zero when none is installed."""
    h = _installed
    if h is None:
        return Stats(0, 0, 0, 0, 0)
    return h.stats()
