"""A raw memcached text-protocol connection for byte-exact tests.

`expect` reads exactly the expected bytes (or fails as soon as they diverge) and reports the
request, the expected bytes and the bytes received, so a failure is a precise wire diff.
"""

from __future__ import annotations

import re
import socket
import time

DEFAULT_TIMEOUT = 5.0


def show(data: bytes, limit: int = 300) -> str:
    """repr() of bytes, shortened in the middle when long."""
    if len(data) <= limit:
        return repr(data)
    half = limit // 2
    return f"{data[:half]!r} ...[{len(data) - limit} bytes]... {data[-half:]!r} (len {len(data)})"


class Wire:
    """One TCP connection to a memcached-protocol server."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.last_sent = b""
        self.eof = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Wire":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low level ---------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.last_sent = data
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read once more into the buffer; False on EOF or when the deadline passes."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise AssertionError(
                    f"wanted {n} bytes after sending {show(self.last_sent)}, "
                    f"got {show(bytes(self.buf))}{' then EOF' if self.eof else ' then timeout'}"
                )
        return self._take(n)

    def read_line(self, timeout: float | None = None) -> bytes:
        """One reply line including its \\r\\n."""
        return self.read_until(b"\r\n", timeout)

    def read_until(self, terminator: bytes, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        start = 0
        while True:
            idx = self.buf.find(terminator, start)
            if idx >= 0:
                return self._take(idx + len(terminator))
            start = max(0, len(self.buf) - len(terminator) + 1)
            if not self._fill(deadline):
                raise AssertionError(
                    f"no {terminator!r} after sending {show(self.last_sent)}; "
                    f"got {show(bytes(self.buf))}{' then EOF' if self.eof else ' then timeout'}"
                )

    def read_available(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within `wait` seconds (used only to enrich failure messages)."""
        deadline = time.monotonic() + wait
        while self._fill(deadline):
            pass
        return self._take(len(self.buf))

    # -- assertions --------------------------------------------------------------------------

    def expect(self, expected: bytes, timeout: float | None = None, request: bytes | None = None) -> None:
        """Read len(expected) bytes and assert they are exactly `expected`."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            have = bytes(self.buf[: len(expected)])
            if have != expected[: len(have)] or len(have) == len(expected):
                break
            if not self._fill(deadline):
                break
        have = bytes(self.buf[: len(expected)])
        if have == expected:
            self._take(len(expected))
            return
        got = self._take(len(self.buf)) + self.read_available(0.2)
        sent = self.last_sent if request is None else request
        raise AssertionError(
            "wire mismatch\n"
            f"  sent:     {show(sent)}\n"
            f"  expected: {show(expected)}\n"
            f"  got:      {show(got)}{' (then EOF)' if self.eof else ''}"
        )

    def call(self, request: bytes, expected: bytes, timeout: float | None = None) -> None:
        self.send(request)
        self.expect(expected, timeout=timeout, request=request)

    def expect_match(self, pattern: bytes, timeout: float | None = None) -> re.Match[bytes]:
        """Read one line and assert it matches the regex `pattern` (anchored, \\r\\n excluded)."""
        line = self.read_line(timeout)
        m = re.fullmatch(pattern, line[:-2], re.DOTALL)
        if not m:
            raise AssertionError(
                f"line mismatch\n  sent:     {show(self.last_sent)}\n"
                f"  expected: /{pattern.decode(errors='replace')}/\n  got:      {show(line)}"
            )
        return m

    def sync(self) -> None:
        """Round-trip `mn`: proves nothing unexpected is pending before it (e.g. after noreply)."""
        self.call(b"mn\r\n", b"MN\r\n")

    def expect_eof(self, timeout: float | None = None) -> None:
        """Assert the server closes the connection without sending anything more."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.eof:
            if not self._fill(deadline):
                if self.eof:
                    break
                raise AssertionError(
                    f"connection still open after sending {show(self.last_sent)}; "
                    f"received {show(bytes(self.buf))}"
                )
        if self.buf:
            raise AssertionError(f"expected EOF, got {show(bytes(self.buf))} first")

    # -- protocol helpers --------------------------------------------------------------------

    def store(self, cmd: str, key: str | bytes, value: bytes, flags: int = 0, exptime: int = 0,
              extra: str = "") -> bytes:
        """Send a classic storage command; return its reply line."""
        k = key.encode() if isinstance(key, str) else key
        line = f"{cmd} ".encode() + k + f" {flags} {exptime} {len(value)}{extra}\r\n".encode()
        self.send(line + value + b"\r\n")
        return self.read_line()

    def get_values(self, request: bytes) -> list[tuple[bytes, int, bytes, int | None]]:
        """Send a get-family request; return [(key, flags, data, cas)] up to END."""
        self.send(request)
        out: list[tuple[bytes, int, bytes, int | None]] = []
        while True:
            line = self.read_line()
            if line == b"END\r\n":
                return out
            m = re.fullmatch(rb"VALUE (\S+) (\d+) (\d+)(?: (\d+))?\r\n", line)
            if not m:
                raise AssertionError(f"bad get reply line {show(line)} to {show(request)}")
            data = self.read_exact(int(m.group(3)) + 2)
            if data[-2:] != b"\r\n":
                raise AssertionError(f"value of {m.group(1)!r} not followed by \\r\\n: {show(data)}")
            cas = int(m.group(4)) if m.group(4) is not None else None
            out.append((m.group(1), int(m.group(2)), data[:-2], cas))

    def stats(self, sub: str = "") -> dict[str, str]:
        """`stats [sub]` as a dict (last value wins for repeated names)."""
        self.send(f"stats {sub}".rstrip().encode() + b"\r\n")
        out: dict[str, str] = {}
        while True:
            line = self.read_line()
            if line == b"END\r\n":
                return out
            m = re.fullmatch(rb"STAT (\S+) ?(.*)\r\n", line)
            if not m:
                raise AssertionError(f"bad stats line {show(line)} to 'stats {sub}'")
            out[m.group(1).decode()] = m.group(2).decode(errors="replace")

    def stats_lines(self, sub: str) -> list[bytes]:
        """Raw lines of `stats <sub>` up to and including END."""
        self.send(f"stats {sub}\r\n".encode())
        lines = []
        while True:
            line = self.read_line()
            lines.append(line)
            if line == b"END\r\n":
                return lines
