"""Deploys end to end: the real `berth` CLI against the real berthd, which starts apps under
berth-shim and feeds the real berth-router; every service follows berthd's registry.

One platform per module (starting it takes seconds); each test uses its own apps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from .platform import HELLO, Platform, eventually, running, write_app


@pytest.fixture(scope="module")
def platform(pytestconfig: pytest.Config) -> Iterator[Platform]:
    with running(Path(pytestconfig.getoption("--bin-dir"))) as p:
        yield p


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    os.chmod(tmp_path, 0o755)
    return tmp_path


def live_release(p: Platform, app: str) -> Any:
    return p.status(app)["live"]


# -- deploy, upgrade, rollback, promote -----------------------------------------------------------


def test_deploy_upgrade_rollback_and_promote(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("greeter")
    v1 = write_app(apps, "greeter", "1.0.0", HELLO)
    done = p.deploy(v1)
    assert "v1" in done.stdout and "1.0.0" in done.stdout
    assert p.get("greeter", "/x") == (200, "greeter 1.0.0 /x")

    v2 = write_app(apps, "greeter", "1.1.0", HELLO + "\n# 1.1\n")
    p.deploy(v2)
    assert p.get("greeter")[1].startswith("greeter 1.1.0")
    rels = p.releases("greeter")
    assert [r["id"] for r in rels][:2] == ["v2", "v1"]
    assert rels[0]["state"] == "live"

    # Rollback: the previous release is still warm, so it is back at once.
    started = time.monotonic()
    p.berth("rollback", "greeter")
    took = time.monotonic() - started
    assert p.get("greeter")[1].startswith("greeter 1.0.0")
    assert live_release(p, "greeter")["id"] == "v3"
    assert "rollback to v1" in live_release(p, "greeter")["description"]
    assert took < 10, took

    # Promote a version again.
    p.berth("promote", "greeter", "1.1.0")
    assert p.get("greeter")[1].startswith("greeter 1.1.0")

    # The same version with the same content: nothing to do.
    done = p.deploy(v2)
    assert "nothing to do" in done.stdout or "already live" in done.stdout
    assert live_release(p, "greeter")["id"] == "v4"

    # The same version with other content: refused, live unchanged.
    other = write_app(apps, "greeter", "1.1.0", HELLO + "\n# changed\n")
    done = p.deploy(other, ok=False)
    assert "different content" in done.stdout + done.stderr
    # A lower version needs --allow-downgrade.
    old = write_app(apps, "greeter", "0.9.0", HELLO)
    done = p.deploy(old, ok=False)
    assert "--allow-downgrade" in done.stdout + done.stderr
    assert p.get("greeter")[1].startswith("greeter 1.1.0")
    p.deploy(old, "--allow-downgrade")
    assert p.get("greeter")[1].startswith("greeter 0.9.0")

    versions = p.berth("versions", "greeter")
    versions = versions["versions"] if isinstance(versions, dict) else versions
    assert [v["version"] for v in versions] == ["1.1.0", "1.0.0", "0.9.0"]
    events = p.berth("events", "greeter")
    events = events["events"] if isinstance(events, dict) else events
    actions = {e["action"] for e in events}
    assert {"release.create", "version.create", "app.provision"} <= actions


def test_quota_limits_reach_the_router(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("limited")
    p.deploy(write_app(apps, "limited", "1.0.0", HELLO))
    p.berth("quota", "limited", "max_body_bytes=1KiB")

    def post(size: int) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{p.ports['router']}/", data=b"x" * size,
                                     headers={"Host": "limited.localhost"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    eventually(lambda: post(4096) == 413, "the router to refuse a body over the app's limit")
    assert post(100) == 200


def test_no_promote_leaves_the_live_release(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("staged")
    p.deploy(write_app(apps, "staged", "1.0.0", HELLO))
    p.deploy(write_app(apps, "staged", "2.0.0", HELLO), "--no-promote")
    assert p.get("staged")[1].startswith("staged 1.0.0")
    p.berth("promote", "staged", "2.0.0")
    assert p.get("staged")[1].startswith("staged 2.0.0")


def test_scale_up_and_down_keeps_serving(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("scaled")
    p.deploy(write_app(apps, "scaled", "1.0.0", HELLO))

    def live() -> list[Any]:
        return [i for i in p.status("scaled")["instances"] if i["role"] == "live"]

    assert len(live()) == 1
    p.berth("scale", "scaled", 2)
    assert p.status("scaled")["scale"] == 2
    two = live()
    assert len(two) == 2 and all(i["health"] == "healthy" for i in two), two
    assert p.get("scaled")[1].startswith("scaled 1.0.0")

    # Down again: one of the two leaves the router first, then is stopped; the app keeps
    # answering throughout and the same release stays live.
    release = live_release(p, "scaled")["id"]
    p.berth("scale", "scaled", 1)
    assert p.status("scaled")["scale"] == 1
    eventually(lambda: len(live()) == 1, "one live instance")
    assert live()[0]["id"] in {i["id"] for i in two}
    eventually(
        lambda: all(i["role"] == "live" for i in p.status("scaled")["instances"]),
        "the scaled-down instance stopped and gone",
    )
    assert p.get("scaled")[1].startswith("scaled 1.0.0")
    assert live_release(p, "scaled")["id"] == release
    events = p.berth("events", "scaled")
    events = events["events"] if isinstance(events, dict) else events
    scales = [e["detail"] for e in events if e["action"] == "app.scale"]
    assert "1 -> 2 instance(s)" in scales and "2 -> 1 instance(s)" in scales, scales


# -- failing gates leave the live version serving ----------------------------------------------------


def test_each_failing_gate_says_why_and_changes_nothing(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("gates")
    p.deploy(write_app(apps, "gates", "1.0.0", HELLO))
    live = live_release(p, "gates")["id"]

    cases = {
        # import error
        "2.0.0": (write_app(apps, "gates", "2.0.0", "import nonexistent_module_xyz\n"),
                  "nonexistent_module_xyz"),
        # not a WSGI callable
        "2.0.1": (write_app(apps, "gates", "2.0.1", "app = 42\n"), "callable"),
        # native extension
        "2.0.2": (write_app(apps, "gates", "2.0.2", HELLO, files={"fast.so": b"\x7fELF" + b"\0" * 60}),
                  "fast.so"),
        # failing health check
        "2.0.3": (write_app(apps, "gates", "2.0.3", HELLO.replace('"200 OK"', '"500 Oops"')),
                  "health"),
        # crash at start (only when serving: the import gate passes)
        "2.0.4": (write_app(apps, "gates", "2.0.4",
                            "import os, sys\nif os.environ.get('BERTH_BIND'):\n"
                            "    print('cannot start: boom', flush=True)\n    sys.exit(3)\n" + HELLO),
                  "crashed at start"),
    }
    for version, (d, expect) in cases.items():
        if version == "2.0.3":
            (d / "berth.toml").write_text((d / "berth.toml").read_text().replace(
                'start_timeout = "20s"', 'start_timeout = "3s"'))
        done = p.deploy(d, ok=False)
        out = done.stdout + done.stderr
        assert expect in out, f"{version}: {out}"
        assert p.get("gates")[1].startswith("gates 1.0.0"), version
        assert live_release(p, "gates")["id"] == live, version
    # The crash at start shows the app's own output.
    assert "boom" in out
    # Nothing of the failed versions keeps running.
    st = p.status("gates")
    assert {i["version"] for i in st["instances"]} == {"1.0.0"}, st
    # A version that failed its gates is not kept: fixed, the same number deploys.
    p.deploy(write_app(apps, "gates", "2.0.0", HELLO))
    assert p.get("gates")[1].startswith("gates 2.0.0")


def test_a_release_that_fails_in_its_watch_window_is_rolled_back(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("flaky")
    p.deploy(write_app(apps, "flaky", "1.0.0", HELLO))
    crashing = ("import os, threading\n"
                "if os.environ.get('BERTH_BIND'):\n"
                "    threading.Timer(1.0, lambda: os._exit(7)).start()\n" + HELLO)
    p.deploy(write_app(apps, "flaky", "1.1.0", crashing))
    # Live for a moment, then it dies; berthd rolls back by itself within the window.
    try:
        eventually(lambda: p.get("flaky")[1].startswith("flaky 1.0.0"), "the automatic rollback", 20)
    except AssertionError:
        print(json.dumps(p.status("flaky"), indent=1))
        for log in (p.tmp / "berthd" / "run" / "flaky").glob("*/shim.log"):
            print(log, log.read_text()[-3000:])
        raise
    rels = p.releases("flaky")
    assert rels[0]["description"].startswith("automatic rollback to v1"), rels[0]
    # Why: the crash, or the failed health checks it caused (whichever berthd saw first).
    assert any(w in rels[0]["description"] for w in ("crashed", "refused", "answered")), rels[0]
    assert any(r["id"] == "v2" and r["state"] == "failed" for r in rels), rels
    events = p.berth("events", "flaky")
    events = events["events"] if isinstance(events, dict) else events
    assert any(e["action"] == "release.rollback.auto" for e in events)


# -- config and secrets ----------------------------------------------------------------------------

CONFIG_APP = '''
import os
import berth.config

def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/env":
        body = os.environ.get("GREETING", "-")
    elif path == "/secret":
        body = berth.config.current().secret("api_key")
    else:
        body = os.environ["BERTH_VERSION"]
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [data]
'''


def test_config_and_secrets_make_releases(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("conf")
    p.deploy(write_app(apps, "conf", "1.0.0", CONFIG_APP))
    assert p.get("conf", "/env")[1] == "-"
    p.berth("config", "set", "conf", "GREETING=hi there")
    assert p.get("conf", "/env")[1] == "hi there"
    assert live_release(p, "conf")["id"] == "v2"
    secret = "s3cr3t-" + os.urandom(6).hex()
    done = p.run("config", "set", "conf", "--secret", "api_key", stdin=secret + "\n")
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr
    assert p.get("conf", "/secret")[1] == secret
    listed = p.berth("config", "list", "conf")
    text = json.dumps(listed)
    assert "api_key" in text and secret not in text and "hi there" in text
    get = p.run("config", "get", "conf", "api_key")
    assert get.returncode != 0 and "write-only" in get.stderr
    # At rest, the secret is sealed.
    state = (p.tmp / "berthd" / "state.redb").read_bytes()
    assert secret.encode() not in state
    # Rollback restores the config of the release with its code.
    p.berth("rollback", "conf", "v1")
    assert p.get("conf", "/env")[1] == "-"
    assert "GREETING" not in json.dumps(p.berth("config", "list", "conf"))
    p.berth("config", "set", "conf", "GREETING=again")
    assert p.get("conf", "/env")[1] == "again"
    p.berth("config", "unset", "conf", "GREETING")
    assert p.get("conf", "/env")[1] == "-"
    done = p.run("config", "unset", "conf", "GREETING")
    assert done.returncode == 1 and "no config value GREETING" in done.stderr


# -- tokens and tenants -----------------------------------------------------------------------------


def test_an_app_token_deploys_only_its_own_app_and_revocation_ends_it(platform: Platform, apps: Path) -> None:
    p = platform
    mine = p.create_app("mine")
    p.create_app("theirs")
    p.deploy(write_app(apps, "mine", "1.0.0", HELLO), token=mine)
    assert p.get("mine")[1].startswith("mine 1.0.0")
    done = p.deploy(write_app(apps, "theirs", "1.0.0", HELLO), token=mine, ok=False)
    assert "may not" in done.stdout + done.stderr
    tokens = p.berth("tokens", "list", "mine")
    tokens = tokens["tokens"] if isinstance(tokens, dict) else tokens
    first = [t for t in tokens if t["label"] != "runtime (berthd)"][0]
    p.berth("tokens", "revoke", "mine", first["id"])
    done = p.deploy(write_app(apps, "mine", "1.0.1", HELLO), token=mine, ok=False)
    assert "unknown token" in done.stdout + done.stderr or "not authenticated" in done.stderr


# -- isolation ------------------------------------------------------------------------------------

PROBE_APP = '''
import os, socket

def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return "refused: %s" % type(e).__name__

def app(environ, start_response):
    q = environ.get("QUERY_STRING", "")
    path = environ.get("PATH_INFO", "/")
    if path == "/write":
        out = attempt(lambda: open(q, "w").write("x"))
    elif path == "/read":
        out = attempt(lambda: open(q).read())
    elif path == "/connect":
        out = attempt(lambda: socket.create_connection(("127.0.0.1", int(q)), timeout=2).close())
    elif path == "/kill":
        out = attempt(lambda: os.kill(int(q), 0))
    elif path == "/db":
        import berth.db, pymysql
        def use_other():
            st = berth.db.settings()
            conn = pymysql.connect(host=st.host, port=st.port, user=st.user,
                                   password=st.password, database=q, connect_timeout=3)
            conn.close()
        try:
            use_other()
            out = "allowed"
        except Exception as e:
            out = "refused: %s" % e
    elif path == "/cache-as":
        import berth.config
        cred = ("%s %s" % (q, berth.config.current().token)).encode()
        host, port = os.environ["BERTH_CACHE_SERVERS"].split(",")[0].split(":")
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(b"set auth 0 0 %d\\r\\n%s\\r\\n" % (len(cred), cred))
            out = "allowed" if s.recv(100).startswith(b"STORED") else "refused"
    elif path == "/whoami":
        out = "%d %d" % (os.getuid(), os.getpid())
    else:
        out = "ok"
    data = out.encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [data]
'''


def test_apps_are_isolated_from_each_other_and_from_the_backend(platform: Platform, apps: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("app users, cgroups and the network guard need berthd to run as root")
    p = platform
    for name in ("left", "right"):
        p.create_app(name)
        p.deploy(write_app(apps, name, "1.0.0", PROBE_APP,
                           services=("cache", "blobs", "logs", "db")))
    uid_l, pid_l = map(int, p.get("left", "/whoami")[1].split())
    uid_r, _ = map(int, p.get("right", "/whoami")[1].split())
    assert uid_l != 0 and uid_r != 0 and uid_l != uid_r
    st = p.status("right")
    right_pid = st["instances"][0]["pid"]
    # Writes outside the scratch dir are refused; the scratch dir works.
    assert p.get("left", "/write?/etc/berth-test")[1].startswith("refused")
    bundle = p.tmp / "berthd" / "apps" / "left" / "versions" / "1.0.0" / "x.txt"
    assert p.get("left", f"/write?{bundle}")[1].startswith("refused")
    # The other app's files (its secrets file included) cannot be read.
    right_runs = list((p.tmp / "berthd" / "run" / "right").iterdir())
    secrets_file = right_runs[0] / "secrets.toml"
    assert secrets_file.exists()
    assert p.get("left", f"/read?{secrets_file}")[1].startswith("refused")
    # Nor can its processes be signalled.
    assert p.get("left", f"/kill?{right_pid}")[1].startswith("refused")
    # The backend database and the control API are out of reach; the Berth services are not.
    host, _, port = p.mariadb.partition(":")
    assert p.get("left", f"/connect?{port}")[1].startswith("refused")
    assert p.get("left", f"/connect?{p.ports['berthd']}")[1].startswith("refused")
    assert p.get("left", f"/connect?{p.ports['query']}")[1] == "allowed"
    assert p.get("left", f"/connect?{p.ports['cache']}")[1] == "allowed"
    # Namespaces: its own token opens neither the other app's database nor its cache.
    assert p.get("left", "/db?app_left")[1] == "allowed"
    assert p.get("left", "/db?app_right")[1].startswith("refused")
    assert p.get("left", "/cache-as?left")[1] == "allowed"
    assert p.get("left", "/cache-as?right")[1] == "refused"


# -- berthd restarts -----------------------------------------------------------------------------


def test_apps_keep_serving_through_a_berthd_kill_and_are_readopted(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("durable")
    p.deploy(write_app(apps, "durable", "1.0.0", HELLO))
    before = p.status("durable")["instances"]
    p.procs["berthd"].proc.send_signal(signal.SIGKILL)
    p.procs["berthd"].proc.wait(10)
    for _ in range(20):
        assert p.get("durable")[1].startswith("durable 1.0.0")
    p.start_berthd()
    after = p.status("durable")["instances"]
    assert [(i["id"], i["pid"]) for i in after] == [(i["id"], i["pid"]) for i in before]
    # And it still deploys.
    p.deploy(write_app(apps, "durable", "1.0.1", HELLO))
    assert p.get("durable")[1].startswith("durable 1.0.1")


# -- zero failed requests under load ------------------------------------------------------------


def test_ten_deploys_and_rollbacks_under_load_fail_no_request(platform: Platform, apps: Path) -> None:
    p = platform
    p.create_app("steady")
    p.deploy(write_app(apps, "steady", "1.0.0", HELLO))
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    failures: list[str] = []

    def load() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", p.ports["router"]), timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: steady.localhost\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := s.recv(4096):
                        data += chunk
                if data.startswith(b"HTTP/1.1 200"):
                    counts["ok"] += 1
                else:
                    counts["failed"] += 1
                    failures.append(data[:200].decode(errors="replace"))
            except OSError as e:
                counts["failed"] += 1
                failures.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 6):
            p.deploy(write_app(apps, "steady", f"1.0.{k}", HELLO))
            p.berth("rollback", "steady")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert counts["failed"] == 0, failures[:5]
    assert counts["ok"] > 100, counts
    # Only the newest versions are kept (keep_versions = 3), plus what still runs.
    versions = p.berth("versions", "steady")
    versions = versions["versions"] if isinstance(versions, dict) else versions
    assert 3 <= len(versions) <= 4, [v["version"] for v in versions]
    assert "1.0.5" in {v["version"] for v in versions}


# -- destroy ----------------------------------------------------------------------------------


def blob(p: Platform, token: str, key: str, data: bytes | None = None) -> int:
    """PUT `data` under bucket b, or GET when None; the HTTP status."""
    req = urllib.request.Request(f"http://127.0.0.1:{p.ports['blob']}/buckets/b/keys/{key}",
                                 data=data, method="GET" if data is None else "PUT",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def logs_of(p: Platform, app: str, token: str) -> str:
    env = p.env(token)
    env["BERTH_LOGS_URL"] = f"http://127.0.0.1:{p.ports['logs_http']}"
    done = subprocess.run([str(p.bin / "berth"), "logs", app, "-n", "200"], env=env,
                          capture_output=True, text=True, timeout=30)
    return done.stdout


def test_destroy_asks_for_the_name_and_removes_what_the_app_had(platform: Platform, apps: Path) -> None:
    p = platform
    token = p.create_app("doomed")
    p.deploy(write_app(apps, "doomed", "1.0.0", HELLO))
    assert p.get("doomed")[0] == 200
    # Data in the blob server and the log collector, written with the app's token.
    assert blob(p, token, "kept", b"precious") in (200, 204)
    with socket.create_connection(("127.0.0.1", p.ports["logs"]), timeout=5) as s:
        s.sendall(json.dumps({"hello": {"app": "doomed", "token": token, "ack": True}}).encode()
                  + b"\n" + b'{"message": "before-destroy"}\n')
        reader = s.makefile("rb")
        reader.readline()
        assert b'"ack"' in reader.readline()
    assert blob(p, token, "kept") == 200
    eventually(lambda: "before-destroy" in logs_of(p, "doomed", token), "the event stored")
    pids = [i["pid"] for i in p.status("doomed")["instances"]]
    done = p.run("apps", "destroy", "doomed", stdin="nope\n")
    assert done.returncode != 0 and p.get("doomed")[0] == 200
    done = p.run("apps", "destroy", "doomed", stdin="doomed\n")
    assert done.returncode == 0, done.stderr
    p.apps.remove("doomed")
    assert p.get("doomed")[0] == 404
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower()
    assert not (p.tmp / "berthd" / "apps" / "doomed").exists()
    assert not (p.tmp / "berthd" / "run" / "doomed").exists()
    if os.geteuid() == 0:
        assert subprocess.run(["id", "app-doomed"], capture_output=True).returncode != 0
    # Created again, it starts from nothing: no versions, no blobs, no log events.
    token = p.create_app("doomed")
    assert p.berth("versions", "doomed") in ([], {"versions": []})
    assert blob(p, token, "kept") == 404
    assert "before-destroy" not in logs_of(p, "doomed", token)


# -- the app's output reaches its log stream ---------------------------------------------------


def test_stdout_and_stderr_reach_the_apps_log_stream_tagged(platform: Platform, apps: Path) -> None:
    p = platform
    token = p.create_app("chatty")
    main = ("import sys\n" + HELLO.replace(
        "    path = environ.get(\"PATH_INFO\", \"/\")",
        "    path = environ.get(\"PATH_INFO\", \"/\")\n"
        "    print('out-line ' + path, flush=True)\n"
        "    print('err-line ' + path, file=sys.stderr, flush=True)"))
    p.deploy(write_app(apps, "chatty", "1.0.0", main))
    assert p.get("chatty", "/marker")[0] == 200

    def logs() -> str:
        env = p.env(token)
        env["BERTH_LOGS_URL"] = f"http://127.0.0.1:{p.ports['logs_http']}"
        done = subprocess.run([str(p.bin / "berth"), "logs", "chatty", "-n", "200"], env=env,
                              capture_output=True, text=True, timeout=30)
        return done.stdout

    eventually(lambda: "err-line /marker" in logs(), "the app's stderr in its log stream")
    text = logs()
    assert "out-line /marker" in text
    line = next(ln for ln in text.splitlines() if "out-line /marker" in ln)
    assert "1.0.0-" in line, line  # the instance, e.g. chatty[1.0.0-1]


# -- the examples deploy as they are ---------------------------------------------------------------


def test_the_examples_deploy_with_one_command(platform: Platform) -> None:
    p = platform
    examples = Path(__file__).resolve().parents[2] / "examples"
    p.create_app("hello")
    done = p.deploy(examples / "hello")
    assert "Released v1" in done.stdout, done.stdout
    assert p.get("hello") == (200, "Hello from Berth! (version 1.0.0)\n")
