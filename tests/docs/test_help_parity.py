"""`--help` and the docs agree: every flag a binary's help lists is documented on its page, every
`--flag` a page names for a binary exists, and every `berth …` command line in the docs' shell
examples names a real verb with real flags.

The pages: docs/cli.md for `berth` (all its verbs together), docs/ops/<binary>.md for each
service. The help texts come from the binaries in --bin-dir (default target/release).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

SERVICES = {
    "cache-server": DOCS / "ops" / "cache-server.md",
    "blob-server": DOCS / "ops" / "blob-server.md",
    "query-proxy": DOCS / "ops" / "query-proxy.md",
    "log-collector": DOCS / "ops" / "log-collector.md",
    "berthd": DOCS / "ops" / "berthd.md",
    "berth-router": DOCS / "ops" / "berth-router.md",
}

# Flags every clap binary has; documented once in general, not per page.
IMPLICIT = {"--help", "--version", "-h", "-V"}

# `--flag`s a service page names that belong to another program, each with why.
FOREIGN: dict[str, set[str]] = {
    "berthd": {
        "--ca-file",  # berth's, to trust berthd's TLS certificate
        "--registry",  # the services', to follow berthd's registry
        "--json",  # `berth status APP --json`
        "--backend",  # query-proxy's, the database berthd provisions apps on
    },
}

# An option line of clap's help: `  -p, --port <PORT>`, `      --json`, `  -m <MEGABYTES>`.
OPTION = re.compile(
    r"^\s{1,8}(?:(-[A-Za-z0-9])(?:,\s+|\s|$))?(--[a-z0-9][a-z0-9-]*)?", re.MULTILINE
)


@pytest.fixture(scope="module")
def bin_dir(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.getoption("--bin-dir"))


@cache
def _help(binary: Path, *args: str) -> str:
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `cargo build --release --workspace`")
    done = subprocess.run(
        [str(binary), *args, "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"{binary.name} {' '.join(args)} --help: {done.stderr}"
    return done.stdout


def flags(help_text: str, shorts: bool = False) -> set[str]:
    """The flags of one help text: long ones, and short ones without a long form (with
    `shorts`, every short one and alias too)."""
    section = help_text.split("Options:", 1)[1] if "Options:" in help_text else help_text
    found = set()
    for m in OPTION.finditer(section):
        short, long = m.group(1), m.group(2)
        if long:
            found.add(long)
        if short and (shorts or not long):
            found.add(short)
    if shorts:  # and aliases, `[alias: --follow]`
        for names in re.findall(r"\[(?:visible )?alias(?:es)?: ([^\]]+)\]", section):
            found |= set(re.findall(r"--?[a-z0-9][a-z0-9-]*", names))
    return found - IMPLICIT


def subcommands(help_text: str) -> list[str]:
    """The verbs of clap's `Commands:` section (without `help`)."""
    if "Commands:" not in help_text:
        return []
    body = help_text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    verbs = re.findall(r"^  ([a-z][a-z0-9-]*)\s", body, flags=re.MULTILINE)
    return [v for v in verbs if v != "help"]


@cache
def berth_commands(bin_dir: Path) -> dict[tuple[str, ...], set[str]]:
    """Every command path of `berth` (`()`, `("deploy",)`, `("config", "set")`) -> its flags."""
    berth = bin_dir / "berth"
    out: dict[tuple[str, ...], set[str]] = {}
    todo: list[tuple[str, ...]] = [()]
    while todo:
        path = todo.pop()
        text = _help(berth, *path)
        out[path] = flags(text, shorts=True)
        todo += [(*path, v) for v in subcommands(text)]
    return out


def documented(flag: str, page: str) -> bool:
    if flag.startswith("--"):
        return re.search(re.escape(flag) + r"(?![a-z0-9-])", page) is not None
    return re.search(r"`" + re.escape(flag) + r"[` ]", page) is not None


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")


def mentioned(page: str, binary: str) -> set[str]:
    """The `--flags` a page names for `binary`: in its code spans, and in the command lines of
    its code blocks that run `binary` (not `systemctl … --now`)."""
    found: set[str] = set()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", page, flags=re.DOTALL | re.MULTILINE)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", page, flags=re.DOTALL | re.MULTILINE)
    for span in re.findall(r"`([^`\n]+)`", prose):
        program = re.match(r"(?:\S*/)?([a-z][\w-]*) ", span)
        if program and program.group(1) != binary:
            continue  # `useradd --system`, `berth logs APP --grep …`: another program's
        found |= set(FLAG.findall(span))
    runs = re.compile(r"^\s*(?:\$\s*)?(?:\S*/)?" + re.escape(binary) + r"(?:\s|$)")
    for block in blocks:
        for line in re.sub(r"\\\n", " ", block).splitlines():
            if runs.match(line):
                found |= set(FLAG.findall(line.split("#", 1)[0]))
    return found


# -- berth ----------------------------------------------------------------------------------------


def test_every_berth_flag_is_in_the_cli_page(bin_dir: Path) -> None:
    page = (DOCS / "cli.md").read_text()
    commands = berth_commands(bin_dir)
    assert ("config", "set") in commands and ("apps", "create") in commands, sorted(commands)
    missing = [
        f"berth {' '.join(path)} {flag}"
        for path in sorted(commands)
        for flag in sorted(flags(_help(bin_dir / "berth", *path)))
        if not documented(flag, page)
    ]
    assert not missing, "in --help, not in docs/cli.md:\n" + "\n".join(missing)


def test_every_flag_the_cli_page_names_exists(bin_dir: Path) -> None:
    page = (DOCS / "cli.md").read_text()
    known = set().union(*berth_commands(bin_dir).values())
    unknown = sorted(mentioned(page, "berth") - known - IMPLICIT)
    assert not unknown, f"docs/cli.md names flags no berth verb has: {unknown}"


# -- the services ---------------------------------------------------------------------------------


def service_help(bin_dir: Path, binary: str) -> list[str]:
    """The help texts of a service and of its subcommands (`query-proxy provision`)."""
    top = _help(bin_dir / binary)
    return [top, *(_help(bin_dir / binary, verb) for verb in subcommands(top))]


@pytest.mark.parametrize("binary", sorted(SERVICES))
def test_every_service_flag_is_on_its_page(bin_dir: Path, binary: str) -> None:
    page = SERVICES[binary].read_text()
    texts = service_help(bin_dir, binary)
    missing = sorted({f for t in texts for f in flags(t) if not documented(f, page)})
    missing += [v for v in subcommands(texts[0]) if not re.search(rf"`{v}\b", page)]
    where = SERVICES[binary].relative_to(REPO)
    assert not missing, f"in {binary} --help, not in {where}: {missing}"


@pytest.mark.parametrize("binary", sorted(SERVICES))
def test_every_flag_a_service_page_names_exists(bin_dir: Path, binary: str) -> None:
    page = SERVICES[binary].read_text()
    known = {f for t in service_help(bin_dir, binary) for f in flags(t, shorts=True)}
    known |= IMPLICIT | FOREIGN.get(binary, set())
    unknown = sorted(mentioned(page, binary) - known)
    where = SERVICES[binary].relative_to(REPO)
    assert not unknown, f"{where} names flags {binary} lacks: {unknown}"


def test_berth_shims_flags_are_on_the_berthd_page(bin_dir: Path) -> None:
    # berth-shim is started by berthd only; its page is berthd's.
    page = SERVICES["berthd"].read_text()
    missing = sorted(f for f in flags(_help(bin_dir / "berth-shim")) if not documented(f, page))
    assert not missing, f"in berth-shim --help, not in docs/ops/berthd.md: {missing}"


# -- berth command lines in the docs --------------------------------------------------------------


def _doc_files() -> list[Path]:
    return [
        *sorted(DOCS.rglob("*.md")),
        REPO / "README.md",
        *sorted(REPO.glob("examples/*/README.md")),
    ]


def command_lines() -> list[tuple[str, str]]:
    """(where, command line) of each `berth …` in a sh/console/shell/bash code block."""
    found = []
    for path in _doc_files():
        text = path.read_text()
        for m in re.finditer(
            r"^```(?:sh|console|shell|bash)\n(.*?)^```",
            text,
            flags=re.DOTALL | re.MULTILINE,
        ):
            start = text.count("\n", 0, m.start()) + 2
            lines = m.group(1).splitlines()
            joined, first = "", 0
            for k, line in enumerate(lines):
                if not joined:
                    first = k
                if line.rstrip().endswith("\\"):
                    joined += line.rstrip()[:-1] + " "
                    continue
                joined += line
                if m.group(0).startswith("```console") and not joined.lstrip().startswith("$"):
                    joined = ""  # output, not a command
                    continue
                where = f"{path.relative_to(REPO)}:{start + first}"
                for cmd in re.split(r"\|\||&&|[|;]|\$\(", joined.lstrip().removeprefix("$ ")):
                    words = cmd.split("#", 1)[0].split()
                    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
                        words = words[1:]  # VAR=value before the command
                    if words and re.fullmatch(r"(?:\S*/)?berth", words[0]):
                        found.append((where, " ".join(words)))
                joined = ""
    return found


def test_the_docs_have_berth_command_lines() -> None:
    assert len(command_lines()) > 40, command_lines()


def test_every_berth_command_line_in_the_docs_is_real(bin_dir: Path) -> None:
    commands = berth_commands(bin_dir)
    wrong = []
    for where, line in command_lines():
        try:
            words = shlex.split(line)[1:]
        except ValueError:
            words = line.split()[1:]
        path: tuple[str, ...] = ()
        for w in words:
            if w.startswith("-"):
                break
            if (*path, w) in commands:
                path = (*path, w)
            elif path == () or subcommands(_help(bin_dir / "berth", *path)):
                wrong.append(f"{where}: {line}: no verb {' '.join((*path, w))!r}")
                break
            else:
                break  # an argument
        if path == ():
            continue  # `berth`, `berth --version`, or a wrong verb (reported above)
        for w in words:
            flag = w.split("=", 1)[0]
            if not re.fullmatch(r"--?[A-Za-z][A-Za-z0-9-]*", flag):
                continue
            if flag not in commands[path] and flag not in IMPLICIT:
                wrong.append(f"{where}: {line}: berth {' '.join(path)} has no {flag}")
    assert not wrong, "\n".join(wrong)
