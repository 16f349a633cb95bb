"""Fixtures and clients for the blob-server's black-box tests.

Every test starts its own real `blob-server` (from `--bin-dir`) on port 0 with a private data
directory, and waits for its `LISTEN http ADDR` / `LISTEN admin ADDR` lines. Clients are real:
the stdlib's `http.client`, `curl` through subprocess, and raw sockets where a test must send
something no well-behaved client would (a cut-off body, a stalled upload).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.procs import ServerProcess

BUILD_HINT = "run `cargo build --release -p blob-server` (or scripts/test, which builds everything)"

KIB = 1024
MIB = 1024 * KIB

OPERATOR_TOKEN = "operator-secret-token"
OPERATOR_HASH = hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest()

# Two apps with room to work; tests about limits write their own tenants file.
DEFAULT_TENANTS = """
[[app]]
name = "alpha"
token = "tokA"
blob_bytes = "256MiB"
max_object_bytes = "64MiB"
max_connections = 64

[[app]]
name = "beta"
token = "tokB"
blob_bytes = "256MiB"
max_object_bytes = "64MiB"
max_connections = 64
"""

# Small listing pages so paging is exercised with a few dozen keys; a short idle timeout so
# stalled-upload tests finish quickly.
DEFAULT_CONFIG: dict[str, Any] = {
    "operator_tokens": [OPERATOR_HASH],
    "max_list_page": 10,
    "body_idle_timeout": "2s",
    # Teardown sends SIGTERM and waits 15 s: stalled test connections must not outlast it.
    "drain_timeout": "5s",
    # The two metadata log files are written full of zeros at start: 2 x 64 MiB by default,
    # which over the few hundred servers of a run filled tens of GB of pytest's temp dirs.
    "meta_log_size": "1MiB",
}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def quoted_etag(data: bytes) -> str:
    return f'"{sha256_hex(data)}"'


def rand_bytes(n: int, seed: int | str) -> bytes:
    return random.Random(seed).randbytes(n)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, e.g. storage = { backend = "s3", ... }
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))  # a TOML basic string is a JSON string for our values


def to_toml(values: dict[str, Any]) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


# --------------------------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer, read whole."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    request: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"{self.request}: body is not JSON: {self.body[:300]!r}") from e

    def __repr__(self) -> str:
        return f"<Reply {self.request} -> {self.status} {self.headers} {self.body[:300]!r}>"


def assert_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The reply is the documented error: that status, a JSON body of exactly
    `{"error": code, "message": <non-empty text>}`."""
    assert reply.status == status, f"expected {status} {code}, got {reply!r}"
    ctype = reply.header("content-type") or ""
    assert ctype.startswith("application/json"), f"error without a JSON content type: {reply!r}"
    body = reply.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, \
        f"bad error shape: {reply!r}"
    assert body["error"] == code, f"expected code {code}: {reply!r}"
    assert isinstance(body["message"], str) and body["message"], f"empty message: {reply!r}"
    return body


class Client:
    """http.client requests as one app (Bearer token), an operator, or nobody."""

    def __init__(self, server: BlobServer, token: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.token = token
        self.extra = dict(headers or {})

    def connect(self, timeout: float = 30.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.server.host, self.server.port, timeout=timeout)

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        h = dict(self.extra)
        if self.token is not None:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        return h

    def request(self, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60.0) -> Reply:
        conn = self.connect(timeout)
        try:
            h = self._headers(headers)
            if isinstance(body, (bytes, bytearray)) and not any(
                    k.lower() in ("content-length", "transfer-encoding") for k in h):
                h["Content-Length"] = str(len(body))
            # The server may answer early (413, 507, 401...) and close while the body is
            # still going out: its answer is still in our receive buffer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, list(resp.getheaders()), data, f"{method} {path}")
        finally:
            conn.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def head(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("HEAD", path, headers=headers)

    def put(self, path: str, body: bytes | Iterable[bytes] = b"",
            headers: dict[str, str] | None = None) -> Reply:
        return self.request("PUT", path, body, headers)

    def post(self, path: str, body: bytes | Iterable[bytes] = b"",
             headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", path, body, headers)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("DELETE", path, headers=headers)

    def stats(self) -> dict[str, Any]:
        r = self.get("/stats")
        assert r.status == 200, r
        return r.json()

    def list_keys(self, bucket: str) -> list[str]:
        """Every key of the bucket, following continuations."""
        out: list[str] = []
        token = ""
        for _ in range(100000):
            r = self.get(f"/buckets/{bucket}/keys?keys=true&continuation={token}")
            assert r.status == 200, r
            v = r.json()
            out += v["keys"]
            if "continuation" not in v:
                return out
            token = v["continuation"]
        raise AssertionError("the listing never ended")

    def put_ok(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
        r = self.put(path, body, headers)
        assert r.status == 204, r
        return r

    def post_blob(self, body: bytes) -> str:
        r = self.post("/blobs", body)
        assert r.status == 201, r
        return r.json()["id"]

    def sign(self, spec: dict[str, Any]) -> Reply:
        return self.post("/sign", json.dumps(spec).encode(), {"Content-Type": "application/json"})


@dataclass
class CurlResult:
    status: int
    headers: dict[str, str]
    body: bytes
    stderr: str
    raw_headers: str


def curl(*args: str, timeout: float = 60.0, stdin: bytes | None = None) -> CurlResult:
    """Runs curl with `args`; answers the final response's status, headers and body."""
    with tempfile.TemporaryDirectory() as d:
        hfile, bfile = Path(d) / "h", Path(d) / "b"
        argv = ["curl", "-sS", "-D", str(hfile), "-o", str(bfile), "-w", "%{http_code}", *args]
        try:
            p = subprocess.run(argv, capture_output=True, timeout=timeout, input=stdin)
        except FileNotFoundError:
            pytest.fail("curl is not installed: apt-get install curl", pytrace=False)
        raw = hfile.read_text("latin-1") if hfile.exists() else ""
        body = bfile.read_bytes() if bfile.exists() else b""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers: dict[str, str] = {}
    if blocks:
        for line in blocks[-1].split("\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    out = p.stdout.decode().strip()
    # One %{http_code} per URL: the last one is the final answer.
    status = int(out[-3:]) if out[-3:].isdigit() else 0
    return CurlResult(status, headers, body, p.stderr.decode("utf-8", "replace"), raw)


class RawConn:
    """A raw TCP connection, for requests a normal client never sends."""

    def __init__(self, host: str, port: int, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout: float | None = None) -> Reply:
        """Reads one response with a Content-Length (or empty) body; raises on EOF first."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before a response; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = [(k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:])]
        length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
        while len(self.buf) < length:
            if not self._fill():
                break
        body, self.buf = self.buf[:length], self.buf[length:]
        return Reply(status, headers, body, "raw")

    def closed_by_peer(self, timeout: float) -> bool:
        """Whether the server closes the connection within `timeout` (reading what it sends)."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False


def upload_headers(path: str, token: str, length: int | None,
                   extra: dict[str, str] | None = None, method: str = "PUT") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {token}"]
    lines.append(f"Content-Length: {length}" if length is not None
                 else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


@dataclass
class BlobServer:
    """A running blob-server under test."""

    host: str
    port: int
    admin: tuple[str, int]
    process: ServerProcess
    data_dir: Path
    argv: list[str]
    tenants_path: Path | None
    config_path: Path
    name: str
    restarts: int = field(default=0)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_base(self) -> str:
        return f"http://{self.admin[0]}:{self.admin[1]}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, token: str | None = None, **headers: str) -> Client:
        return Client(self, token, {k.replace("_", "-"): v for k, v in headers.items()})

    @property
    def alpha(self) -> Client:
        return Client(self, "tokA")

    @property
    def beta(self) -> Client:
        return Client(self, "tokB")

    @property
    def anon(self) -> Client:
        return Client(self, None)

    def operator(self, app: str | None = None) -> Client:
        return Client(self, OPERATOR_TOKEN, {"X-Berth-App": app} if app else None)

    def raw(self, timeout: float = 15.0) -> RawConn:
        return RawConn(self.host, self.port, timeout)

    def signing_key(self) -> bytes:
        text = (self.data_dir / "signing.key").read_text().strip()
        assert len(text) == 64, f"signing.key should hold 64 hex digits, has {text!r}"
        return bytes.fromhex(text)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait_exit(10) is not None, "server survived SIGKILL"
        self.process.close_files()

    def status_line(self) -> str:
        return self.process.describe()


class BlobServerFactory:
    """Starts blob servers for one test and stops them all at teardown."""

    def __init__(self, config: pytest.Config, tmp_path: Path) -> None:
        self.bin = Path(config.getoption("--bin-dir")) / "blob-server"
        self.tmp = tmp_path
        self.servers: list[BlobServer] = []

    def binary(self) -> Path:
        if not self.bin.is_file():
            pytest.fail(f"{self.bin} does not exist: {BUILD_HINT}", pytrace=False)
        return self.bin

    def start(self, *, tenants: str | None = DEFAULT_TENANTS, config: dict[str, Any] | None = None,
              data_dir: Path | None = None, args: Iterable[str] = (), wrapper: Iterable[str] = (),
              timeout: float = 20.0) -> BlobServer:
        """`wrapper` prefixes the command (e.g. `env VAR=... prlimit --as=N`: both exec, so the
        process id is the server's)."""
        n = len(self.servers)
        work = self.tmp / f"server{n}"
        work.mkdir(parents=True, exist_ok=True)
        data = data_dir if data_dir is not None else work / "data"
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        config_path = work / "config.toml"
        config_path.write_text(to_toml(cfg))
        argv = [*wrapper, str(self.binary()), "--config", str(config_path), "--data-dir", str(data),
                "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        tenants_path = None
        if tenants is not None:
            tenants_path = work / "tenants.toml"
            tenants_path.write_text(tenants)
            argv += ["--tenants", str(tenants_path)]
        argv += list(args)
        return self._launch(argv, data, tenants_path, config_path, f"blob{n}", timeout)

    def _launch(self, argv: list[str], data: Path,
                tenants_path: Path | None, config_path: Path, name: str,
                timeout: float) -> BlobServer:
        proc = ServerProcess(argv, self.tmp / "logs", name)
        try:
            addrs = proc.wait_listen(["http", "admin"], timeout=timeout)
        except AssertionError:
            proc.send_signal(signal.SIGKILL)
            proc.wait_exit(5)
            proc.close_files()
            raise
        host, port = addrs["http"]
        server = BlobServer(host, port, addrs["admin"], proc, data, argv, tenants_path,
                            config_path, name)
        self.servers.append(server)
        return server

    def restart(self, old: BlobServer, timeout: float = 30.0) -> BlobServer:
        """Starts the same command line again (the old process must have exited)."""
        assert old.process.proc.poll() is not None, "restart() needs the old process stopped"
        old.process.close_files()
        return self._launch(old.argv, old.data_dir, old.tenants_path, old.config_path,
                            f"{old.name}-r{old.restarts + 1}", timeout)

    def stop_all(self) -> None:
        errors = []
        for s in self.servers:
            try:
                s.process.stop(timeout=15)
            except AssertionError as e:
                errors.append(str(e))
        self.servers.clear()
        if errors:
            raise AssertionError("\n".join(errors))


@pytest.fixture
def blob_servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobServerFactory]:
    factory = BlobServerFactory(request.config, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def server(blob_servers: BlobServerFactory) -> BlobServer:
    """A fresh server with apps alpha (tokA) and beta (tokB) and the default test config."""
    return blob_servers.start()


def wait_until(what: str, pred: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Polls `pred()` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())
