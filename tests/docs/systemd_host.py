"""`systemctl` and `journalctl` for the operations pages' test host, where systemd is not PID 1.

The host is a directory ($BERTH_HOST_ROOT) standing for `/`: the pages' `/etc/berth`,
`/var/lib/berth`, `/usr/local/bin`, `/etc/systemd/system` are under it. `systemctl start UNIT`
does what systemd does with the unit files of deploy/systemd/ installed there: it makes the
`StateDirectory=` (under `/var/lib/private` behind a link for a `DynamicUser=` unit), hands
over the `LoadCredential=` files in `$CREDENTIALS_DIRECTORY`, runs every `ExecStartPre=` (a
failure fails the start) and then `ExecStart=` in the background, its output to the unit's
journal; `stop` sends `KillSignal=` and waits up to `TimeoutStopSec=`; `reload` runs
`ExecReload=`. The unit's command lines are run as they are written, their paths moved under
the host directory, and the config file they name is handed over with every well-known
`127.0.0.1:PORT` moved to the free port the test chose for it ($BERTH_HOST_PORTS, JSON), so a
test never takes the machine's own 8098 or 7100. Users and sandboxing are not emulated.

    systemd_host.py systemctl [daemon-reload | start|enable --now|stop|restart|reload|status UNIT]
    systemd_host.py journalctl -u UNIT [-f]
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from docs.test_systemd_units import parse_unit, values

ROOT = Path(os.environ.get("BERTH_HOST_ROOT", "/nonexistent"))
# Where the host's paths are: the pages' absolute paths, moved under ROOT.
MOVED = (
    "/etc/berth",
    "/etc/systemd",
    "/var/lib/berth",
    "/var/lib/private",
    "/usr/local/bin",
)


def host_path(text: str) -> str:
    """`text` (a command line, a config file) with the host's paths moved under ROOT."""
    for prefix in MOVED:
        text = re.sub(
            rf"(?<![\w/]){re.escape(prefix)}(?=/|\b)", f"{ROOT}{prefix}", text
        )
    return text


def ported(text: str) -> str:
    """`text` with every well-known port moved to the test's free one."""
    ports: dict[str, int] = json.loads(os.environ.get("BERTH_HOST_PORTS", "{}"))
    for default, port in ports.items():
        text = re.sub(rf"127\.0\.0\.1:{default}\b", f"127.0.0.1:{port}", text)
    return text


def unit_file(unit: str) -> Path:
    name = unit if unit.endswith(".service") else f"{unit}.service"
    return ROOT / "etc" / "systemd" / "system" / name


def run_dir(unit: str) -> Path:
    d = ROOT / "run" / "systemd" / unit
    d.mkdir(parents=True, exist_ok=True)
    return d


def journal(unit: str) -> Path:
    d = ROOT / "var" / "log" / "journal"
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{unit}.log"


def main_pid(unit: str) -> int | None:
    pid_file = run_dir(unit) / "pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie (exited, not reaped by its parent, which is gone) is not running.
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None if state == "Z" else pid


def argv(unit: str, line: str) -> list[str]:
    """A command line of the unit, as it runs on the host."""
    words = shlex.split(host_path(line.lstrip("-@+!")))
    for i, word in enumerate(words):
        if words[i - 1] == "--config" and i > 0:
            config = Path(word)
            handed = run_dir(unit) / config.name
            handed.write_text(ported(host_path(config.read_text())))
            words[i] = str(handed)
    return words


def environment(unit: str, service: list[tuple[str, str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_HOST_")}
    creds = [v for k, v in service if k == "LoadCredential"]
    if creds:
        d = run_dir(unit) / "credentials"
        d.mkdir(exist_ok=True)
        for cred in creds:
            name, _, source = cred.partition(":")
            (d / name).write_bytes(Path(host_path(source)).read_bytes())
        env["CREDENTIALS_DIRECTORY"] = str(d)
    return env


def state_directories(service: list[tuple[str, str]]) -> None:
    dynamic = ("DynamicUser", "yes") in service
    for entry in (v for k, v in service if k == "StateDirectory"):
        for name in entry.split():
            link = ROOT / "var" / "lib" / name
            if not dynamic:
                link.mkdir(parents=True, exist_ok=True)
                continue
            real = ROOT / "var" / "lib" / "private" / name
            real.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink() and not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(real, link.parent))


def start(unit: str) -> int:
    if main_pid(unit) is not None:
        return 0
    path = unit_file(unit)
    if not path.exists():
        print(
            f"Failed to start {path.name}: Unit {path.name} not found.", file=sys.stderr
        )
        return 5
    service = parse_unit(path).get("Service", [])
    state_directories(service)
    env = environment(unit, service)
    log = journal(unit).open("ab")
    for pre in (v for k, v in service if k == "ExecStartPre"):
        done = subprocess.run(
            argv(unit, pre), env=env, stdout=log, stderr=log, timeout=60, check=False
        )
        if done.returncode != 0 and not pre.startswith("-"):
            print(
                f"Job for {path.name} failed: ExecStartPre exited {done.returncode}; "
                f"see journalctl -u {unit}",
                file=sys.stderr,
            )
            return 1
    exec_start = [v for k, v in service if k == "ExecStart"]
    proc = subprocess.Popen(
        argv(unit, exec_start[0]),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    (run_dir(unit) / "pid").write_text(str(proc.pid))
    return 0


def stop(unit: str) -> int:
    pid = main_pid(unit)
    if pid is None:
        return 0
    service = parse_unit(unit_file(unit)).get("Service", [])
    sig = (values({"Service": service}, "Service", "KillSignal") or ["SIGTERM"])[0]
    timeout = int(
        (values({"Service": service}, "Service", "TimeoutStopSec") or ["90"])[0]
    )
    os.kill(pid, getattr(signal, sig))
    deadline = time.monotonic() + timeout
    while main_pid(unit) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return 0


def reload(unit: str) -> int:
    pid = main_pid(unit)
    if pid is None:
        print(f"{unit}.service is not active, cannot reload.", file=sys.stderr)
        return 1
    service = parse_unit(unit_file(unit)).get("Service", [])
    for line in (v for k, v in service if k == "ExecReload"):
        done = subprocess.run(
            shlex.split(line.replace("$MAINPID", str(pid))), timeout=30, check=False
        )
        if done.returncode != 0:
            return done.returncode
    return 0


def status(unit: str) -> int:
    path = unit_file(unit)
    description = (values(parse_unit(path), "Unit", "Description") or [""])[0]
    pid = main_pid(unit)
    print(f"* {path.name} - {description}")
    print(f"     Loaded: loaded ({path}; enabled)")
    if pid is None:
        print("     Active: inactive (dead)")
        return 3
    print("     Active: active (running)")
    print(f"   Main PID: {pid} ({Path(os.readlink(f'/proc/{pid}/exe')).name})")
    return 0


def systemctl(args: list[str]) -> int:
    if args == ["daemon-reload"]:
        return 0
    verb, rest = args[0], args[1:]
    if verb == "enable" and rest[:1] == ["--now"]:
        verb, rest = "start", rest[1:]
    verbs = {"start": start, "stop": stop, "reload": reload, "status": status}
    if verb == "restart":
        return max(stop(u) for u in rest) or max(start(u) for u in rest)
    assert verb in verbs and rest, f"systemctl {' '.join(args)}: not emulated"
    return max(verbs[verb](u) for u in rest)


def journalctl(args: list[str]) -> int:
    assert args[0] == "-u", f"journalctl {' '.join(args)}: not emulated"
    log = journal(args[1])
    if "-f" in args[2:]:
        os.execvp("tail", ["tail", "-n", "10", "-f", str(log)])
    sys.stdout.write(log.read_text(errors="replace"))
    return 0


if __name__ == "__main__":
    tool = {"systemctl": systemctl, "journalctl": journalctl}[sys.argv[1]]
    sys.exit(tool(sys.argv[2:]))
