"""docs/troubleshooting.md documents every error message a deploy can print, and only those.

The messages are taken from the Rust sources: a fixed list of files and, for each, the error
constructors it uses (`Fail::new(phase, MSG)`, `bad(key, MSG)`, `Status::…(MSG)`,
`anyhow!(MSG)`, `#[error(MSG)]`, …). A message is the constructor's string literal (inside
`format!` or not), with `{…}` placeholders; literals with fewer than two words of text
(`"{e:#}"`, `"{}: {}"`) are glue, not messages.

The page quotes each message in a ```text block, placeholders written `<what>`. Both sides are
compared normalized: placeholders become `<>` (adjacent ones merge), double quotes are dropped
(Rust's `{:?}` adds them, the page writes `"<name>"`), whitespace runs become one space.

- every message of the sources must occur in some ```text block of the page;
- every line of a ```text block must contain a message of the sources (or a part of a
  multi-line one), or be a detail line (the app's output, `  | <its last lines>`);
- `berth validate` on broken apps, and a few refusals of a real berthd, print messages that
  match a block of the page (placeholders matching anything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "troubleshooting.md"
PYTHON = REPO / ".venv" / "bin" / "python"

_STATUS = (
    r"Status::(?:invalid_argument|permission_denied|unauthenticated|not_found"
    r"|failed_precondition|already_exists|internal|unavailable|resource_exhausted)\("
)

# file -> [(regex ending where the constructor's arguments start, index of the message)]
SOURCES: dict[str, list[tuple[str, int]]] = {
    "deployer/src/manifest.rs": [(r"\bbad\(", 1), (r"\bErr\(", 0), (r"#\[error\(", 0)],
    "deployer/src/bundle.rs": [(r"\bmessage:", 0), (r"\bread_error = Some\(", 0)],
    "deployer/src/tarball.rs": [(r"\bRefused\(", 0), (r"#\[error\(", 0)],
    "common/src/tenants/name.rs": [(r"\brefuse\(", 0)],
    "deployer/src/cli/validate.rs": [
        (r"\bfailed\(", 0),
        (r"\bfailed\(", 1),
        (r"\bmessage:", 0),
        (r"\{\s*(?=format!\()", 0),
    ],
    "deployer/src/cli/deploy.rs": [
        (r"\banyhow!\(", 0),
        (r"\blet error =", 0),
        (r"\bwith_context\(\|\|", 0),
    ],
    "deployer/src/cli/control.rs": [(r"\banyhow!\(", 0), (r"\bwith_context\(\|\|", 0)],
    "deployer/src/cli/config.rs": [
        (r"\bErr\(", 0),
        (r"\bbail!\(", 0),
        (r"\banyhow!\(", 0),
        (r"\{\s*(?=format!\()", 0),
    ],
    "deployer/src/daemon/deploys.rs": [(_STATUS, 0)],
    "deployer/src/daemon/service.rs": [(_STATUS, 0)],
    "deployer/src/daemon/state.rs": [(r"\bStateError::(?:Invalid|NotFound|Exists)\(", 0)],
    **{
        f"deployer/src/daemon/engine/run/{part}.rs": [
            (r"\bFail::new\(", 1),
            (r"\bErr\(", 0),
            (r"\banyhow!\(", 0),
            (r"\bbad = Some\(", 0),
            (r"\.audit\(", 3),
            (r"\.event\(", 3),
            (r"\blet description =", 0),
        ]
        for part in (
            "mod", "deploy", "rollout", "watch", "releases", "ops", "lifecycle", "oneoff"
        )
    },
    "deployer/src/daemon/engine/probe.rs": [
        (r"\|\w*\|\s*", 0),
        (r"\bErr\(", 0),
        (r"\{\s*(?=format!\()", 0),
    ],
    "deployer/src/daemon/engine/instances.rs": [(r"\banyhow!\(", 0)],
    "deployer/src/daemon/engine/routes.rs": [
        (r"\banyhow!\(", 0),
        (r"\bwith_context\(\|\|", 0),
    ],
    "deployer/src/daemon/engine/mod.rs": [(r"\banyhow!\(", 0), (r"\bbail!\(", 0)],
}

# Literals the constructors above take that are not errors: a list line, an event's detail.
NOT_MESSAGES = {"{} (secret)\n", "{have} -> {n} instance(s)", "{n} instance(s)"}

# What may precede a message inside an argument: nothing, or a macro call opening.
_HEAD = re.compile(r"(?:&?\w+!\(|\{\s*\w+!\(|Some\(\w+!\()?")


def _literal(src: str, i: int) -> tuple[str, int]:
    """The value of the Rust string literal opening at `src[i]` and the index after it."""
    assert src[i] == '"'
    j, out = i + 1, []
    while src[j] != '"':
        if src[j] == "\\":
            n = src[j + 1]
            if n == "\n":  # a continuation: the newline and the next line's indentation go
                j += 2
                while src[j] in " \t\n":
                    j += 1
                continue
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\", "'": "'"}.get(n, "\\" + n))
            j += 2
            continue
        out.append(src[j])
        j += 1
    return "".join(out), j + 1


def _arguments(src: str, i: int) -> list[str]:
    """The top-level comma-separated arguments from `src[i]` to the closing bracket."""
    depth, start, j, args = 0, i, i, []
    while j < len(src):
        c = src[j]
        if c == '"':
            j = _literal(src, j)[1]
            continue
        if c == "'":
            m = re.match(r"'(?:\\.|[^\\'])'", src[j:])
            if m:
                j += m.end()
                continue
        if c in "([{":
            depth += 1
        elif c in ")]}" or (c == ";" and depth == 0):
            if depth == 0:
                args.append(src[start:j])
                return args
            depth -= 1
        elif c == "," and depth == 0:
            args.append(src[start:j])
            start = j + 1
        j += 1
    return args


def _message(arg: str) -> str | None:
    k = arg.find('"')
    if k < 0 or not _HEAD.fullmatch(arg[:k].strip()):
        return None
    return _literal(arg, k)[0]


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{3,}", re.sub(r"\{[^{}]*\}", " ", text)))


def source_messages() -> dict[str, str]:
    """Every user-facing message of the deploy sources -> where it is (file:line)."""
    found: dict[str, str] = {}
    for rel, specs in SOURCES.items():
        src = (REPO / rel).read_text()
        src = src.split("#[cfg(test)]")[0]
        for pattern, index in specs:
            for m in re.finditer(pattern, src):
                args = _arguments(src, m.end())
                if len(args) <= index:
                    continue
                text = _message(args[index])
                if text is None or _words(text) < 1 or text in NOT_MESSAGES:
                    continue
                found.setdefault(text, f"{rel}:{src.count(chr(10), 0, m.start()) + 1}")
    return found


def normalize(text: str, rust: bool = False) -> str:
    """Placeholders as `<>`, no double quotes, single spaces."""
    if rust:
        text = text.replace("{{", "\0").replace("}}", "\1")
        text = re.sub(r"\{[^{}]*\}", "<>", text)
        text = text.replace("\0", "{").replace("\1", "}")
    text = re.sub(r"<[^<>\s][^<>]*>", "<>", text)
    text = text.replace('"', "")
    text = re.sub(r"<>(?:\s*<>)+", "<>", text)
    return re.sub(r"\s+", " ", text).strip()


def page_blocks(kind: str = "text") -> list[str]:
    """The ```text blocks of the page (or those of another kind: `output`, what Python or a
    library prints, not our sources)."""
    text = PAGE.read_text()
    return re.findall(rf"^```{kind}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def _pattern(block: str) -> re.Pattern[str]:
    """A documented message as a regex: `<>` matches anything."""
    parts = normalize(block).split("<>")
    return re.compile(".*?".join(re.escape(p) for p in parts), re.DOTALL)


def _is_detail(line: str) -> bool:
    """A line of placeholders only (`<its last 25 lines>`, `  <key>: <problem>`)."""
    return _words(re.sub(r"<[^<>]*>", " ", line)) == 0


def documented(printed: str) -> bool:
    """Whether a message as printed matches consecutive lines of a block of the page."""
    said = normalize(printed)
    for block in page_blocks() + page_blocks("output"):
        lines = block.splitlines()
        for k in range(len(lines)):
            for m in range(k + 1, len(lines) + 1):  # the lines k..m of the block
                piece = "\n".join(lines[k:m])
                if not _is_detail(lines[k]) and _pattern(piece).fullmatch(said):
                    return True
    return False


def occurs(message: str, text: str) -> bool:
    """Whether `message` is in `text` as a message of its own: at the start, or after `: ` or
    `(` (a reason inside a wrapper), not as the tail of other words."""
    for m in re.finditer(re.escape(message), text):
        if m.start() == 0 or text[: m.start()].endswith((": ", "(")):
            return True
    return False


# -- the page and the sources -----------------------------------------------------------------


def test_the_extraction_finds_the_messages_it_should() -> None:
    # If a refactor renames a constructor, the list above finds nothing new and this says so.
    found = source_messages()
    assert len(found) > 120, len(found)
    for known in (
        "berth.toml names the app {:?}, but this deploy is for {app:?}: fix `name`",
        "{:?} is not a semantic version: {e}{hint}",
        "instance {} crashed at start ({exit}); its last output:\n{}",
        "this token may not deploy app {app:?}",
        (
            "a symbolic link: bundles hold regular files only (copy the target in, or list "
            "the link in .berthignore)"
        ),
        "{addr} closed the connection without answering",
    ):
        assert known in found, known


def test_every_message_of_the_sources_is_on_the_page() -> None:
    lines = [normalize(line) for b in page_blocks() for line in b.splitlines()]
    # A message of several lines may start on any line of a block.
    tails = [
        normalize("\n".join(b.splitlines()[k:]))
        for b in page_blocks()
        for k in range(len(b.splitlines()))
    ]

    def on_page(text: str) -> bool:
        message = normalize(text, rust=True)
        places = tails if "\n" in text.strip() else lines
        return any(occurs(message, place) for place in places)

    missing = [
        f"{where}: {text!r}" for text, where in source_messages().items() if not on_page(text)
    ]
    assert not missing, "not in docs/troubleshooting.md:\n" + "\n".join(missing)


def test_every_message_on_the_page_is_in_the_sources() -> None:
    pieces = set()
    for text in source_messages():
        for part in text.split("\n"):
            if _words(part) >= 1:
                pieces.add(normalize(part, rust=True))
    stale = []
    for block in page_blocks():
        for line in block.splitlines():
            said = normalize(line)
            if _is_detail(line):
                continue  # a detail line: the app's output
            if not any(p in said for p in pieces):
                stale.append(line)
    assert not stale, "on the page but in no source:\n" + "\n".join(stale)


# -- real messages ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def berth(pytestconfig: pytest.Config) -> Path:
    binary = Path(pytestconfig.getoption("--bin-dir")) / "berth"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: run `cargo build --release -p berth-deployer`")
    return binary


GOOD = 'name = "tsdemo"\nversion = "1.0.0"\nentry = "app:application"\n'
APP = (
    "def application(environ, start_response):\n"
    "    start_response('200 OK', [])\n"
    "    return [b'hi']\n"
)

# name -> (berth.toml, {file: content}); each app fails the manifest or the bundle gate.
BROKEN: dict[str, tuple[str, dict[str, bytes]]] = {
    "values": (
        (
            'name = "Ts_Demo"\nversion = "v1.0"\nentry = "app.application"\ndrain = "1h"\n'
            'services = ["cache", "mail", "cache"]\n'
            '[health]\npath = "healthz"\nstatus = 999\ninterval = "10ms"\nhealthy_threshold = 0\n'
            'start_timeout = "1h"\n'
            '[[smoke]]\npath = "/"\nmethod = "POST"\n'
            '[resources]\nprocesses = 0\nthreads = 1000\nmemory = "1MiB"\ncpu = 0.0\n'
            '[env]\nBERTH_APP = "x"\nlower = "y"\nPATH = "/tmp"\n'
        ),
        {},
    ),
    "more-values": (
        (
            'name = "root"\nversion = "1.0.0+build.5"\nentry = "1app:application"\n'
            'release = " "\n[[smoke]]\npath = "/a b"\nstatus = 42\n'
        ),
        {},
    ),
    "unknown-key": (GOOD + "entrypoint = 1\n", {}),
    "missing-entry": ('name = "tsdemo"\nversion = "1.0.0"\n', {}),
    "no-module": (GOOD.replace("app:application", "web:application"), {}),
    "native": (
        GOOD,
        {"fast.so": b"\x7fELF" + b"\0" * 60, "tool": b"\x7fELF" + b"\0" * 60},
    ),
}


def _make(root: Path, manifest: str | None, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    if manifest is not None:
        (root / "berth.toml").write_text(manifest)
    (root / "app.py").write_text(APP)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def _findings(berth: Path, directory: Path, *args: str) -> list[dict[str, str]]:
    done = subprocess.run(
        [str(berth), "validate", str(directory), "--json", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    return [f for g in report["gates"] if g["status"] == "failed" for f in g["findings"]]


def test_berth_validate_prints_what_the_page_says(berth: Path, tmp_path: Path) -> None:
    seen = []
    for name, (manifest, files) in BROKEN.items():
        app = _make(tmp_path / name, manifest, files)
        if name == "native":
            (app / "link.py").symlink_to(app / "app.py")
        findings = _findings(berth, app, "--no-import")
        assert findings, name
        seen += [(name, f) for f in findings]
    missing = _make(tmp_path / "no-manifest", None, {})
    seen += [("no-manifest", f) for f in _findings(berth, missing, "--no-import")]
    undocumented = [
        f"{name}: {f['where']}: {f['message']}" for name, f in seen if not documented(f["message"])
    ]
    assert not undocumented, "printed by berth validate, not on the page:\n" + "\n".join(
        undocumented
    )
    assert len(seen) >= 30, seen


def test_the_import_gate_prints_what_the_page_says(berth: Path, tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} does not exist: scripts/test (or scripts/run) makes it")
    app = _make(tmp_path / "imports", GOOD, {})
    (app / "app.py").write_text("import nonexistent_module_tsdemo\n")
    (f,) = _findings(berth, app, "--python", str(PYTHON))
    assert "nonexistent_module_tsdemo" in f["message"], f
    assert documented(f["message"]), f
    (f,) = _findings(berth, app, "--python", str(tmp_path / "no-such-python"))
    assert documented(f["message"]), f


def _run(berth: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    done = subprocess.run(
        [str(berth), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        input=stdin,
    )
    assert done.returncode != 0, done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("berth: "), done.stderr
    return last


def _error(stderr: str) -> str:
    """What `berth` printed from its `berth: ` line on (a message may go on with output)."""
    lines = stderr.rstrip().splitlines()
    starts = [k for k, line in enumerate(lines) if line.startswith("berth: ")]
    assert starts, stderr
    return "\n".join(lines[starts[-1] :])


def _printed_is_documented(line: str) -> None:
    """`berth: [invalid: ]MESSAGE`: the whole line, or the message, is on the page."""
    message = line.removeprefix("berth: ")
    stripped = re.sub(
        r"^(?:not authenticated|not allowed|not found|already exists|invalid|refused|"
        r"berthd is unavailable|failed): ",
        "",
        message,
    )
    assert any(documented(m) for m in (line, message, stripped)), line


def test_the_cli_refusals_before_any_server_are_on_the_page(berth: Path, tmp_path: Path) -> None:
    app = _make(tmp_path / "cli", GOOD, {})
    for args, env in [
        (["deploy", str(app)], {}),  # no token
        (["deploy", str(app), "--token", "x", "--server", "http://127.0.0.1:9"], {}),
        (["status", "tsdemo", "--token", "x", "--ca-file", "/x"], {}),
        (["deploy", str(app), "--token-file", str(tmp_path / "none")], {}),
    ]:
        _printed_is_documented(_run(berth, *args, env=env))
    broken = _make(tmp_path / "cli-broken", BROKEN["values"][0], {})
    _printed_is_documented(_run(berth, "deploy", str(broken), "--token", "x"))
    token = ["--token", "x", "--server", "http://127.0.0.1:9"]
    for args in (
        ["config", "set", "tsdemo", "lower=1"],
        ["config", "set", "tsdemo", "BERTH_X=1"],
        ["config", "set", "tsdemo", "NOVALUE"],
        ["config", "set", "tsdemo", "--secret", "key=value"],
        ["config", "set", "tsdemo", "--secret", "Mixed"],
    ):
        _printed_is_documented(_run(berth, *args, *token))


# -- a real berthd ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def berthd(pytestconfig: pytest.Config) -> Iterator[object]:
    from deploy.platform import running

    runtime = REPO / ".venv-runtime" / "bin" / "python"
    if not os.environ.get("BERTH_RUNTIME_PYTHON") and runtime.exists():
        os.environ["BERTH_RUNTIME_PYTHON"] = str(runtime)
    with running(Path(pytestconfig.getoption("--bin-dir")), prefix="berth-tsdocs-") as p:
        yield p


def test_berthd_refusals_are_on_the_page(berthd: object, tmp_path: Path) -> None:
    from deploy.platform import Platform

    assert isinstance(berthd, Platform)
    p = berthd

    def refused(*args: object, token: str | None = None) -> str:
        done = p.run(*args, token=token)
        assert done.returncode != 0, done.stdout
        return done.stderr.strip().splitlines()[-1]

    app = _make(tmp_path / "tsdocs-ghost", GOOD.replace("tsdemo", "tsdocs-ghost"), {})
    lines = [refused("deploy", app)]  # no such app
    token = p.create_app("tsdocs-a")
    p.create_app("tsdocs-b")
    other = _make(tmp_path / "tsdocs-b", GOOD.replace("tsdemo", "tsdocs-b"), {})
    lines += [
        refused("deploy", other, token=token),  # another app's token
        refused("status", "tsdocs-b", token=token),
        refused("apps", "create", "tsdocs-c", token=token),  # operators only
        refused("status", "tsdocs-a", token="not-a-token"),
        refused("rollback", "tsdocs-a"),
        refused("restart", "tsdocs-a"),
        refused("promote", "tsdocs-a", "9.9.9"),
        refused("promote", "tsdocs-a", "v7"),
        refused("scale", "tsdocs-a", "0"),
        refused("config", "unset", "tsdocs-a", "NOPE"),
        refused("apps", "create", "tsdocs-a"),
        refused("apps", "create", "Bad_Name"),
    ]
    for line in lines:
        _printed_is_documented(line)


def test_failed_deploys_print_what_the_page_says(berthd: object, tmp_path: Path) -> None:
    from deploy.platform import HELLO, Platform, write_app

    assert isinstance(berthd, Platform)
    p = berthd
    os.chmod(tmp_path, 0o755)  # app users read their bundles from berthd's copy, but be kind
    app = "tsdocs-gates"
    p.create_app(app)
    p.deploy(write_app(tmp_path, app, "1.0.0", HELLO))

    def failed(*args: object) -> str:
        done = p.run(*args)
        assert done.returncode == 1, done.stdout + done.stderr
        return _error(done.stderr)

    crash = (
        "import os, sys\nif os.environ.get('BERTH_BIND'):\n"
        "    print('cannot start: tsdocs', flush=True)\n    sys.exit(3)\n" + HELLO
    )
    errors = [
        failed("rollback", app),  # one release only
        failed("rollback", app, "3"),
        failed("deploy", write_app(tmp_path, app, "0.9.0", HELLO)),
        failed("deploy", write_app(tmp_path, app, "1.0.0", HELLO + "# other content\n")),
        failed("deploy", write_app(tmp_path, app, "2.0.0", "import nonexistent_tsdocs\n")),
        failed("deploy", write_app(tmp_path, app, "2.0.1", "app = 42\n")),
        failed("deploy", write_app(tmp_path, app, "2.0.2", crash)),
        failed(
            "deploy",
            write_app(tmp_path, app, "2.0.3", HELLO, '[[smoke]]\npath = "/"\ncontains = "nope"\n'),
        ),
    ]
    unhealthy = write_app(tmp_path, app, "2.0.4", HELLO.replace('"200 OK"', '"500 Oops"'))
    manifest = unhealthy / "berth.toml"
    manifest.write_text(
        manifest.read_text().replace('start_timeout = "20s"', 'start_timeout = "1s"')
    )
    errors.append(failed("deploy", unhealthy))
    p.berth("quota", app, "max_processes=1")
    errors.append(
        failed("deploy", write_app(tmp_path, app, "2.0.5", HELLO, "[resources]\nprocesses = 2\n"))
    )
    assert "nonexistent_tsdocs" in errors[4] and "cannot start: tsdocs" in errors[6], errors
    for error in errors:
        _printed_is_documented(error)
    # None of it changed what is live.
    assert p.get(app)[1].startswith(f"{app} 1.0.0")
