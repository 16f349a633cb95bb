"""Test an app against the real Berth services, in a fresh namespace, in-process or served.

`Services` starts private instances of the Berth binaries (the ones the run command builds:
cache-server, blob-server, log-collector, query-proxy) on free ports, with a freshly made app
(random name and token) that owns an empty cache, blob store, log stream and database; `stop()`
removes them again (the database too). `Client` calls a WSGI app in-process; `serve()` runs it
under `python -m berth.runtime serve`, exactly as the platform does.

    import pytest
    from berth import testing

    @pytest.fixture(scope="session")
    def services():
        with testing.Services() as services:
            yield services

    def test_home_page(services):
        with services.use():                 # BERTH_* environment + berth.config reloaded
            import main
            response = testing.Client(main.application).get("/")
        assert response.status == 200

Binaries are looked up in `BERTH_BIN_DIR`, then `target/release` of the enclosing Berth
checkout, then `PATH`. The database needs a MariaDB that the test may administer:
`BERTH_TEST_MARIADB` (`host:port`, default `127.0.0.1:3306`), `BERTH_TEST_MARIADB_USER`
(default `root`) and `BERTH_TEST_MARIADB_PASSWORD` (default empty); pass `db=False` to do
without.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from berth import config

__all__ = [
    "Client",
    "LocalServer",
    "Process",
    "Response",
    "Services",
    "ServicesError",
    "find_binary",
    "free_port",
    "serve",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ServicesError(RuntimeError):
    """A service could not be found or started; the message says how to fix it."""


def free_port() -> int:
    """A TCP port nothing listens on (bound and released a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_binary(name: str, bin_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Berth binary `name`: in `bin_dir`, `BERTH_BIN_DIR`, the checkout's `target/release`
    (searched upward from this file and from the working directory), or `PATH`."""
    candidates: list[Path] = []
    for d in (bin_dir, os.environ.get("BERTH_BIN_DIR")):
        if d:
            candidates.append(Path(d) / name)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for parent in start.parents:
            if (parent / "Cargo.toml").exists() and (parent / "target").is_dir():
                candidates.append(parent / "target" / "release" / name)
                break
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return Path(found)
    looked = ", ".join(str(c) for c in candidates) or "(no candidates)"
    raise ServicesError(
        f"the Berth binary {name!r} was not found (looked in {looked} and PATH): build it with "
        "`cargo build --release --workspace --bins` in the Berth checkout (scripts/run does), "
        "or set BERTH_BIN_DIR"
    )


class Process:
    """One server process, ready once it printed `LISTEN <kind> host:port` on stdout for every
    kind in `kinds`; `ports` maps each kind to its port. Stopped with SIGTERM (then SIGKILL).
    `command()` gives the argv of each start, so a subclass can keep its ports on `restart()`.
    """

    def __init__(
        self,
        argv: list[str],
        kinds: Iterable[str],
        log_dir: Path,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.argv = argv
        self.kinds = tuple(kinds)
        self.log_dir = log_dir
        self.name = name
        self.env = dict(env) if env is not None else None
        self.ready_timeout = ready_timeout
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.start()

    def command(self) -> list[str]:
        """The argv of the next start."""
        return self.argv

    def start(self) -> None:
        """Starts the process and waits until it is ready; raises `ServicesError` if not."""
        self._starts += 1
        stderr_path = self.log_dir / f"{self.name}.{self._starts}.log"
        argv = self.command()
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=None if self.env is None else {**os.environ, **self.env},
            )
        lines: list[str] = []
        found = threading.Event()
        wanted = set(self.kinds)

        def read(stdout: IO[bytes]) -> None:
            with stdout:
                for raw in stdout:
                    line = raw.decode("utf-8", "replace").strip()
                    lines.append(line)
                    parts = line.split()
                    if len(parts) == 3 and parts[0] == "LISTEN" and parts[1] in wanted:
                        self.ports[parts[1]] = int(parts[2].rsplit(":", 1)[1])
                        if wanted <= self.ports.keys():
                            found.set()
            found.set()  # EOF: the process is gone; the check below reports it

        assert self.proc.stdout is not None
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        ready = found.wait(self.ready_timeout) and wanted <= self.ports.keys()
        if not ready or self.proc.poll() is not None:
            self.stop(check=False)
            raise ServicesError(
                f"{' '.join(argv)} did not print LISTEN lines for {sorted(wanted)} within "
                f"{self.ready_timeout:g}s\nstdout: {lines}\n"
                f"stderr: {stderr_path.read_text(errors='replace')[-3000:]}"
            )

    def stop(self, *, check: bool = True) -> None:
        """SIGTERM, then SIGKILL after 10 s (an error when `check`)."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                if check:
                    raise ServicesError(f"{self.name} ignored SIGTERM for 10s") from None

    def restart(self) -> None:
        """Stops and starts it again."""
        self.stop()
        self.start()


def _mariadb() -> tuple[str, int, str, str]:
    host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
    return (
        host,
        int(port or 3306),
        os.environ.get("BERTH_TEST_MARIADB_USER", "root"),
        os.environ.get("BERTH_TEST_MARIADB_PASSWORD", ""),
    )


@dataclass
class Services:
    """Private Berth services for one fresh app; a context manager (`start()`/`stop()`).

    `app` defaults to a random name (`t` + 10 hex digits); `limits` are extra tenant keys for
    it (e.g. `{"blob_bytes": '"10MiB"'}`, values in TOML syntax). `cache`, `blobs`, `logs` and
    `db` pick the services to start. Logs and data go under `work_dir` (default: a temporary
    directory removed by `stop()`).
    """

    app: str = field(default_factory=lambda: "t" + secrets.token_hex(5))
    cache: bool = True
    blobs: bool = True
    logs: bool = True
    db: bool = True
    limits: Mapping[str, str] = field(default_factory=dict)
    bin_dir: str | None = None
    work_dir: Path | None = None
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    processes: dict[str, Process] = field(default_factory=dict, init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)
    _provisioned: list[str] | None = field(default=None, init=False)

    def __enter__(self) -> Services:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def dir(self) -> Path:
        assert self.work_dir is not None, "start() first"
        return self.work_dir

    def start(self) -> None:
        """Starts the chosen services (and provisions the app's database)."""
        if self.work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="berth-testing-")
            self.work_dir = Path(self._tmp.name)
        d = self.dir
        (d / "scratch").mkdir(exist_ok=True)
        tenant = [f'[[app]]\nname = "{self.app}"\ntoken = "{self.token}"\n']
        tenant += [f"{k} = {v}\n" for k, v in self.limits.items()]
        (d / "tenants.toml").write_text("".join(tenant))
        secrets_file = d / "secrets.toml"
        secrets_file.write_text(f"token = {json.dumps(self.token)}\n[secrets]\n")
        secrets_file.chmod(0o600)
        tenants = ["--tenants", str(d / "tenants.toml")]
        try:
            if self.cache:
                self._start(
                    "cache-server",
                    ["-p", "0", "-l", "127.0.0.1", "--admin-listen", "127.0.0.1:0", *tenants],
                    ["memcache"],
                )
            if self.blobs:
                (d / "blob-data").mkdir(exist_ok=True)
                # A small metadata log: its two files are written full of zeros at start
                # (64 MiB each by default), which a test's throwaway store does not need.
                (d / "blob.toml").write_text('meta_log_size = "1MiB"\n')
                self._start(
                    "blob-server",
                    [
                        *("--config", str(d / "blob.toml")),
                        *("--data-dir", str(d / "blob-data"), "--listen", "127.0.0.1:0"),
                        *("--admin-listen", "127.0.0.1:0", *tenants),
                    ],
                    ["http"],
                )
            if self.logs:
                (d / "log-data").mkdir(exist_ok=True)
                self._start(
                    "log-collector",
                    [
                        *("--data-dir", str(d / "log-data"), "--listen-json", "127.0.0.1:0"),
                        *("--listen-http", "127.0.0.1:0", "--listen-syslog", ""),
                        # No OTLP listener: its default port (4317) would clash between
                        # two Services, or with a Berth running on the machine.
                        *("--listen-otlp", ""),
                        *("--admin-listen", "127.0.0.1:0", *tenants),
                    ],
                    ["json", "http"],
                )
            if self.db:
                self._start_db(tenants)
        except BaseException:
            self.stop()
            raise

    def _start(
        self, name: str, args: list[str], kinds: list[str], env: Mapping[str, str] | None = None
    ) -> None:
        binary = find_binary(name, self.bin_dir)
        self.processes[name] = Process([str(binary), *args], kinds, self.dir, name, env=env)

    def _start_db(self, tenants: list[str]) -> None:
        host, port, user, password = _mariadb()
        d = self.dir
        conf = d / "query-proxy.toml"
        conf.write_text(f'backend = "{host}:{port}"\nbackend_admin_user = "{user}"\n')
        env = {
            "BERTH_QUERY_BACKEND_SECRET": secrets.token_hex(32),
            "BERTH_QUERY_ADMIN_PASSWORD": password,
        }
        binary = find_binary("query-proxy", self.bin_dir)
        base = [str(binary), "--config", str(conf)]
        self._provisioned = base
        self._env_db = env
        done = subprocess.run(
            [*base, "provision", self.app],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            self._provisioned = None
            raise ServicesError(
                f"could not provision a database for {self.app} on MariaDB {host}:{port} as "
                f"{user!r} (set BERTH_TEST_MARIADB, BERTH_TEST_MARIADB_USER, "
                f"BERTH_TEST_MARIADB_PASSWORD, or pass db=False): {done.stderr.strip()[-2000:]}"
            )
        args = [
            *("--config", str(conf), *tenants, "--data-dir", str(d / "query-data")),
            *("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
        ]
        self.processes["query-proxy"] = Process(
            [str(binary), *args], ["mysql"], d, "query-proxy", env=env
        )

    def stop(self) -> None:
        """Stops every service, drops the app's database, removes a temporary work dir."""
        for proc in reversed(list(self.processes.values())):
            proc.stop(check=False)
        self.processes.clear()
        if self._provisioned is not None:
            subprocess.run(
                [*self._provisioned, "deprovision", self.app],
                env={**os.environ, **self._env_db},
                capture_output=True,
                timeout=60,
            )
            self._provisioned = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.work_dir = None

    def environ(self, **extra: str) -> dict[str, str]:
        """The runtime contract for the app, as the deployer would set it (plus `extra`)."""
        p = self.processes
        env = {
            "BERTH_APP": self.app,
            "BERTH_VERSION": "0.0.0-test",
            "BERTH_INSTANCE": f"{self.app}-test-{os.getpid()}",
            "BERTH_SECRETS_FILE": str(self.dir / "secrets.toml"),
            "BERTH_SCRATCH_DIR": str(self.dir / "scratch"),
        }
        if "cache-server" in p:
            env["BERTH_CACHE_SERVERS"] = f"127.0.0.1:{p['cache-server'].ports['memcache']}"
        if "blob-server" in p:
            env["BERTH_BLOB_URL"] = f"http://127.0.0.1:{p['blob-server'].ports['http']}"
        if "log-collector" in p:
            env["BERTH_LOG_ADDR"] = f"127.0.0.1:{p['log-collector'].ports['json']}"
        if "query-proxy" in p:
            env["BERTH_DB_HOST"] = "127.0.0.1"
            env["BERTH_DB_PORT"] = str(p["query-proxy"].ports["mysql"])
            env["BERTH_DB_NAME"] = "app_" + self.app.replace("-", "_")
        env.update(extra)
        return env

    def set_secrets(self, **values: str) -> None:
        """Writes `values` into the app's secrets file (`berth.config.secret()` reads them
        after the next `config.reload()`; `use()` reloads)."""
        lines = [f"token = {json.dumps(self.token)}\n", "[secrets]\n"]
        lines += [f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in values.items()]
        (self.dir / "secrets.toml").write_text("".join(lines))

    @contextlib.contextmanager
    def use(self, **extra: str) -> Iterator[config.Config]:
        """Within the block, `os.environ` holds `environ(**extra)` and `berth.config` is
        reloaded from it; both are put back afterwards."""
        env = self.environ(**extra)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield config.reload()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            config.reload()

    def log_url(self) -> str:
        """The log collector's HTTP read API, e.g. for `events()`."""
        return f"http://127.0.0.1:{self.processes['log-collector'].ports['http']}"

    def events(self, **params: str) -> list[dict[str, Any]]:
        """The app's stored log events (the collector's `GET /v1/apps/{app}/events`)."""
        import urllib.request

        query = urllib.parse.urlencode({"limit": "1000", **params})
        request = urllib.request.Request(
            f"{self.log_url()}/v1/apps/{self.app}/events?{query}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.load(response)
        found: list[dict[str, Any]] = body["events"]
        return found


# -- in-process WSGI client -----------------------------------------------------------------------


@dataclass
class Response:
    """What the app answered: `status` (e.g. 200), `reason`, `headers`, `body`."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header called `name` (any case), or None."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Calls a WSGI `app` in this process, as a server would (WSGI 1.0.1, PEP 3333).

    `script_name` mounts it under a prefix, as berth-router's prefix routes do: the app sees
    it as `SCRIPT_NAME` and the rest of the path as `PATH_INFO`.
    """

    def __init__(self, app: WSGIApp, *, host: str = "localhost", script_name: str = "") -> None:
        self.app = app
        self.host = host
        self.script_name = script_name.rstrip("/")

    def get(self, path: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(
        self,
        path: str,
        *,
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """POSTs `body`, or `form` fields (urlencoded), or `form` plus `files` (multipart:
        name -> (filename, bytes, content type))."""
        if files:
            boundary = uuid.uuid4().hex
            parts: list[bytes] = []
            for name, value in (form or {}).items():
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode()
                )
            for name, (filename, data, ctype) in files.items():
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                    f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
                    + data
                    + b"\r\n"
                )
            parts.append(f"--{boundary}--\r\n".encode())
            body = b"".join(parts)
            content_type = f"multipart/form-data; boundary={boundary}"
        elif form is not None:
            body = urllib.parse.urlencode(form).encode()
            content_type = "application/x-www-form-urlencoded"
        return self.request(
            "POST", path, body=body or b"", content_type=content_type, headers=headers
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Calls the app once and collects its whole answer (closing the iterable)."""
        path_part, _, query = path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": self.script_name,
            "PATH_INFO": urllib.parse.unquote(path_part),
            "QUERY_STRING": query,
            "SERVER_NAME": self.host,
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": self.host,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)) if body else "",
        }
        if content_type:
            environ["CONTENT_TYPE"] = content_type
        for name, value in (headers or {}).items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ[f"HTTP_{key}"] = value
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and started:
                raise exc_info[1].with_traceback(exc_info[2])
            started[:] = [(status, response_headers)]
            return chunks.append

        chunks: list[bytes] = []
        result = self.app(environ, start_response)
        try:
            for chunk in result:
                chunks.append(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise AssertionError("the app returned without calling start_response")
        status, response_headers = started[0]
        code, _, reason = status.partition(" ")
        return Response(int(code), reason, list(response_headers), b"".join(chunks))


# -- served by the real runtime -------------------------------------------------------------------


@dataclass
class LocalServer:
    """An app served by `python -m berth.runtime serve` in a child process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    entry: str,
    environ: Mapping[str, str],
    *,
    cwd: str | os.PathLike[str],
    processes: int = 1,
    threads: int = 4,
    log_path: Path | None = None,
    ready_timeout: float = 30.0,
) -> LocalServer:
    """Serves `entry` from the app directory `cwd` with the runtime contract `environ` (e.g.
    `Services.environ()`) on a free port, and waits until it answers HTTP."""
    port = free_port()
    log_path = log_path or Path(tempfile.mkstemp(prefix="berth-serve-", suffix=".log")[1])
    argv = [
        sys.executable, "-m", "berth.runtime", "serve", entry,
        "--bind", f"127.0.0.1:{port}", "--processes", str(processes), "--threads", str(threads),
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **environ}, stdout=log, stderr=subprocess.STDOUT
        )
    server = LocalServer(proc, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise ServicesError(
                    f"{' '.join(argv)} did not listen on {port} within {ready_timeout:g}s: "
                    f"{log_path.read_text(errors='replace')[-3000:]}"
                ) from None
            time.sleep(0.05)
