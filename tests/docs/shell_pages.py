"""Running the ```sh and ```console samples of a docs page, shared by the tests that do it
(test_shell_samples.py: the wire-protocol pages, and the rule over every page;
test_shell_ops.py: the operations pages; test_shell_platform.py: the pages that need the
whole platform; test_shell_benchmarks.py: the benchmark commands).

A page's shell blocks run in order in one bash session (so a block can use what an earlier one
exported), from a directory the test chose, against real servers the test started.
`Setup.replacements` map what a page shows (a development setup's addresses, paths, tokens)
onto those servers, and a replacement that no longer matches the page fails the test, so the
page and the test cannot drift apart. Every command must exit 0, unless its setup says which
other status it ends with (a command that follows a stream forever is cut off by a timeout the
test adds).

A page promises outputs, which are checked:

- in a ```sh block, a comment line that starts with `{`, `[` or `"` is a line of the output of
  the command before it (`# {"ack":1}`), and a trailing comment `# "text"` (or
  `# "text", prose`) on a command is its whole output, without the quotes;
- in a ```console block, `$ ` lines are commands and the lines after one, up to the next, what
  the terminal shows (stdout and stderr, in order); none means it shows nothing;
- `…` in a promised output stands for any text (a hash, a time), as `...` does in a console
  block, and a line of its own `...` (or `…`) for any lines; runs of spaces match runs of
  spaces (table columns follow the width of what they hold).

Other comments are prose. Each block starts in the directory the page runs in. What happens
off the page between two commands (the reader waits for something; a colleague made the app) is
`Setup.before`, shell run before a command; `Setup.after` runs at the end, while what the page
started still runs; both must succeed.

A block that cannot run on a test machine is listed in `NOT_RUN` with the reason; a block that
needs what its page's test does not have is run by another test (`ELSEWHERE`).
`test_shell_samples.test_every_shell_block_of_the_docs_runs` fails on any other shell block of
docs/ that no test runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .fences import fenced_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"

SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session"}
CONSOLE_LANGS = {"console", "shell-session"}
OUTPUT_COMMENT_RE = re.compile(r"^#\s([\[{\"].*)$")
TRAILING_OUTPUT_RE = re.compile(r"\s#\s\"(.*)\"(?:,.*)?\s*$")

# (page, text that identifies the block) -> why it is not run.
NOT_RUN = {
    ("protocols/query.md", "sysbench oltp_point_select"): (
        "a benchmark (8 threads for 5 s) on a shared test host, and sysbench is not installed; "
        "tests/query/test_protocol.py drives the same binary protocol (COM_STMT_*)"
    ),
    ("python-client.md", "python3.11 -m venv .venv"): (
        "makes a virtual environment and installs the package and its pinned dev tools from "
        "PyPI (the network, a minute); scripts/test makes the repository's .venv with these "
        "commands, and every test here runs in it"
    ),
    ("benchmarks.md", "bench/client/run.sh --no-build                           #"): (
        "its WSGI part installs gunicorn from PyPI into a scratch venv (the network) and runs "
        "wrk 10 s six times, with no flag to make it smaller; its other parts run in the block "
        "before, and tests/docs/test_shell_benchmarks.py runs the router's and the whole "
        "platform's wrk measurements"
    ),
    ("ops/monitoring.md", "promtool check rules"): (
        "promtool (Debian's prometheus package) is not installed on test machines; "
        "tests/docs/test_alerts.py loads the same file and checks every rule's metrics against "
        "the running services"
    ),
}

# (page, text that identifies the block) -> the test module that runs it, on a page another
# test runs: a block that needs what that page's test does not have (a deployed app).
ELSEWHERE = {
    ("ops/upgrades.md", "berth restart guestbook"): "docs.test_shell_platform",
}


# -- reading the pages ------------------------------------------------------------------------


@dataclass
class Block:
    page: str  # relative to docs/
    line: int  # the line of the opening fence, 1-based
    lang: str
    text: str


def shell_blocks(page: str) -> list[Block]:
    """Every fenced block of `page` whose language is a shell's."""
    return [
        Block(page, line, lang, body)
        for line, lang, body in fenced_blocks(DOCS / page)
        if lang in SHELL_LANGS
    ]


def pages_with_shell_blocks() -> list[str]:
    """Every page of docs/ (relative to it) with a shell block."""
    pages = (str(p.relative_to(DOCS)) for p in sorted(DOCS.rglob("*.md")))
    return [page for page in pages if shell_blocks(page)]


def not_run_reason(block: Block) -> str | None:
    for (page, marker), reason in NOT_RUN.items():
        if page == block.page and marker in block.text:
            return reason
    return None


@dataclass
class Command:
    where: str  # page:line
    text: str
    expected: list[str] | None = None  # promised output lines
    trailing: bool = False  # promised by a trailing comment
    console: bool = False  # from a console block: stderr is shown too


def commands(block: Block, text: str) -> list[Command]:
    """The commands of a block (its text after replacements) with their promised outputs."""
    lines = text.splitlines()
    found: list[Command] = []

    def where(i: int) -> str:
        return f"{block.page}:{block.line + 1 + i}"

    if block.lang not in CONSOLE_LANGS:
        i = 0
        while i < len(lines):
            start, cmd = i, lines[i]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd += "\n" + lines[i]
            i += 1
            # a command of several lines: a subshell, a quoted argument
            while i < len(lines) and not complete(cmd):
                cmd += "\n" + lines[i]
                i += 1
            stripped = cmd.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                m = OUTPUT_COMMENT_RE.match(stripped)
                if m:
                    assert found, (
                        f"{where(start)}: an output comment before any command"
                    )
                    assert not found[-1].trailing, (
                        f"{where(start)}: a second promised output"
                    )
                    found[-1].expected = [
                        *(found[-1].expected or []),
                        unquote(m.group(1)),
                    ]
                continue
            command = Command(where(start), cmd)
            m = TRAILING_OUTPUT_RE.search(cmd.splitlines()[-1])
            if m:
                command.expected, command.trailing = [m.group(1)], True
            found.append(command)
        return found
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    for i, raw in enumerate(lines):
        line = raw[indent:]  # a block inside a list item is indented as a whole
        if line.startswith("$ "):
            found.append(Command(where(i), line[2:], [], console=True))
        elif found and found[-1].text.endswith("\\") and not found[-1].expected:
            found[-1].text += "\n" + line  # a continued command
        elif found:
            found[-1].expected = [*(found[-1].expected or []), line.replace("...", "…")]
    return found


def complete(command: str) -> bool:
    """Whether `command` parses as it is (`bash -n`), or needs the lines after it."""
    if not any(c in command for c in "('\"{"):
        return True
    done = subprocess.run(
        ["bash", "-n"], input=command, capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def unquote(text: str) -> str:
    """`"ell"` is the output `ell`; JSON objects and arrays are their own text."""
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text


def matches(expected: list[str], got: str) -> bool:
    # A line of its own `…` stands for any lines, none included.
    text = re.sub(r"(^|\n)…(\n|$)", r"\1…", "\n".join(expected))
    parts = (re.escape(part).replace("\\ ", " ") for part in text.split("…"))
    pattern = re.sub(r" {2,}", " +", ".*?".join(parts))
    return re.fullmatch(pattern, got.rstrip("\n"), re.DOTALL) is not None


# -- running a page ---------------------------------------------------------------------------

PRELUDE = r"""
set -u
shopt -s expand_aliases  # as in the reader's interactive shell
# Servers a page starts in the background stop with it.
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
# wait_listen FILE KIND: wait for a server's `LISTEN KIND host:port` line; print the port.
wait_listen() {
    for _ in $(seq 400); do
        line=$(grep -m1 "^LISTEN $2 " "$1" 2>/dev/null) && { echo "${line##*:}"; return 0; }
        sleep 0.05
    done
    echo "no LISTEN $2 line in $1" >&2
    return 1
}
# serves COMMAND...: a server a page runs in the foreground; it must start and print its
# `LISTEN admin` line (its last), then it is stopped with SIGTERM and must exit 0.
serves() {
    "$@" >serves.out 2>serves.err &
    local pid=$!
    wait_listen serves.out admin >/dev/null || { kill $pid; cat serves.err >&2; return 1; }
    cat serves.out
    kill -TERM $pid && wait $pid
}
"""


@dataclass
class Setup:
    """The environment a page's commands run in, how they are adapted, what to check."""

    env: dict[str, str]
    cwd: Path
    # (text on the page, replacement, only in blocks containing this or "" for all blocks)
    replacements: list[tuple[str, str, str]] = field(default_factory=list)
    # text of a command -> the exit status it must end with (0 for every other command)
    statuses: dict[str, int] = field(default_factory=dict)
    # (regex, replacement) applied to the promised outputs: what differs from run to run
    outputs: list[tuple[str, str]] = field(default_factory=list)
    # more shell functions for the session (after PRELUDE)
    prelude: str = ""
    # text of a command -> shell run before it: what happens off the page (the reader waits
    # for something, a colleague made the app); it must succeed, its output is not shown
    before: dict[str, str] = field(default_factory=dict)
    # shell run after the last command, while what the page started still runs (waiting for
    # its effects, which `check` then reads); it must succeed
    after: str = ""
    check: Callable[[Outputs], None] = lambda out: None
    timeout: float = 240


@dataclass
class Outputs:
    commands: list[Command]
    stdout: list[str]

    def of(self, text: str) -> str:
        """The stdout of the one command containing `text`."""
        hits = [i for i, c in enumerate(self.commands) if text in c.text]
        assert len(hits) == 1, f"{len(hits)} commands contain {text!r}"
        return self.stdout[hits[0]]

    def command(self, text: str) -> Command:
        hits = [c for c in self.commands if text in c.text]
        assert len(hits) == 1, f"{len(hits)} commands contain {text!r}"
        return hits[0]


def where_shown(
    page: str, replacements: list[tuple[str, str, str]], generic: list[tuple[str, str]]
) -> list[tuple[str, str, str]]:
    """The generic replacements (a host's paths and ports) whose text the page's shell blocks
    show once `replacements` are made: the page-specific ones, which go first."""
    text = "".join(b.text for b in shell_blocks(page))
    for old, new, _ in replacements:
        text = text.replace(old, new)
    return [(old, new, "") for old, new in generic if old in text]


def claimed(block: Block) -> str | None:
    """The marker of ELSEWHERE that names `block`, if one does."""
    return next(
        (m for (page, m) in ELSEWHERE if page == block.page and m in block.text), None
    )


def page_commands(page: str, setup: Setup, part: str | None = None) -> list[Command]:
    """The commands of every block of `page` that runs (or only of the block ELSEWHERE names
    by `part`), with `setup`'s replacements made."""
    blocks = [
        b
        for b in shell_blocks(page)
        if not_run_reason(b) is None and claimed(b) == part
    ]
    assert blocks, f"{page} has no shell blocks to run any more: update its test"
    used = [0] * len(setup.replacements)
    cmds: list[Command] = []
    for block in blocks:
        text = block.text
        for i, (old, new, only_in) in enumerate(setup.replacements):
            if only_in and only_in not in text:
                continue
            used[i] += text.count(old)
            text = text.replace(old, new)
        found = commands(block, text)
        if found:  # each block starts where the page's session started (after a `cd`)
            found[0].text = f'cd "$SHELL_SAMPLES_HOME"\n{found[0].text}'
        cmds += found
    stale = [r[0] for r, n in zip(setup.replacements, used, strict=True) if n == 0]
    assert not stale, f"{page} no longer shows {stale}: update its test"
    for what in ("statuses", "before"):
        stale = [s for s in getattr(setup, what) if not any(s in c.text for c in cmds)]
        assert not stale, f"{page}: no command contains {stale} ({what})"
    for cmd in cmds:
        if cmd.expected is not None:
            for pattern, repl in setup.outputs:
                cmd.expected = [re.sub(pattern, repl, line) for line in cmd.expected]
    return cmds


def run_page(page: str, setup: Setup, part: str | None = None) -> Outputs:
    cmds = page_commands(page, setup, part)
    out_dir = Path(
        tempfile.mkdtemp(
            prefix=f".shell-samples-{page.replace('/', '-')}-", dir=setup.cwd
        )
    )
    script = [f"SHELL_SAMPLES_HOME='{setup.cwd}'\n", PRELUDE, setup.prelude]
    for n, cmd in enumerate(cmds):
        for marker, hidden in setup.before.items():
            if marker in cmd.text:
                script.append(
                    f"{{\n{hidden}\n}} >{out_dir}/{n}.before 2>&1 </dev/null || "
                    f"{{ echo 'before {cmd.where}:'; cat {out_dir}/{n}.before; exit 1; }}\n"
                )
        status = next((s for t, s in setup.statuses.items() if t in cmd.text), 0)
        err = (
            f"{out_dir}/{n}.out 2>&1"
            if cmd.console
            else f"{out_dir}/{n}.out 2>{out_dir}/{n}.err"
        )
        script.append(
            f"{{\n{cmd.text}\n}} >{err} </dev/null\n"
            f"rc=$?; echo $rc >{out_dir}/{n}.rc; [ $rc = {status} ] || exit 1\n"
        )
    if setup.after:
        script.append(
            f"(\n{setup.after}\n) >{out_dir}/after 2>&1 </dev/null || "
            f"{{ echo 'after the page:'; cat {out_dir}/after; exit 1; }}\n"
        )
    script.append(f"touch {out_dir}/done\n")
    (out_dir / "page.sh").write_text("".join(script))
    proc = subprocess.Popen(
        ["bash", str(out_dir / "page.sh")],
        cwd=setup.cwd,
        env={**os.environ, **setup.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: servers it started die with it
    )
    try:
        shell_out = proc.communicate(timeout=setup.timeout)[0].decode(errors="replace")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)

    stdout: list[str] = []
    wrong: list[
        str
    ] = []  # every output that is not the promised one, then the first failure
    for n, cmd in enumerate(cmds):
        files = [out_dir / f"{n}.{ext}" for ext in ("rc", "out", "err")]
        assert files[0].exists(), "\n\n".join(
            [*wrong, f"{cmd.where}: never ran\n{shell_out}"]
        )
        rc, out, err = (
            f.read_text(errors="replace") if f.exists() else "" for f in files
        )
        report = f"{cmd.where}: {cmd.text}\nexit status {rc.strip()}\nstdout:\n{out}\nstderr:\n{err}"
        want = next((s for t, s in setup.statuses.items() if t in cmd.text), 0)
        assert int(rc) == want, "\n\n".join(
            [*wrong, f"expected exit status {want}\n{report}"]
        )
        if cmd.expected is not None and not matches(cmd.expected, out):
            wrong.append(f"expected output {cmd.expected}\n{report}")
        stdout.append(out)
    assert (out_dir / "done").exists(), "\n\n".join([*wrong, shell_out])
    assert not wrong, "\n\n".join(wrong)
    outputs = Outputs(cmds, stdout)
    setup.check(outputs)
    return outputs


def bin_dir(request: pytest.FixtureRequest) -> Path:
    return Path(str(request.config.getoption("--bin-dir"))).resolve()


def path_with(bins: Path) -> str:
    return f"{bins}{os.pathsep}{os.environ.get('PATH', '')}"
