"""The config samples and commands of the operations pages are real.

- Every `docs/reference/samples/*.toml` is loaded by the binary it is for
  (`--config FILE --print-config`: unknown keys, bad values and, for the blob server and the
  router, invalid settings are refused), with the files it names replaced by their samples.
- The systemd drop-ins there pass `systemd-analyze verify` beside the unit they extend, and
  hand over the file the matching sample config reads.
- The operations pages show TOML, INI and YAML only through `{{#include}}` of existing files, and
  every sample is shown somewhere.
- Every command line of those pages that runs one of our binaries uses flags (and
  subcommands) the binary's `--help` lists.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from .ops_support import binary, repo_path, run
from .test_systemd_units import parse_unit, values

SAMPLES = repo_path("docs", "reference", "samples")

PAGES = [
    repo_path("docs", "ops", name)
    for name in (
        "systemd.md",
        "config-reference.md",
        "upgrades.md",
        "backup.md",
        "monitoring.md",
        "security.md",
    )
] + [repo_path("docs", "scaling-out.md")]

#: sample -> the binary that loads it.
SAMPLE_BINARY = {
    "cache-server.toml": "cache-server",
    "cache-server-remote.toml": "cache-server",
    "blob-server.toml": "blob-server",
    "blob-server-registry.toml": "blob-server",
    "blob-server-s3.toml": "blob-server",
    "query-proxy.toml": "query-proxy",
    "query-proxy-cluster.toml": "query-proxy",
    "log-collector.toml": "log-collector",
    "log-collector-loki.toml": "log-collector",
    "log-collector-nats.toml": "log-collector",
    "berthd.toml": "berthd",
    "berthd-scaled.toml": "berthd",
    "berth-router.toml": "berth-router",
}

#: Files a sample names that the binary reads while loading its config, and the sample that
#: stands for each (the credentials file is parsed, with unknown keys refused).
READ_AT_LOAD = {
    "/run/credentials/berth-blob.service/s3": "blob-s3-credentials.toml",
}

#: Samples that are not a service's config, and the sample that names them.
AUXILIARY = {"blob-s3-credentials.toml": "blob-server-s3.toml"}

OUR_BINARIES = {
    "cache-server",
    "blob-server",
    "query-proxy",
    "log-collector",
    "berthd",
    "berth-router",
    "berth",
    "berth-shim",
}


def test_every_sample_is_known() -> None:
    found = {p.name for p in SAMPLES.glob("*.toml")}
    assert found == set(SAMPLE_BINARY) | set(AUXILIARY), (
        f"unlisted or missing samples: {sorted(found ^ (set(SAMPLE_BINARY) | set(AUXILIARY)))}"
    )


@pytest.mark.parametrize("sample", sorted(SAMPLE_BINARY))
def test_sample_loads(sample: str, pytestconfig: pytest.Config, tmp_path: Path) -> None:
    exe = binary(pytestconfig, SAMPLE_BINARY[sample])
    text = (SAMPLES / sample).read_text()
    for path, stand_in in READ_AT_LOAD.items():
        text = text.replace(f'"{path}"', f'"{SAMPLES / stand_in}"')
    cfg = tmp_path / sample
    cfg.write_text(text)
    p = run([exe, "--config", cfg, "--print-config"])
    assert p.returncode == 0, f"{exe.name} refuses docs/reference/samples/{sample}: {p.stderr}"


def test_auxiliary_samples_are_named_by_their_config() -> None:
    for aux, config in AUXILIARY.items():
        text = (SAMPLES / config).read_text()
        assert any(READ_AT_LOAD.get(path) == aux for path in re.findall(r'"(/[^"]+)"', text)), (
            f"{config} does not name the file {aux} stands for"
        )


def includes(page: Path) -> list[Path]:
    return [
        (page.parent / m).resolve()
        for m in re.findall(r"\{\{#include ([^}]+)\}\}", page.read_text())
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_shows_configs_only_through_includes(page: Path) -> None:
    text = page.read_text()
    for target in includes(page):
        assert target.is_file(), f"{page.name} includes {target}, which does not exist"
    for lang, body in re.findall(r"^ *```(toml|ini|yaml)\n(.*?)^ *```", text, re.M | re.S):
        lines = [ln for ln in body.splitlines() if ln.strip()]
        assert lines and all(ln.strip().startswith("{{#include ") for ln in lines), (
            f"{page.name}: a ```{lang} block written inline; put it in docs/reference/samples/ "
            f"and include it:\n{body}"
        )


def test_every_sample_is_shown() -> None:
    shown = {t for page in PAGES for t in includes(page)}
    for sample in [
        *SAMPLES.glob("*.toml"),
        *SAMPLES.glob("*.yml"),
        *SAMPLES.glob("systemd/*.conf"),
    ]:
        assert sample.resolve() in shown, f"no page includes {sample.relative_to(SAMPLES)}"


DROP_INS = {
    "registry-token.conf": (
        "berth-blob.service",
        "blob-server-registry.toml",
        "registry_token_file",
    ),
    "s3-credentials.conf": (
        "berth-blob.service",
        "blob-server-s3.toml",
        "credentials_file",
    ),
}


@pytest.mark.parametrize("drop_in", sorted(DROP_INS))
def test_drop_in(drop_in: str, pytestconfig: pytest.Config, tmp_path: Path) -> None:
    unit_name, sample, key = DROP_INS[drop_in]
    conf = parse_unit(SAMPLES / "systemd" / drop_in)
    creds = values(conf, "Service", "LoadCredential")
    assert len(creds) == 1, creds
    name, _, _source = creds[0].partition(":")
    want = f"/run/credentials/{unit_name}/{name}"
    assert f'{key} = "{want}"' in (SAMPLES / sample).read_text(), (
        f"{sample} should read {key} from {want}, the credential {drop_in} hands over"
    )
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    exe = binary(pytestconfig, "blob-server")
    unit = repo_path("deploy", "systemd", unit_name).read_text()
    (tmp_path / unit_name).write_text(unit.replace("/usr/local/bin/", f"{exe.parent}/"))
    (tmp_path / f"{unit_name}.d").mkdir()
    shutil.copy(SAMPLES / "systemd" / drop_in, tmp_path / f"{unit_name}.d" / drop_in)
    p = subprocess.run(
        [tool, "verify", str(tmp_path / unit_name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = (p.stdout + p.stderr).strip()
    ours = [ln for ln in out.splitlines() if unit_name in ln or drop_in in ln]
    assert p.returncode == 0 and not ours, f"systemd-analyze verify:\n{out}"


def shell_commands(page: Path) -> list[list[str]]:
    """Command lines of the page's ```sh blocks that run one of our binaries."""
    out = []
    for body in re.findall(r"^ *```sh\n(.*?)^ *```", page.read_text(), re.M | re.S):
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            for part in re.split(r"&&|\|\||;|\|", line):
                try:
                    words = shlex.split(part)
                except ValueError:
                    continue
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    words = words[1:]  # VAR=value before the command
                if words and Path(words[0]).name in OUR_BINARIES:
                    out.append(words)
    return out


def help_of(exe: Path, words: list[str]) -> tuple[list[str], str]:
    """The longest subcommand path among `words` that has its own --help, and that help."""
    path: list[str] = []
    text = run([exe, "--help"]).stdout
    for w in words:
        if w.startswith("-"):
            break
        p = run([exe, *path, w, "--help"])
        if p.returncode != 0 or p.stdout == text:
            break
        path.append(w)
        text = p.stdout
    return path, text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_use_real_flags(page: Path, pytestconfig: pytest.Config) -> None:
    for words in shell_commands(page):
        exe = binary(pytestconfig, Path(words[0]).name)
        _, text = help_of(exe, words[1:])
        for w in words[1:]:
            if w.startswith("--"):
                flag = w.split("=", 1)[0]
                assert re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text), (
                    f"{page.name}: `{' '.join(words)}`: {words[0]} does not take {flag}"
                )
