"""The cache-server binary from the outside: its flags, exit codes, files, signals and sockets.

Every test starts target/release/cache-server itself (not through the shared factory) because
the flags under test (-s, -d, -u, -l lists, --config ...) change how it binds and what it prints.
Readiness is read from the LISTEN lines, or polled with a deadline; nothing sleeps to wait.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest
from pymemcache.client.base import Client

from support.procs import REPO_ROOT, ServerProcess, free_port
from support.wire import Wire

from .conftest import BUILD_HINT

# Every test here drives Berth's own binary and reads its LISTEN lines: none applies to memcached.
pytestmark = pytest.mark.ours_only

MIB = 1024 * 1024
TOO_MANY = b"ERROR Too many open connections\r\n"
AUTH_FAILURE = b"CLIENT_ERROR authentication failure\r\n"
REVOKED = b"SERVER_ERROR authentication revoked\r\n"
RELOAD_REFUSED = "tenants reload refused"

T = TypeVar("T")


def poll(what: str, check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02,
         detail: Callable[[], str] = lambda: "") -> T:
    """Call `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s\n{detail()}")
        time.sleep(interval)


# -- the binary and the processes it starts ----------------------------------------------------


@pytest.fixture
def binary(request: pytest.FixtureRequest) -> Path:
    path = Path(request.config.getoption("--bin-dir")) / "cache-server"
    if not path.is_file():
        pytest.fail(f"{path} does not exist: {BUILD_HINT}", pytrace=False)
    return path


def run_cli(binary: Path, *args: str | Path, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run the binary to completion (for -h, -V, --check-config, --print-config)."""
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO_ROOT)


def describe_run(r: subprocess.CompletedProcess[str]) -> str:
    return f"command: {' '.join(map(str, r.args))}\nexit code: {r.returncode}\n" \
           f"stdout: {r.stdout[-2000:]!r}\nstderr: {r.stderr[-2000:]!r}"


@dataclass
class Started:
    """A server this file started, with what its LISTEN lines said."""

    proc: ServerProcess
    memcache: list[tuple[str, int]]
    unix: list[str]
    admin: tuple[str, int]

    @property
    def addr(self) -> tuple[str, int]:
        assert self.memcache, "no TCP memcache listener\n" + self.proc.describe()
        return self.memcache[0]

    def connect(self, addr: tuple[str, int] | None = None) -> Wire:
        return Wire(*(addr or self.addr))

    def stderr_count(self, text: str) -> int:
        return self.proc.stderr_tail(1 << 20).count(text)

    def wait_stderr(self, text: str, count: int = 1, timeout: float = 10.0) -> None:
        poll(f"{count}x {text!r} on stderr", lambda: self.stderr_count(text) >= count, timeout,
             detail=self.proc.describe)


class Launcher:
    """Starts cache-server processes for one test and stops them (by pid) at teardown."""

    def __init__(self, binary: Path, log_dir: Path) -> None:
        self.binary = binary
        self.log_dir = log_dir
        self.procs: list[ServerProcess] = []

    def start(self, *flags: str | Path, listen: str | None = "127.0.0.1", port: str | None = "0",
              udp: bool = True) -> Started:
        """Start with `flags`; `listen`/`port` None leave -l/-p out, `udp` False leaves -U out."""
        argv: list[str | Path] = [self.binary]
        if listen is not None:
            argv += ["-l", listen]
        if port is not None:
            argv += ["-p", port]
        if udp:
            argv += ["-U", "0"]
        argv += ["--admin-listen", "127.0.0.1:0", *flags]
        proc = ServerProcess([str(a) for a in argv], self.log_dir, f"cli-{len(self.procs)}")
        self.procs.append(proc)
        # The admin line is printed after every memcache line, so once it is there all are.
        admin = proc.wait_listen(["admin"])["admin"]
        memcache: list[tuple[str, int]] = []
        unix: list[str] = []
        for line in proc.stdout_lines():
            if line.startswith("LISTEN memcache unix:"):
                unix.append(line.removeprefix("LISTEN memcache unix:"))
            elif m := re.fullmatch(r"LISTEN memcache (\S+):(\d+)", line):
                memcache.append((m.group(1).strip("[]"), int(m.group(2))))
        return Started(proc, memcache, unix, admin)

    def stop_all(self) -> None:
        errors = []
        for proc in self.procs:
            try:
                proc.stop()
            except AssertionError as err:
                errors.append(str(err))
        assert not errors, "\n".join(errors)


@pytest.fixture
def launcher(binary: Path, tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(binary, tmp_path / "logs")
    yield launch
    launch.stop_all()


# -- /proc helpers -----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def proc_stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat fields after the command name: [state, ppid, pgrp, session, ...]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def kill_pid(pid: int) -> None:
    """Teardown for a process that is not our child: SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(m.group(1))
    return inodes


def inet_sockets(pid: int, proto: str) -> list[tuple[int, str]]:
    """(local port, state hex) of the process' `proto` ("tcp"/"udp") sockets, v4 and v6."""
    mine = socket_inodes(pid)
    out = []
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[9] in mine:
                out.append((int(cols[1].rsplit(":", 1)[1], 16), cols[3]))
    return out


def listening_tcp_ports(pid: int) -> set[int]:
    return {port for port, state in inet_sockets(pid, "tcp") if state == "0A"}


# -- memcached protocol helpers ----------------------------------------------------------------


class UnixWire(Wire):
    """A Wire over a unix stream socket instead of TCP."""

    # Not calling Wire.__init__, which dials TCP; the attributes are the ones Wire uses.
    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.host = path
        self.port = 0
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = bytearray()
        self.last_sent = b""
        self.eof = False


def login_request(app: str, token: str) -> bytes:
    cred = f"{app} {token}".encode()
    return b"set auth 0 0 %d\r\n" % len(cred) + cred + b"\r\n"


def login_reply(addr: tuple[str, int], app: str, token: str) -> bytes:
    """The reply line to a login on a fresh connection."""
    with Wire(*addr) as w:
        w.send(login_request(app, token))
        return w.read_line()


def tenants_toml(apps: dict[str, str], budget: str = "2MiB") -> str:
    return "".join(
        f'[[app]]\nname = "{name}"\ntoken = "{token}"\ncache_bytes = "{budget}"\n\n'
        for name, token in apps.items()
    )


def replace_file(path: Path, text: str) -> None:
    """Write atomically, so a reload never reads half a file."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- unix socket ---------------------------------------------------------------------------------


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose paths fit a unix socket address (108 bytes)."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="berth-cli-") as d:
        yield Path(d)


def test_unix_socket_with_mask_replaces_stale_file_and_serves(launcher: Launcher, short_dir: Path) -> None:
    path = short_dir / "cache.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays behind, as after a crash
    with pytest.raises(ConnectionRefusedError):
        UnixWire(str(path))

    srv = launcher.start("-s", path, "-a", "0770", listen=None, port=None)
    assert srv.unix == [str(path)], srv.proc.describe()
    assert srv.memcache == [], "TCP memcache listener despite -s\n" + srv.proc.describe()
    # Only the admin port listens on TCP: -s turns the memcached TCP port (11211 default) off.
    assert listening_tcp_ports(srv.proc.pid) == {srv.admin[1]}, srv.proc.describe()

    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), oct(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o770, oct(st.st_mode)

    with UnixWire(str(path)) as w:
        w.call(b"set raw 5 0 3\r\nabc\r\n", b"STORED\r\n")
        w.call(b"get raw\r\n", b"VALUE raw 5 3\r\nabc\r\nEND\r\n")
        settings = w.stats("settings")
        assert settings["domain_socket"] == str(path), settings
        assert settings["umask"] == "0770", settings

    client = Client(str(path), connect_timeout=5, timeout=5)  # pymemcache's unix form
    try:
        assert client.get(b"raw") == b"abc"
        assert client.set(b"py", b"from pymemcache", noreply=False) is True
    finally:
        client.close()
    with UnixWire(str(path)) as w:
        w.call(b"get py\r\n", b"VALUE py 0 15\r\nfrom pymemcache\r\nEND\r\n")


# -- daemon, pidfile, user -----------------------------------------------------------------------


def test_daemon_writes_pidfile_serves_and_sigterm_removes_it(binary: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "cache.pid"
    daemon_pid = None
    try:
        # With -d stdout goes to /dev/null, so no LISTEN line can say which port was picked:
        # pick one; if another process takes it first the daemon says so and we retry.
        for attempt in range(3):
            port = free_port()
            err_path = tmp_path / f"launcher-{attempt}.stderr"
            with open(tmp_path / f"launcher-{attempt}.stdout", "wb") as out, open(err_path, "wb") as err:
                argv = [str(binary), "-d", "-P", str(pidfile), "-p", str(port), "-l", "127.0.0.1",
                        "-U", "0", "--admin-listen", "127.0.0.1:0"]
                start = time.monotonic()
                # Files, not pipes: the daemon keeps stderr, and a pipe would stay open with it.
                parent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
                try:
                    code = parent.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    parent.kill()
                    parent.wait()
                    raise AssertionError(f"`{' '.join(argv)}` did not return within 5s")
            assert code == 0, f"launcher exited {code}: {err_path.read_text()!r}"
            assert time.monotonic() - start < 5

            def pid_or_bind_error() -> str | None:
                if pidfile.exists() and pidfile.read_text().endswith("\n"):
                    return pidfile.read_text()
                if "cannot listen" in err_path.read_text():
                    return "bind error"
                return None

            got = poll("the pidfile or a bind error", pid_or_bind_error, 10,
                       detail=lambda: f"daemon stderr: {err_path.read_text()!r}")
            if got == "bind error":
                continue
            pid_line = re.fullmatch(r"(\d+)\n", got)
            assert pid_line, f"pidfile holds {got!r}, not a pid and a newline"
            daemon_pid = int(pid_line.group(1))
            break
        else:
            pytest.fail("three free ports were taken before the daemon could bind them")

        assert daemon_pid != parent.pid
        assert pid_alive(daemon_pid), f"pid {daemon_pid} from the pidfile is not running"
        assert os.path.samefile(f"/proc/{daemon_pid}/exe", binary)
        fields = proc_stat_fields(daemon_pid)
        assert int(fields[3]) == daemon_pid, f"daemon is not a session leader (setsid): {fields[:4]}"
        assert int(fields[1]) != os.getpid()

        with Wire("127.0.0.1", port) as w:
            w.call(b"set d 0 0 6\r\ndaemon\r\n", b"STORED\r\n")
            w.call(b"get d\r\n", b"VALUE d 0 6\r\ndaemon\r\nEND\r\n")

        os.kill(daemon_pid, signal.SIGTERM)
        poll("daemon exit after SIGTERM", lambda: not pid_alive(daemon_pid), 10)
        poll("pidfile removal", lambda: not pidfile.exists(), 5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if daemon_pid is not None:
            kill_pid(daemon_pid)


@pytest.mark.skipif(os.geteuid() != 0, reason="-u needs root to switch users")
def test_user_flag_drops_privileges_and_serves(launcher: Launcher) -> None:
    nobody = pwd.getpwnam("nobody")
    srv = launcher.start("-u", "nobody")
    status = Path(f"/proc/{srv.proc.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    assert uids and gids, status
    # real, effective, saved and filesystem ids: none may stay root.
    assert uids.group(1).split() == [str(nobody.pw_uid)] * 4, uids.group(0)
    assert gids.group(1).split() == [str(nobody.pw_gid)] * 4, gids.group(0)
    groups = re.search(r"^Groups:\s*(.*)$", status, re.M)
    assert groups is not None and "0" not in groups.group(1).split(), groups
    with srv.connect() as w:
        w.call(b"set u 0 0 6\r\nnobody\r\n", b"STORED\r\n")
        w.call(b"get u\r\n", b"VALUE u 0 6\r\nnobody\r\nEND\r\n")


# -- --check-config and --print-config ------------------------------------------------------------


def test_check_config_accepts_a_good_config_without_binding(binary: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cache.toml"
    cfg.write_text('threads = 2\nmemory_limit = "32MiB"\nidle_timeout = "30s"\n')
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(tenants_toml({"alpha": "tokA", "beta": "tokB"}, budget="8MiB"))
    with socket.socket() as held:  # the port is taken: checking must not try to bind it
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = run_cli(binary, "--config", cfg, "--tenants", tenants, "-p", str(port), "--check-config")
    assert r.returncode == 0, describe_run(r)
    assert r.stdout.strip() == "configuration ok", describe_run(r)


@pytest.mark.parametrize("case", ["unknown-key", "item-size", "budgets-over-m", "malformed-tenants"])
def test_check_config_names_the_problem(binary: Path, tmp_path: Path, case: str) -> None:
    args: list[str | Path]
    if case == "unknown-key":
        cfg = tmp_path / "cache.toml"
        cfg.write_text("threads = 2\nbogus_key = 1\n")
        args, expect = ["--config", cfg], ["bogus_key", "unknown field", str(cfg)]
    elif case == "item-size":
        args, expect = ["-I", "512"], ["-I", "between 1k and 1024m"]
    elif case == "budgets-over-m":
        tenants = tmp_path / "tenants.toml"
        tenants.write_text(tenants_toml({"alpha": "tokA", "beta": "tokB"}, budget="2MiB"))
        args, expect = ["--tenants", tenants, "-m", "3"], ["more than the memory limit", "-m"]
    else:
        tenants = tmp_path / "tenants.toml"
        tenants.write_text('[[app]\nname = "alpha"\n')
        args, expect = ["--tenants", tenants], ["tenants file", str(tenants)]
    r = run_cli(binary, *args, "--check-config")
    assert r.returncode == 2, describe_run(r)
    assert "configuration ok" not in r.stdout, describe_run(r)
    for text in expect:
        assert text in r.stderr, f"{text!r} missing\n" + describe_run(r)


def test_print_config_round_trips_and_flags_override_the_file(binary: Path, launcher: Launcher,
                                                                tmp_path: Path) -> None:
    printed = run_cli(binary, "--print-config", "-t", "3", "-m", "96", "-c", "77")
    assert printed.returncode == 0, describe_run(printed)
    parsed = tomllib.loads(printed.stdout)
    assert (parsed["threads"], parsed["memory_limit"], parsed["max_connections"]) == (3, "96MiB", 77)
    cfg = tmp_path / "cache.toml"
    cfg.write_text(printed.stdout)

    check = run_cli(binary, "--config", cfg, "--check-config")
    assert check.returncode == 0 and check.stdout.strip() == "configuration ok", describe_run(check)
    again = run_cli(binary, "--config", cfg, "--print-config")
    assert again.returncode == 0 and again.stdout == printed.stdout, describe_run(again)
    overridden = run_cli(binary, "--config", cfg, "--print-config", "-t", "2")
    assert tomllib.loads(overridden.stdout)["threads"] == 2, describe_run(overridden)

    # The file says threads = 3 and listens on 11211/9211; the flags win, the rest of the file stays.
    srv = launcher.start("--config", cfg, "-t", "2")
    with srv.connect() as w:
        settings = w.stats("settings")
    assert settings["num_threads"] == "2", settings
    assert settings["maxbytes"] == str(96 * MIB), settings
    assert settings["maxconns"] == "77", settings
    assert srv.addr[1] != 11211 and srv.admin[1] != 9211


# -- memcached flags that are accepted with a warning ---------------------------------------------


def test_udp_port_and_unknown_extended_option_only_warn(launcher: Launcher) -> None:
    srv = launcher.start("-U", "11211", "-o", "slab_reassign,modern", udp=False)
    srv.wait_stderr("UDP is not supported; ignoring -U 11211")
    srv.wait_stderr("ignoring memcached option -o slab_reassign")
    assert srv.stderr_count("-o modern") == 0, srv.proc.describe()
    assert inet_sockets(srv.proc.pid, "udp") == [], "a UDP socket is open despite the warning"
    with srv.connect() as w:
        w.call(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")


def test_help_lists_the_memcached_flags(binary: Path) -> None:
    r = run_cli(binary, "-h")
    assert r.returncode == 0, describe_run(r)
    for flag in ["-p", "-U", "-l", "-s", "-a", "-m", "-M", "-c", "-t", "-I", "-R", "-C", "-F",
                 "-A", "-Y", "-u", "-d", "-P", "-v", "-o", "-h", "-V"]:
        assert re.search(rf"^\s*{flag},? ", r.stdout, re.M), f"{flag} missing\n" + r.stdout
    for long_flag in ["--config", "--print-config", "--check-config", "--tenants", "--admin-listen"]:
        assert long_flag in r.stdout, f"{long_flag} missing\n" + r.stdout


def test_version(binary: Path) -> None:
    r = run_cli(binary, "-V")
    assert r.returncode == 0, describe_run(r)
    assert re.fullmatch(r"cache-server \d+\.\d+\.\d+\S*\n", r.stdout), describe_run(r)


# -- tenants: -Y budgets and SIGHUP reloads -------------------------------------------------------


def test_authfile_users_split_the_default_memory_limit(launcher: Launcher, tmp_path: Path) -> None:
    authfile = tmp_path / "authfile"
    authfile.write_text("alpha:tokA\nbeta:tokB\n")
    srv = launcher.start("-Y", authfile)
    for app, token in (("alpha", "tokA"), ("beta", "tokB")):
        with srv.connect() as w:
            w.call(login_request(app, token), b"STORED\r\n")
            stats = w.stats()
        assert stats["limit_maxbytes"] == str(32 * MIB), (app, stats.get("limit_maxbytes"))


@pytest.fixture
def reloadable(launcher: Launcher, tmp_path: Path) -> tuple[Started, Path]:
    """A server with app alpha from a --tenants file, -m 8, proven to have its SIGHUP handler."""
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(tenants_toml({"alpha": "tokA"}))
    srv = launcher.start("--tenants", tenants, "-m", "8")
    # A served request means the listeners run, and they only run once the reload handler is
    # installed; before that SIGHUP's default action would kill the process.
    assert login_reply(srv.addr, "alpha", "tokA") == b"STORED\r\n"
    return srv, tenants


def test_sighup_adds_and_removes_apps(reloadable: tuple[Started, Path]) -> None:
    srv, tenants = reloadable
    assert login_reply(srv.addr, "beta", "tokB") == AUTH_FAILURE

    replace_file(tenants, tenants_toml({"alpha": "tokA", "beta": "tokB"}))
    srv.proc.send_signal(signal.SIGHUP)
    poll("beta can log in after the reload",
         lambda: login_reply(srv.addr, "beta", "tokB") == b"STORED\r\n", detail=srv.proc.describe)

    alpha = srv.connect()
    try:
        alpha.call(login_request("alpha", "tokA"), b"STORED\r\n")
        alpha.call(b"set mine 0 0 1\r\na\r\n", b"STORED\r\n")
        replace_file(tenants, tenants_toml({"beta": "tokB"}))
        srv.proc.send_signal(signal.SIGHUP)
        # The removed app's open connection is told, then closed, without sending anything.
        alpha.expect(REVOKED, timeout=10)
        alpha.expect_eof(timeout=5)
    finally:
        alpha.close()
    assert login_reply(srv.addr, "alpha", "tokA") == AUTH_FAILURE
    with srv.connect() as beta:
        beta.call(login_request("beta", "tokB"), b"STORED\r\n")
        beta.call(b"get mine\r\n", b"END\r\n")
    assert srv.proc.proc.poll() is None, srv.proc.describe()


@pytest.mark.parametrize("broken", ["malformed", "over-memory-limit"])
def test_sighup_with_a_bad_file_keeps_the_previous_set(reloadable: tuple[Started, Path],
                                                       broken: str) -> None:
    srv, tenants = reloadable
    alpha = srv.connect()
    try:
        alpha.call(login_request("alpha", "tokA"), b"STORED\r\n")
        if broken == "malformed":
            replace_file(tenants, '[[app]\nname = "gamma"\ntoken = "tokG"\n')
        else:
            # 2 MiB + 64 MiB reserved inside -m 8: refused as a whole.
            replace_file(tenants, tenants_toml({"alpha": "tokA"}) +
                         tenants_toml({"gamma": "tokG"}, budget="64MiB"))
        before = srv.stderr_count(RELOAD_REFUSED)
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_stderr(RELOAD_REFUSED, count=before + 1)
        assert srv.proc.proc.poll() is None, srv.proc.describe()
        # The open connection keeps its login, new logins use the old set.
        alpha.call(b"set still 0 0 2\r\nok\r\n", b"STORED\r\n")
        assert login_reply(srv.addr, "alpha", "tokA") == b"STORED\r\n"
        assert login_reply(srv.addr, "gamma", "tokG") == AUTH_FAILURE
    finally:
        alpha.close()


# -- connection limits and idle connections -------------------------------------------------------


def second_loopback() -> str | None:
    """127.0.0.2 if this host lets us bind it (Linux routes all of 127/8 to lo)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            return None
    return "127.0.0.2"


def test_connection_limit_is_shared_by_all_listeners(launcher: Launcher) -> None:
    # Two listeners on two addresses; where 127.0.0.2 cannot be bound, two ports of 127.0.0.1
    # still make two listeners, which is what shares (or fails to share) the limit.
    other = second_loopback() or "127.0.0.1"
    srv = launcher.start("-c", "1", listen=f"127.0.0.1:0,{other}:0")
    assert len(srv.memcache) == 2 and srv.memcache[0] != srv.memcache[1], srv.proc.describe()
    first, second = srv.memcache

    held = srv.connect(first)
    try:
        held.sync()  # accepted and counted
        for addr in (second, first):
            with srv.connect(addr) as extra:
                extra.expect(TOO_MANY)
                extra.expect_eof()
        held.sync()  # the held connection is unaffected
    finally:
        held.close()

    def second_serves() -> bool:
        with srv.connect(second) as w:
            w.send(b"mn\r\n")
            line = w.read_line()
            assert line in (b"MN\r\n", TOO_MANY), line
            return line == b"MN\r\n"

    # The slot frees once the server notices the close.
    poll("a connection on the other listener after the first closed", second_serves,
         detail=srv.proc.describe)


@pytest.mark.slow
def test_idle_timeout_closes_only_idle_connections(launcher: Launcher) -> None:
    srv = launcher.start("-o", "idle_timeout=1")
    idle = srv.connect()
    busy = srv.connect()
    try:
        idle.sync()
        busy.sync()
        start = time.monotonic()
        # busy sends a request every 0.3 s, idle nothing: only idle may be closed.
        while not idle.eof and time.monotonic() - start < 4:
            busy.sync()
            unexpected = idle.read_available(0.3)
            assert unexpected == b"", f"idle connection was sent {unexpected!r}"
        elapsed = time.monotonic() - start
        assert idle.eof, "idle connection still open after 4s with -o idle_timeout=1"
        assert 0.8 <= elapsed <= 3.0, f"idle connection closed after {elapsed:.2f}s"
        busy.sync()
        with srv.connect() as w:
            assert w.stats("settings")["idle_timeout"] == "1"
    finally:
        idle.close()
        busy.close()
