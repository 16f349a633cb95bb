"""`berth validate`: the offline deploy gates, through the real CLI, on real directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUESTBOOK = REPO / "examples" / "guestbook"
PYTHON = REPO / ".venv" / "bin" / "python"

MINIMAL = 'name = "demo"\nversion = "1.2.3"\nentry = "app:application"\n'
APP = "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'hi']\n"


@pytest.fixture(scope="module")
def berth(pytestconfig: pytest.Config) -> Path:
    binary = Path(pytestconfig.getoption("--bin-dir")) / "berth"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `cargo build --release -p berth-deployer`")
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} does not exist: scripts/test (or scripts/run) makes it")
    return binary


def validate(berth: Path, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(berth), "validate", str(directory), "--python", str(PYTHON), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def report(berth: Path, directory: Path, *args: str) -> dict:
    done = validate(berth, directory, "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] == (done.returncode == 0)
    return result


def gates(result: dict) -> dict[str, dict]:
    return {g["gate"]: g for g in result["gates"]}


def make_app(root: Path, manifest: str = MINIMAL, app: str = APP) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "berth.toml").write_text(manifest)
    (root / "app.py").write_text(app)
    return root


def test_the_guestbook_is_valid_and_needs_its_secret(berth: Path) -> None:
    done = validate(berth, GUESTBOOK)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "guestbook 1.0.0" in done.stdout
    assert "[warn] import" in done.stdout and "moderator_key" in done.stdout
    result = report(berth, GUESTBOOK)
    assert result["app"] == "guestbook" and result["entry"] == "main:application"
    bundle = gates(result)["bundle"]
    assert bundle["status"] == "passed" and "3 file(s)" in bundle["summary"]  # .berthignore
    assert result["digest"].startswith("sha256:")


def test_a_minimal_app_passes_every_gate(berth: Path, tmp_path: Path) -> None:
    result = report(berth, make_app(tmp_path / "demo"))
    assert [g["status"] for g in result["gates"]] == ["passed", "passed", "passed"]


def test_the_digest_changes_with_content_only(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo")
    first = report(berth, app)["digest"]
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert report(berth, app)["digest"] == first
    (app / "app.py").write_text(APP + "# changed\n")
    assert report(berth, app)["digest"] != first


def test_every_manifest_problem_is_listed(berth: Path, tmp_path: Path) -> None:
    manifest = (
        'name = "Demo"\nversion = "v1"\nentry = "app"\n'
        '[health]\npath = "health"\ninterval = "1ms"\n'
        '[env]\nBERTH_APP = "x"\n'
    )
    result = report(berth, make_app(tmp_path / "demo", manifest))
    g = gates(result)
    assert g["manifest"]["status"] == "failed"
    where = [f["where"] for f in g["manifest"]["findings"]]
    assert where == ["name", "version", "entry", "health.path", "health.interval", "env.BERTH_APP"]
    assert g["import"]["status"] == "skipped"
    human = validate(berth, tmp_path / "demo")
    assert human.returncode == 1
    assert "without the leading v" in human.stdout and "fix the FAIL lines" in human.stdout


def test_unknown_keys_and_a_missing_manifest(berth: Path, tmp_path: Path) -> None:
    result = report(berth, make_app(tmp_path / "a", MINIMAL + "entrypoint = 'x'\n"))
    finding = gates(result)["manifest"]["findings"][0]
    assert "entrypoint" in finding["message"] and "line 4" in finding["message"]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = report(berth, empty)
    assert "not found" in gates(result)["manifest"]["findings"][0]["message"]


def test_native_code_and_links_are_refused(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo")
    (app / "speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF....")
    shutil.copy(os.path.realpath(sys.executable), app / "tool")
    (app / "passwd").symlink_to("/etc/passwd")
    result = report(berth, app)
    findings = {f["where"]: f["message"] for f in gates(result)["bundle"]["findings"]}
    assert "compiled extension" in findings["speedups.cpython-311-x86_64-linux-gnu.so"]
    assert "native machine code" in findings["tool"]
    assert "symbolic link" in findings["passwd"]
    (app / ".berthignore").write_text("*.so\ntool\npasswd\n")
    assert report(berth, app)["ok"]


def test_size_limits(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo")
    (app / "data.bin").write_bytes(b"x" * 5000)
    result = report(berth, app, "--max-file-bytes", "4096")
    assert "per-file limit" in gates(result)["bundle"]["findings"][0]["message"]
    result = report(berth, app, "--max-files", "2")
    assert "over the limit of 2" in gates(result)["bundle"]["findings"][0]["message"]


def test_the_entry_module_must_be_in_the_bundle(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo", MINIMAL.replace("app:application", "web:application"))
    finding = gates(report(berth, app))["bundle"]["findings"][0]
    assert finding["where"] == "entry" and "web.py" in finding["message"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import no_such_dependency\n", "No module named 'no_such_dependency'"),
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("application = 42\n", "not a WSGI callable"),
        ("def app(): pass\n", "has no attribute 'application'"),
    ],
)
def test_the_import_gate_reports_why(
    berth: Path, tmp_path: Path, code: str, expected: str
) -> None:
    result = report(berth, make_app(tmp_path / "demo", app=code))
    g = gates(result)["import"]
    assert g["status"] == "failed"
    assert expected in g["findings"][0]["message"]


def test_the_import_gate_has_a_time_limit(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo", app="import time\ntime.sleep(60)\n" + APP)
    result = report(berth, app, "--import-timeout", "1")
    g = gates(result)["import"]
    assert g["status"] == "failed" and "over 1s" in g["findings"][0]["message"]


def test_the_import_gate_sees_the_manifest_env_and_no_secrets(berth: Path, tmp_path: Path) -> None:
    code = (
        "import os\n"
        "assert os.environ['GREETING'] == 'hi', os.environ\n"
        "assert os.environ['BERTH_APP'] == 'demo'\n"
        "assert 'BERTH_SECRETS_FILE' not in os.environ\n" + APP
    )
    app = make_app(tmp_path / "demo", MINIMAL + '[env]\nGREETING = "hi"\n', code)
    assert report(berth, app)["ok"]
    assert not (app / "__pycache__").exists()  # nothing written into the app's directory


def test_no_import_and_a_wrong_python(berth: Path, tmp_path: Path) -> None:
    app = make_app(tmp_path / "demo")
    assert gates(report(berth, app, "--no-import"))["import"]["status"] == "skipped"
    done = subprocess.run(
        [str(berth), "validate", str(app), "--python", "/nonexistent/python", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "BERTH_PYTHON" in json.loads(done.stdout)["gates"][2]["findings"][0]["message"]
