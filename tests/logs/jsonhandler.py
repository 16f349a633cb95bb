"""The stdlib-only JSON lines handler of docs/protocols/logs.md ("Python: the JSON handler").

Kept as a file so the tests run exactly the code the documentation shows.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback


class BerthJSONHandler(logging.Handler):
    """Sends each record as one JSON line to the log collector.

    With ack=True (the default) emit() returns only once the collector has stored the record
    durably (at-least-once: a record is resent after a reconnect if its ack was not seen).
    """

    def __init__(self, host: str, port: int, app: str, token: str | None = None,
                 ack: bool = True, timeout: float = 10.0) -> None:
        super().__init__()
        self.address = (host, port)
        self.app, self.token, self.ack, self.timeout = app, token, ack, timeout
        self.sock: socket.socket | None = None
        self.reader = None
        self.sent = 0

    def _connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.reader = self.sock.makefile("rb")
        hello = {"hello": {"app": self.app, "token": self.token, "ack": self.ack}}
        self.sock.sendall(json.dumps(hello).encode() + b"\n")
        reply = json.loads(self.reader.readline() or b"{}")
        if reply.get("ok") != "hello":
            self._close()
            raise ConnectionError(f"log collector refused the hello: {reply}")
        self.sent = 0

    def _close(self) -> None:
        for f in (self.reader, self.sock):
            if f is not None:
                f.close()
        self.sock = self.reader = None

    def record_to_dict(self, record: logging.LogRecord) -> dict:
        event = {
            "timestamp": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "instance": os.environ.get("BERTH_INSTANCE"),
            "version": os.environ.get("BERTH_VERSION"),
            "stream": "logging",
        }
        if record.exc_info:
            event["exception"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            event["exception"] = record.exc_text
        return event

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.dumps(self.record_to_dict(record), default=str).encode() + b"\n"
            for attempt in (1, 2):
                try:
                    if self.sock is None:
                        self._connect()
                    self.sock.sendall(line)
                    self.sent += 1
                    if self.ack:
                        self._wait_ack()
                    return
                except (OSError, ValueError):
                    self._close()
                    if attempt == 2:
                        raise
        except Exception:
            self.handleError(record)

    def _wait_ack(self) -> None:
        while True:
            raw = self.reader.readline()
            if not raw:
                raise ConnectionError("log collector closed the connection")
            reply = json.loads(raw)
            if "error" in reply:
                raise RuntimeError(f"log collector refused a record: {reply['error']}")
            if reply.get("ack", -1) >= self.sent:
                return

    def close(self) -> None:
        self.acquire()
        try:
            self._close()
        finally:
            self.release()
        super().close()
