"""A small HTTP/1.1 client on the stdlib's `http.client`, for `berth.blobs`.

What it adds to `http.client`: a thread-safe pool of keep-alive connections; request bodies
streamed from bytes, binary files or iterables (sized, or chunked when the length is unknown),
never read whole into memory; `Expect: 100-continue` for large, unsized or conditional bodies,
so a refusal (too large, over quota, precondition) costs no upload; an upload that stops as
soon as the server answers early; and one retry of a request whose pooled connection the
server had already dropped (when its body can be replayed).
"""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Final, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: Bytes read from a file or sent to the socket at a time.
CHUNK: Final = 256 * 1024
#: Bodies larger than this (or unsized) ask the server with `Expect: 100-continue` first.
EXPECT_THRESHOLD: Final = 64 * 1024

#: What a request body may be: bytes, a binary file object, or an iterable of bytes.
BodyData = bytes | bytearray | memoryview | BinaryIO | Iterable[bytes]


class TransportError(Exception):
    """The request failed below HTTP: no connection, a dropped connection or a timeout."""


class TruncatedResponse(TransportError):
    """The server ended a response body before its declared length."""


class Body:
    """A request body and how to send it again: bytes, a binary file or an iterable of bytes.

    Sized when the length is known (bytes, seekable files), chunked otherwise. A file is read
    `CHUNK` bytes at a time from its current position.
    """

    def __init__(self, data: BodyData) -> None:
        self._buf: memoryview | None = None
        self._file: BinaryIO | None = None
        self._iter: Iterator[bytes] | None = None
        self._start = 0
        self.length: int | None = None
        #: Payload bytes handed to the socket by the last attempt.
        self.sent = 0
        self._touched = False
        if isinstance(data, bytes | bytearray | memoryview):
            self._buf = memoryview(data).cast("B")
            self.length = len(self._buf)
        elif isinstance(data, str):
            raise TypeError("berth.blobs: data must be bytes, a binary file or bytes chunks")
        elif hasattr(data, "read"):
            self._file = cast(BinaryIO, data)
            self.length = self._file_length()
        else:
            self._iter = iter(data)

    def _file_length(self) -> int | None:
        f = self._file
        assert f is not None
        try:
            if not f.seekable():
                return None
            self._start = f.tell()
            end = f.seek(0, os.SEEK_END)
            f.seek(self._start)
        except (OSError, ValueError, AttributeError):
            return None
        return max(0, end - self._start)

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again from its start (see `rewind`)."""
        if self._buf is not None:
            return True
        if self._file is not None and self.length is not None:
            return True
        return not self._touched

    def rewind(self) -> bool:
        """Prepares sending the body again; False when it cannot be (a stream already read)."""
        if not self.replayable:
            return False
        if self._file is not None and self.length is not None:
            self._file.seek(self._start)
        self.sent = 0
        return True

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The payload, piece by piece; empty pieces are skipped (they would end a chunked body)."""
        self.sent = 0
        if self._buf is not None:
            for i in range(0, len(self._buf), CHUNK):
                yield self._buf[i : i + CHUNK]
            return
        self._touched = True
        if self._file is not None:
            length = remaining = self.length
            while remaining is None or remaining > 0:
                want = CHUNK if remaining is None else min(CHUNK, remaining)
                piece = self._file.read(want)
                if not isinstance(piece, bytes | bytearray):
                    raise TypeError(
                        "berth.blobs: the file must be opened in binary mode (open(path, 'rb'))"
                    )
                if not piece:
                    if length is not None and remaining is not None:
                        raise ValueError(
                            f"berth.blobs: the file ended after {length - remaining} of "
                            f"the {length} bytes it held when the upload started"
                        )
                    return
                if remaining is not None:
                    remaining -= len(piece)
                yield piece
            return
        assert self._iter is not None
        for piece in self._iter:
            if not isinstance(piece, bytes | bytearray | memoryview):
                raise TypeError(
                    f"berth.blobs: an iterable body must yield bytes, got {type(piece).__name__}"
                )
            if len(piece):
                yield piece


class Response:
    """A response whose body is still on the connection; `read()` (or `readinto` to the end)
    consumes it and gives the connection back to its pool; `release` closes it before that."""

    def __init__(
        self,
        pool: Pool,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        reusable: bool,
    ) -> None:
        self._pool = pool
        self._conn: http.client.HTTPConnection | None = conn
        self._resp = resp
        self._reusable = reusable and not resp.will_close
        self.status: int = resp.status

    def header(self, name: str) -> str | None:
        """One header's value (the first, if repeated), or None."""
        return self._resp.getheader(name)

    def headers(self) -> list[tuple[str, str]]:
        """Every header as (name, value), values decoded as ISO-8859-1 (as `http.client` does)."""
        return self._resp.getheaders()

    def read(self) -> bytes:
        """The whole body; releases the connection."""
        try:
            data = self._resp.read()
        except http.client.IncompleteRead as e:
            self.release(reuse=False)
            raise _truncated(e.expected) from None
        except (OSError, http.client.HTTPException) as e:
            self.release(reuse=False)
            raise TransportError(f"reading the response failed: {_describe(e)}") from None
        self.release()
        return data

    def readinto(self, buf: memoryview) -> int:
        """Reads body bytes into `buf`; 0 at the end (the connection is then released)."""
        if self._conn is None:
            return 0
        try:
            n = self._resp.readinto(buf)
        except http.client.IncompleteRead as e:
            self.release(reuse=False)
            raise _truncated(e.expected) from None
        except (OSError, http.client.HTTPException) as e:
            self.release(reuse=False)
            raise TransportError(f"reading the response failed: {_describe(e)}") from None
        if n == 0 and len(buf):
            if self._resp.length:  # the peer closed before the declared end
                self.release(reuse=False)
                raise _truncated(self._resp.length)
            self.release()
        return n

    def release(self, reuse: bool = True) -> None:
        """Gives the connection back (if the body was read whole) or closes it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reuse and self._reusable and self._resp.isclosed():
            self._pool.checkin(conn)
        else:
            self._resp.close()
            conn.close()


def _truncated(missing: int | None) -> TruncatedResponse:
    return TruncatedResponse(
        f"the server ended the response {missing} bytes early: it stopped, or the stored "
        "data failed its checksum and the rest was not sent"
    )


class ResponseStream(io.RawIOBase):
    """A readable binary stream over a response body; closing it early closes the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed stream")
        return self._response.readinto(memoryview(buffer).cast("B"))

    def close(self) -> None:
        if not self.closed:
            self._response.release()  # kept only if the body was read to its end
        super().close()


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


class _Dropped(Exception):
    """The connection failed during an exchange; `retryable` when nothing was answered."""

    def __init__(self, cause: BaseException, retryable: bool) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retryable = retryable


class Pool:
    """Keep-alive connections to one `host:port`, safe to share between threads.

    Each request takes an idle connection (or opens one) and gives it back once its response
    was read whole. Idle connections the server has closed meanwhile are noticed and dropped
    before use; a failure on a pooled connection is retried once on a new one. After `fork()`
    the child starts with an empty pool.
    """

    def __init__(self, host: str, port: int, *, timeout: float, max_idle: int = 8) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._pid != os.getpid():  # forked: those sockets are the parent's
                self._idle.clear()
                self._pid = os.getpid()
            while self._idle:
                conn = self._idle.pop()
                if _idle_usable(conn):
                    return conn, True
                conn.close()
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), False

    def checkin(self, conn: http.client.HTTPConnection) -> None:
        """Returns an idle connection (or closes it when the pool is full)."""
        with self._lock:
            if conn.sock is not None and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes every idle connection; requests in flight finish on theirs."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str | bytes]] = (),
        body: Body | None = None,
        *,
        idempotent: bool = True,
    ) -> Response:
        """Sends one request and returns the response with its body unread.

        A request that is not `idempotent` (a conditional write) is retried only when it
        provably never reached the server: its body then waits for `100 Continue`, and once the
        body went out a lost answer is not retried. Raises `TransportError` when no answer
        could be had.
        """
        headers = list(headers)
        retried = False
        while True:
            conn, reused = self._checkout()
            try:
                resp, early = self._exchange(conn, method, path, headers, body, idempotent)
            except _Dropped as d:
                conn.close()
                if reused and not retried and d.retryable and (body is None or body.rewind()):
                    retried = True
                    continue
                raise TransportError(_describe(d.cause)) from None
            except BaseException:
                conn.close()
                raise
            return Response(self, conn, resp, reusable=not early)

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        headers: list[tuple[str, str | bytes]],
        body: Body | None,
        idempotent: bool,
    ) -> tuple[http.client.HTTPResponse, bool]:
        early = False
        # Whether the whole request may have reached the server (a partial body never does).
        sent_anything = False
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if body is not None:
                if body.length is None:
                    conn.putheader("Transfer-Encoding", "chunked")
                else:
                    conn.putheader("Content-Length", str(body.length))
                use_expect = body.length != 0 and (
                    not idempotent or body.length is None or body.length > EXPECT_THRESHOLD
                )
                if use_expect:
                    conn.putheader("Expect", "100-continue")
                conn.endheaders()
                if use_expect and not self._await_continue(conn):
                    early = True
                else:
                    sent_anything = True
                    early = self._send_body(conn, body)
            else:
                conn.endheaders()
                sent_anything = True
        except TimeoutError as e:
            raise _Dropped(e, retryable=False) from None
        except (OSError, http.client.HTTPException) as e:
            if not sent_anything or isinstance(e, ConnectionRefusedError):
                raise _Dropped(e, retryable=True) from None
            # The server may have answered and closed while the body was still going out.
            early = True
        try:
            resp = conn.getresponse()
        except TimeoutError as e:
            raise _Dropped(e, retryable=False) from None
        except (OSError, http.client.HTTPException) as e:
            # Nothing was answered: a pooled connection the server had closed, or a server
            # gone mid-request. Only a request whose body went out whole may have been acted on.
            retryable = isinstance(e, ConnectionError | http.client.BadStatusLine) and (
                idempotent or not sent_anything or early
            )
            raise _Dropped(e, retryable=retryable) from None
        return resp, early

    def _wait(self, sock: socket.socket, write: bool) -> tuple[bool, bool]:
        readable, writable = _ready(sock, write, self.timeout)
        if not readable and not writable:
            raise TimeoutError("timed out")
        return readable, writable

    def _await_continue(self, conn: http.client.HTTPConnection) -> bool:
        """After headers with `Expect: 100-continue`: True on `100 Continue` (consumed), False
        when the final answer came instead (left for `getresponse`)."""
        sock = conn.sock
        assert sock is not None
        while True:
            self._wait(sock, write=False)
            head = sock.recv(4096, socket.MSG_PEEK)
            if not head:
                raise http.client.RemoteDisconnected("closed before answering")
            if not head.startswith((b"HTTP/1.1 100", b"HTTP/1.0 100")):
                return False
            end = head.find(b"\r\n\r\n")
            if end >= 0:
                sock.recv(end + 4)  # exactly the interim response; the peek showed it is there
                return True
            if len(head) >= 4096:
                raise http.client.BadStatusLine("oversized 100 Continue response")

    def _send_body(self, conn: http.client.HTTPConnection, body: Body) -> bool:
        """Sends the body; True when the server answered before it was all sent (then the rest
        is not sent and the connection is not reused)."""
        sock = conn.sock
        assert sock is not None
        chunked = body.length is None
        for piece in body.chunks():
            if chunked and self._send(sock, b"%x\r\n" % len(piece)):
                return True
            if self._send(sock, piece):
                return True
            body.sent += len(piece)
            if chunked and self._send(sock, b"\r\n"):
                return True
        return chunked and self._send(sock, b"0\r\n\r\n")

    def _send(self, sock: socket.socket, data: bytes | memoryview) -> bool:
        view = memoryview(data)
        while view:
            readable, writable = self._wait(sock, write=True)
            if readable:
                return True
            if writable:
                view = view[sock.send(view) :]
        return False


def _ready(sock: socket.socket, write: bool, timeout: float) -> tuple[bool, bool]:
    """Waits up to `timeout` seconds for `sock` to be readable (or writable, with `write`).

    poll(2) where there is one: select(2) fails on descriptors past 1023, which a busy app
    reaches.
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | (select.POLLOUT if write else 0))
        events = 0
        for _, ev in poller.poll(max(0, int(timeout * 1000))):
            events |= ev
        readable = bool(events & (select.POLLIN | select.POLLHUP | select.POLLERR))
        return readable, bool(events & select.POLLOUT)
    r, w, _ = select.select([sock], [sock] if write else [], [], timeout)
    return bool(r), bool(w)


def _idle_usable(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is usable if the server has sent nothing on it (anything
    readable now is its close, or junk)."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _ = _ready(sock, False, 0)
    except (OSError, ValueError):
        return False
    return not readable
