"""deploy/systemd/*.service: one unit per service, each runnable alone (docs/ops/systemd.md).

Each unit is parsed; its ExecStart= (and ExecStartPre=) must name one of our binaries, in
/usr/local/bin, with flags the binary's `--help` lists, `--config /etc/berth/<binary>.toml`
and the data directory systemd makes for it (StateDirectory=). The command line is then run
for real with the config path replaced by the sample config of docs/reference/samples/ and
`--print-config` appended, so the flags must also parse together. Finally
`systemd-analyze verify` checks every unit (with /usr/local/bin pointing at the built binaries).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .ops_support import binary, repo_path, run

UNIT_DIR = repo_path("deploy", "systemd")

#: unit file -> the binary it runs.
UNITS = {
    "berth-cache.service": "cache-server",
    "berth-blob.service": "blob-server",
    "berth-query.service": "query-proxy",
    "berth-logs.service": "log-collector",
    "berthd.service": "berthd",
    "berth-router.service": "berth-router",
}

#: Binaries that re-read something on SIGHUP (tenants, or the router's certificates).
RELOADS = {
    "cache-server",
    "blob-server",
    "query-proxy",
    "log-collector",
    "berth-router",
}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}:{n}: a setting before any [section]"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{n}: not KEY=VALUE: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= should be set once, found {found}"
    return found[0]


def help_text(exe: Path) -> str:
    p = run([exe, "--help"])
    assert p.returncode == 0, f"{exe} --help failed: {p.stderr}"
    return p.stdout


def flag_in_help(flag: str, text: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


def test_one_unit_per_service_and_nothing_else() -> None:
    found = sorted(p.name for p in UNIT_DIR.glob("*.service"))
    assert found == sorted(UNITS), f"deploy/systemd holds {found}, expected {sorted(UNITS)}"


@pytest.mark.parametrize("unit_name", sorted(UNITS))
def test_unit_runs_our_binary_with_real_flags(
    unit_name: str, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    name = UNITS[unit_name]
    unit = parse_unit(UNIT_DIR / unit_name)
    assert set(unit) == {"Unit", "Service", "Install"}, f"{unit_name}: sections {sorted(unit)}"
    exe = binary(pytestconfig, name)
    text = help_text(exe)

    start = shlex.split(one(unit, "Service", "ExecStart"))
    assert start[0] == f"/usr/local/bin/{name}", f"{unit_name}: ExecStart runs {start[0]}"
    flags = [a for a in start[1:] if a.startswith("-")]
    for flag in flags:
        assert flag_in_help(flag, text), f"{unit_name}: {name} --help does not list {flag}"
    assert start[1:3] == ["--config", f"/etc/berth/{name}.toml"], (
        f"{unit_name}: ExecStart must begin with --config /etc/berth/{name}.toml: {start}"
    )

    state = one(unit, "Service", "StateDirectory")
    assert state == f"berth/{name}", f"{unit_name}: StateDirectory={state}"
    if "--data-dir" in start:
        assert start[start.index("--data-dir") + 1] == f"/var/lib/{state}", (
            f"{unit_name}: --data-dir is not the StateDirectory"
        )
    elif name != "cache-server":  # the cache server has no data directory
        pytest.fail(f"{unit_name}: ExecStart does not pass --data-dir /var/lib/{state}")

    for pre in values(unit, "Service", "ExecStartPre"):
        argv = shlex.split(pre)
        assert argv[0] == start[0], f"{unit_name}: ExecStartPre runs {argv[0]}"
        assert argv[1:-1] == start[1:] and argv[-1] == "--check-config", (
            f"{unit_name}: ExecStartPre should be ExecStart plus --check-config: {pre}"
        )
        assert flag_in_help("--check-config", text), f"{name} has no --check-config"

    # The command line parses for real: the sample config in place of /etc/berth/<name>.toml,
    # a temporary directory in place of the state directory.
    sample = repo_path("docs", "reference", "samples", f"{name}.toml")
    assert sample.is_file(), f"missing the sample config {sample}"
    argv = [str(exe)] + [
        str(sample)
        if a == f"/etc/berth/{name}.toml"
        else str(tmp_path / "state")
        if a == f"/var/lib/{state}"
        else a
        for a in start[1:]
    ]
    p = run([*argv, "--print-config"])
    assert p.returncode == 0, f"{unit_name}: {' '.join(argv)} --print-config: {p.stderr}"
    if "--data-dir" in start:
        assert f'data_dir = "{tmp_path / "state"}"' in p.stdout, (
            f"{unit_name}: --data-dir did not reach the effective config:\n{p.stdout}"
        )

    svc = dict(unit["Service"])
    assert svc.get("Restart") == "on-failure", f"{unit_name}: Restart={svc.get('Restart')}"
    assert "network-online.target" in one(unit, "Unit", "After").split()
    assert "network-online.target" in one(unit, "Unit", "Wants").split()
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert int(svc["LimitNOFILE"]) >= 65536
    if name in RELOADS:
        assert svc.get("ExecReload") == "/bin/kill -HUP $MAINPID", f"{unit_name}: no reload"
    else:
        assert "ExecReload" not in svc, f"{name} does not handle SIGHUP: no ExecReload"
    if name == "berthd":
        # Root on purpose (app users, cgroups, iptables), and its instances outlive it.
        assert svc.get("User") == "root" and "DynamicUser" not in svc
        assert svc.get("KillMode") == "process"
        for opt in ("ProtectSystem", "PrivateTmp", "ProtectHome", "NoNewPrivileges"):
            assert opt not in svc, f"berthd.service must not set {opt}= (see its header)"
    else:
        assert svc.get("DynamicUser") == "yes", f"{unit_name}: not DynamicUser"
        for opt, want in (
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("PrivateTmp", "yes"),
            ("ProtectHome", "yes"),
        ):
            assert svc.get(opt) == want, f"{unit_name}: {opt}={svc.get(opt)}, want {want}"
        assert "KillMode" not in svc


def test_systemd_analyze_verify(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    for unit_name, name in UNITS.items():
        exe = binary(pytestconfig, name)
        text = (UNIT_DIR / unit_name).read_text()
        # verify insists that every command exists: point /usr/local/bin at the build.
        (tmp_path / unit_name).write_text(text.replace("/usr/local/bin/", f"{exe.parent}/"))
    p = subprocess.run(
        [tool, "verify", *sorted(str(tmp_path / u) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = (p.stdout + p.stderr).strip()
    # Lines about our units only: verify also reports on the host's own units it loads.
    ours = [ln for ln in out.splitlines() if any(u in ln for u in UNITS)]
    assert p.returncode == 0 and not ours, f"systemd-analyze verify:\n{out}"


def test_systemd_analyze_security(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """The five unprivileged units rate "OK" in systemd's own exposure score (berthd, root on
    purpose, does not: see its header)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    for unit_name, name in UNITS.items():
        if name == "berthd":
            continue
        exe = binary(pytestconfig, name)
        text = (UNIT_DIR / unit_name).read_text()
        (tmp_path / unit_name).write_text(text.replace("/usr/local/bin/", f"{exe.parent}/"))
        p = subprocess.run(
            [tool, "security", "--offline=yes", str(tmp_path / unit_name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", p.stdout + p.stderr)
        assert m, f"systemd-analyze security {unit_name}:\n{p.stdout}{p.stderr}"
        assert float(m.group(1)) <= 2.5 and m.group(2) == "OK", (
            f"{unit_name}: exposure {m.group(1)} {m.group(2)}"
        )
