"""The commands of docs/benchmarks.md run, made tiny: the same scripts with the page's flags,
plus the flags each script has for its size (one round, one-second load runs, one deploy), so
that a script that no longer starts, takes a flag it no longer knows or cannot reach its servers
fails here. What they measure is not checked (a shared test host measures nothing); that each
printed its summary line is.

The scripts run from a directory laid out like the checkout (bench/, tests/, .venv,
.venv-runtime; CARGO_TARGET_DIR's release/ holding the binaries under test), so what they
write goes there. They need wrk, and MariaDB for the deploy benchmark (as the tests do).

How a page runs and what it promises: tests/docs/shell_pages.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .shell_pages import REPO_ROOT, Outputs, Setup, bin_dir, run_page


@pytest.mark.timeout(900)
def test_benchmarks_page(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.fail("the benchmarks need wrk: apt-get install wrk", pytrace=False)
    work = tmp_path / "checkout"
    (work / "target").mkdir(parents=True)
    (work / "target" / "release").symlink_to(bin_dir(request))
    for linked in (
        "bench",
        "tests",
        "examples",
        "python-client",
        ".venv",
        ".venv-runtime",
    ):
        (work / linked).symlink_to(REPO_ROOT / linked)

    def check(out: Outputs) -> None:
        # each printed its summary
        client = out.of("--skip-wsgi")
        assert "pymemcache" in client and "berth.cache" in client, client
        assert "log call" in client, client
        for handler in ("--handler sleep --duration", "--handler cpu", "--threads 16"):
            assert "ratio berth-router/direct:" in out.of(handler), out.of(handler)
        runs = [
            o
            for c, o in zip(out.commands, out.stdout, strict=True)
            if "deploy/" in c.text
        ]
        assert len(runs) == 3, runs
        for run in runs:
            assert "router vs direct" in run, run
        assert sum("median deploy" in run for run in runs) == 2, runs

    tiny = "--duration 1 --rounds 1"
    setup = Setup(
        env={
            "CARGO_TARGET_DIR": str(work / "target"),
            "BERTH_RUNTIME_PYTHON": os.environ.get("BERTH_RUNTIME_PYTHON", ""),
        },
        cwd=work,
        replacements=[
            ("--skip-wsgi --rounds 5", "--skip-wsgi --rounds 1 --pairs 500", ""),
            # nginx, the router's peer, is not installed on test machines
            ("--handler sleep  ", f"--handler sleep {tiny} --no-nginx  ", ""),
            ("--handler cpu", f"--handler cpu {tiny} --no-nginx", ""),
            ("--threads 16", f"--threads 16 {tiny} --no-nginx", ""),
            (
                "bench/deploy/run.sh  ",
                (
                    "bench/deploy/run.sh --deploys 1 --rollbacks 1 --pause 0 "
                    f"--app-threads 8 {tiny}  "
                ),
                "",
            ),
            (
                "--skip-deploys --log-rate 1000000",
                f"--skip-deploys --log-rate 1000000 --app-threads 8 {tiny}",
                "",
            ),
        ],
        check=check,
        timeout=800,
    )
    run_page("benchmarks.md", setup)


RUNS = {"benchmarks.md": test_benchmarks_page}
