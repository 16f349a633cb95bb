"""docs/reference/config/<binary>.toml is exactly what `<binary> --print-config` prints now.

The files are written by scripts/gen-config-docs and included by docs/ops/config-reference.md;
a config struct that changed without them fails here.
"""

from __future__ import annotations

import difflib
import tomllib

import pytest

from .ops_support import SERVICES, binary, repo_path, run

REF_DIR = repo_path("docs", "reference", "config")


def test_the_script_covers_every_service() -> None:
    script = repo_path("scripts", "gen-config-docs").read_text()
    listed = script.split("BINARIES=(", 1)[1].split(")", 1)[0].split()
    assert sorted(listed) == sorted(SERVICES), f"scripts/gen-config-docs lists {listed}"
    assert sorted(p.stem for p in REF_DIR.glob("*.toml")) == sorted(SERVICES), (
        "docs/reference/config/ should hold one file per service: run scripts/gen-config-docs"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_reference_matches_print_config(name: str, pytestconfig: pytest.Config) -> None:
    exe = binary(pytestconfig, name)
    p = run([exe, "--print-config"])
    assert p.returncode == 0, f"{name} --print-config failed: {p.stderr}"
    ref = REF_DIR / f"{name}.toml"
    assert ref.is_file(), f"{ref} is missing: run scripts/gen-config-docs"
    committed = ref.read_text()
    if committed != p.stdout:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(keepends=True),
                p.stdout.splitlines(keepends=True),
                f"docs/reference/config/{name}.toml",
                f"{name} --print-config",
            )
        )
        pytest.fail(
            f"docs/reference/config/{name}.toml is stale: run scripts/gen-config-docs "
            f"(then review the docs that describe the changed keys)\n{diff}",
            pytrace=False,
        )
    # What the docs show is itself a valid config for the binary.
    tomllib.loads(committed)
    again = run([exe, "--config", ref, "--print-config"])
    assert again.returncode == 0, f"{name} refuses its own defaults: {again.stderr}"
    assert again.stdout == committed, f"{name}: printing its printed config changes it"
