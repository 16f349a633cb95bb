"""Deploy, rollback and routing costs of the whole platform, measured in one run.

Starts the real platform of tests/deploy/platform.py (berthd, the services following its
registry, berth-router; every process real, on free ports), then:

1. deploys examples/guestbook N times with the `berth` CLI, each time a copy with the version
   bumped (and the version in the page title, GUESTBOOK_TITLE, so the page shows it), and
   times from the CLI's start to the first response through the router that shows the new
   version ("live"), next to the CLI's own wall time;
2. rolls back N times with `berth rollback gbbench` while the previous release is warm
   (berthd's watch window is long enough for every round) and times the same way;
3. deploys a small app whose handler sleeps 1 ms (no CPU) and does a little work (a SHA-256 of
   1 KiB), takes its instance's address from `berth status APP --json`, and runs wrk with the
   same threads, connections and duration against the router (Host: APP.localhost) and the
   instance directly, alternating the order each round; medians and the ratio.

Run by bench/deploy/run.sh, which checks the prerequisites. Prints a summary; --json-out keeps
every measurement.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# tests/ as pytest sees it: the `deploy` package (tests/deploy/platform.py) and `support`.
sys.path.insert(0, str(REPO / "tests"))

from deploy.platform import Platform, write_app

# Not "guestbook": the bench shares the machine's MariaDB with scripts/run, whose guestbook's
# backend account a second provisioning (with this platform's backend secret) would clobber.
GUESTBOOK = "gbbench"
HOT_APP = "hotpath"

HOT_MAIN = '''
import hashlib
import os
import time

VERSION = os.environ["BERTH_VERSION"]
PAD = b"x" * 1024


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path != "/health":
        time.sleep(0.001)  # the app waits on something (no CPU)...
    # ...and does a little work: a SHA-256 of 1 KiB (about 2 us).
    digest = hashlib.sha256(path.encode() + PAD).hexdigest()
    body = ("%s %s\\n" % (VERSION, digest)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# -- watching the router ---------------------------------------------------------------------


class Poller:
    """GETs a path through the router in a loop (keep-alive, reconnecting on errors) and
    records when a body first contains `marker`."""

    def __init__(self, router_port: int, app: str, path: str, interval: float) -> None:
        self.port, self.host, self.path, self.interval = router_port, f"{app}.localhost", path, interval
        self.requests = 0

    def wait_for(self, marker: str, start: float, timeout: float) -> float:
        """Seconds from `start` (a monotonic time) to the first response showing `marker`."""
        conn: http.client.HTTPConnection | None = None
        deadline = start + timeout
        last = ""
        try:
            while time.monotonic() < deadline:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    conn.request("GET", self.path, headers={"Host": self.host})
                    resp = conn.getresponse()
                    body = resp.read().decode(errors="replace")
                    seen = time.monotonic()
                    self.requests += 1
                    if resp.status == 200 and marker in body:
                        return seen - start
                    last = f"{resp.status} {body[:200]!r}"
                except (OSError, http.client.HTTPException) as e:
                    last = repr(e)
                    if conn is not None:
                        conn.close()
                    conn = None
                time.sleep(self.interval)
        finally:
            if conn is not None:
                conn.close()
        raise RuntimeError(f"{marker!r} not served within {timeout}s; last response: {last}")


def timed_cli(p: Platform, poller: Poller, marker: str, *args: object,
              timeout: float = 120) -> dict[str, Any]:
    """Runs `berth ARGS` while polling the router; every time counts from just before the
    CLI process is started: "live_s" (the router serves `marker`), "cli_s" (the CLI exited)
    and "phases" (when each of the CLI's progress lines on stderr arrived)."""
    result: dict[str, Any] = {}

    def watch(start: float) -> None:
        try:
            result["live_s"] = poller.wait_for(marker, start, timeout)
        except RuntimeError as e:
            result["error"] = str(e)

    start = time.monotonic()
    watcher = threading.Thread(target=watch, args=(start,), daemon=True)
    watcher.start()
    cli = subprocess.Popen([str(p.bin / "berth"), *map(str, args)], env=p.env(), text=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    assert cli.stderr is not None and cli.stdout is not None
    phases = [(time.monotonic() - start, line.rstrip("\n")) for line in cli.stderr]
    stdout = cli.stdout.read()
    code = cli.wait(timeout)
    result["cli_s"] = time.monotonic() - start
    watcher.join(timeout + 5)
    text = "\n".join(line for _, line in phases) + "\n" + stdout
    if code != 0:
        raise RuntimeError(f"berth {' '.join(map(str, args))} failed ({code}):\n{text}")
    if "error" in result:
        raise RuntimeError(f"berth {' '.join(map(str, args))}: {result['error']}\n{text}")
    result["phases"] = phases
    return result


def timeline(r: dict[str, Any]) -> str:
    """The CLI's progress lines with their times, and when the router served the change."""
    rows = [*r["phases"], (r["live_s"], "(the router serves it)"), (r["cli_s"], "(CLI exits)")]
    return "\n".join(f"  {t:7.3f} s  {line}" for t, line in sorted(rows, key=lambda x: x[0]))


# -- 1 and 2: guestbook deploys and rollbacks ---------------------------------------------------


def guestbook_copy(root: Path, version: str) -> Path:
    """A copy of examples/guestbook named GUESTBOOK, with `version` in berth.toml and in the
    page title."""
    d = root / f"guestbook-{version}"
    shutil.copytree(REPO / "examples" / "guestbook", d,
                    ignore=shutil.ignore_patterns("tests", "__pycache__", "*.pyc", ".pytest_cache"))
    manifest = (d / "berth.toml").read_text()
    manifest, n = re.subn(r'(?m)^name = "[^"]*"', f'name = "{GUESTBOOK}"', manifest)
    assert n == 1, "examples/guestbook/berth.toml has no name line"
    manifest, n = re.subn(r'(?m)^version = "[^"]*"', f'version = "{version}"', manifest)
    assert n == 1, "examples/guestbook/berth.toml has no version line"
    manifest, n = re.subn(r'(?m)^GUESTBOOK_TITLE = "([^"]*)"',
                          rf'GUESTBOOK_TITLE = "\1 {version}"', manifest)
    assert n == 1, "examples/guestbook/berth.toml has no GUESTBOOK_TITLE line"
    (d / "berth.toml").write_text(manifest)
    return d


def title_marker(version: str) -> str:
    manifest = (REPO / "examples" / "guestbook" / "berth.toml").read_text()
    m = re.search(r'(?m)^GUESTBOOK_TITLE = "([^"]*)"', manifest)
    assert m
    return f"<h1>{m.group(1)} {version}</h1>"


def bench_guestbook(p: Platform, apps: Path, deploys: int, rollbacks: int,
                    poll_interval: float, pause: float) -> dict[str, Any]:
    p.create_app(GUESTBOOK)
    done = p.run("config", "set", GUESTBOOK, "--secret", "moderator_key",
                 stdin=os.urandom(16).hex() + "\n")
    assert done.returncode == 0, f"setting the moderator_key secret failed: {done.stderr}"
    poller = Poller(p.ports["router"], GUESTBOOK, "/", poll_interval)

    # The first deploy provisions the app (database, release command's first run): reported
    # on its own, not in the medians.
    first = timed_cli(p, poller, title_marker("1.0.0"), "deploy", guestbook_copy(apps, "1.0.0"))
    log(f"first deploy 1.0.0: live {first['live_s']:.3f} s, CLI {first['cli_s']:.3f} s")
    out: dict[str, Any] = {"first": {k: first[k] for k in ("live_s", "cli_s")}, "deploys": [],
                           "rollbacks": []}
    versions = ["1.0.0"]
    for i in range(1, deploys + 1):
        time.sleep(pause)
        version = f"1.0.{i}"
        r = timed_cli(p, poller, title_marker(version), "deploy", guestbook_copy(apps, version))
        versions.append(version)
        out["deploys"].append({"version": version, "live_s": r["live_s"], "cli_s": r["cli_s"],
                               "timeline": timeline(r)})
        log(f"deploy {version}: live {r['live_s']:.3f} s, CLI {r['cli_s']:.3f} s")

    # Each rollback makes the release before the live one live again; the one it replaces
    # stays warm, so the next rollback goes back to it, and so on.
    live, previous = versions[-1], versions[-2]
    for i in range(1, rollbacks + 1):
        time.sleep(pause)
        status = p.status(GUESTBOOK)
        warm = sorted({x["version"] for x in status["instances"] if x["role"] == "warm"})
        assert previous in warm, f"{previous} is not warm before rollback {i}: {status['instances']}"
        r = timed_cli(p, poller, title_marker(previous), "rollback", GUESTBOOK)
        out["rollbacks"].append({"from": live, "to": previous, "live_s": r["live_s"],
                                 "cli_s": r["cli_s"], "timeline": timeline(r)})
        log(f"rollback {live} -> {previous}: live {r['live_s']:.3f} s, CLI {r['cli_s']:.3f} s")
        live, previous = previous, live
    out["poll_requests"] = poller.requests
    return out


# -- 3: router vs direct -------------------------------------------------------------------------

WRK_REQS = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)


def run_wrk(url: str, host: str, threads: int, connections: int, duration: int) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
           "-H", f"Host: {host}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    rps, p99 = WRK_REQS.search(done.stdout), WRK_P99.search(done.stdout)
    if not rps or not p99:
        raise RuntimeError(f"cannot read wrk's output:\n{done.stdout}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = [line.strip() for line in done.stdout.splitlines()
              if "Non-2xx" in line or "Socket errors" in line]
    return {"rps": float(rps.group(1)), "p99_ms": float(p99.group(1)) * scale, "errors": errors}


TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants alive now."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (and of their reaped children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def access_log_warnings(p: Platform) -> int:
    """WARN lines about the access log in the router's stderr so far."""
    text = (p.tmp / "berth-router.stderr").read_text(errors="replace")
    return sum(1 for line in text.splitlines() if " WARN " in line and "access log" in line)


def bench_router(p: Platform, apps: Path, args: argparse.Namespace,
                 app_threads: int) -> dict[str, Any]:
    app = f"{HOT_APP}{app_threads}"
    p.create_app(app)
    if args.log_rate is not None:
        p.berth("quota", app, f"log_rate={args.log_rate}")
    d = write_app(apps, app, "1.0.0", HOT_MAIN,
                  f"[resources]\nprocesses = {args.app_processes}\nthreads = {app_threads}\n")
    p.deploy(d)
    status = p.status(app)
    live = [i for i in status["instances"] if i["role"] == "live"]
    assert len(live) == 1, f"expected one live instance: {status['instances']}"
    addr = live[0]["addr"]
    urls = {
        "direct": (f"http://{addr}/work", addr),
        "routed": (f"http://127.0.0.1:{p.ports['router']}/work", f"{app}.localhost"),
    }
    # Whose CPU time each run costs: the app instance (berth-shim and its granian processes),
    # the router, and the log collector that receives the router's access logs.
    groups = {"app": tree(int(live[0]["pid"])), "router": [p.procs["berth-router"].pid],
              "collector": [p.procs["log-collector"].pid]}
    wrk = (args.wrk_threads, args.connections)
    for url, host in urls.values():  # both answer, and a short warm-up for each
        run_wrk(url, host, *wrk, 2)
    warnings_before = access_log_warnings(p)
    results: dict[str, list[dict[str, Any]]] = {"direct": [], "routed": []}
    for rnd in range(1, args.rounds + 1):
        order = ["direct", "routed"] if rnd % 2 else ["routed", "direct"]
        for name in order:
            url, host = urls[name]
            before = {g: cpu_seconds(pids) for g, pids in groups.items()}
            r = run_wrk(url, host, *wrk, args.duration)
            r["cpu_s"] = {g: cpu_seconds(pids) - before[g] for g, pids in groups.items()}
            if r["errors"]:
                raise RuntimeError(f"errors during the {name} run: {r['errors']}")
            results[name].append(r)
            cpu = ", ".join(f"{g} {v:.1f}" for g, v in r["cpu_s"].items())
            log(f"{app} round {rnd}: {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms;"
                f" CPU s: {cpu}")
    return {"app": app, "app_threads": app_threads, "instance": addr, "rounds": results,
            "router_access_log_warnings": access_log_warnings(p) - warnings_before}


# -- the summary ---------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def summarize_guestbook(args: argparse.Namespace, gb: dict[str, Any]) -> None:
    print(f"\nexamples/guestbook (processes 2, threads 4; release command `python -m schema`);"
          f" the router polled every {args.poll_interval * 1000:.0f} ms;"
          f" {args.pause:.1f} s between rounds; times from the CLI's start")
    print(f"first deploy (provisions the app): live {gb['first']['live_s']:.3f} s,"
          f" CLI {gb['first']['cli_s']:.3f} s (not in the medians)")
    print(f"{'':<22} {'to live s':>10} {'CLI s':>8}")
    for r in gb["deploys"]:
        print(f"{'deploy ' + r['version']:<22} {r['live_s']:>10.3f} {r['cli_s']:>8.3f}")
    lm = statistics.median(r["live_s"] for r in gb["deploys"])
    cm = statistics.median(r["cli_s"] for r in gb["deploys"])
    print(f"{'median deploy':<22} {lm:>10.3f} {cm:>8.3f}   target < 2 s: {verdict(lm < 2)}")
    for r in gb["rollbacks"]:
        label = f"rollback to {r['to']}"
        print(f"{label:<22} {r['live_s']:>10.3f} {r['cli_s']:>8.3f}")
    lm = statistics.median(r["live_s"] for r in gb["rollbacks"])
    cm = statistics.median(r["cli_s"] for r in gb["rollbacks"])
    print(f"{'median rollback':<22} {lm:>10.3f} {cm:>8.3f}   target < 0.5 s: {verdict(lm < 0.5)}")
    for kind in ("deploys", "rollbacks"):
        runs = sorted(gb[kind], key=lambda r: r["live_s"])
        if runs:
            print(f"the median one of the {kind}, as the CLI showed it:")
            print(runs[(len(runs) - 1) // 2]["timeline"])


def summarize_router(args: argparse.Namespace, rt: dict[str, Any]) -> None:
    quota = "default" if args.log_rate is None else f"raised to {args.log_rate}/s"
    print(f"\nrouter vs direct, app {rt['app']}: handler = time.sleep(0.001) + SHA-256 of 1 KiB;"
          f" {args.app_processes} process(es) x {rt['app_threads']} threads; log_rate quota"
          f" {quota}")
    print(f"wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, {args.rounds}"
          f" rounds alternating, medians")
    print(f"{'':<8} {'req/s':>8} {'p99 ms':>8} {'CPU us/req: app':>16} {'router':>7}"
          f" {'collector':>9}   rounds (req/s / p99 ms)")
    med = {}
    for name in ("direct", "routed"):
        rs = rt["rounds"][name]
        med[name] = (statistics.median(r["rps"] for r in rs),
                     statistics.median(r["p99_ms"] for r in rs))
        per_req = {g: statistics.median(r["cpu_s"][g] / (r["rps"] * args.duration) * 1e6
                                        for r in rs) for g in ("app", "router", "collector")}
        rounds = ", ".join(f"{r['rps']:.0f} / {r['p99_ms']:.2f}" for r in rs)
        print(f"{name:<8} {med[name][0]:>8.0f} {med[name][1]:>8.2f} {per_req['app']:>16.0f}"
              f" {per_req['router']:>7.0f} {per_req['collector']:>9.0f}   {rounds}")
    ratio = med["routed"][0] / med["direct"][0] if med["direct"][0] else 0.0
    p99 = med["routed"][1] / med["direct"][1] if med["direct"][1] else 0.0
    print(f"ratio routed/direct: {ratio:.2f}x req/s (target >= 0.9x: {verdict(ratio >= 0.9)});"
          f" p99 {p99:.2f}x; the router's access-log WARN lines during the runs:"
          f" {rt['router_access_log_warnings']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release")
    ap.add_argument("--deploys", type=int, default=5)
    ap.add_argument("--rollbacks", type=int, default=5)
    ap.add_argument("--poll-interval", type=float, default=0.005,
                    help="seconds between GETs through the router while waiting for live")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds between deploy rounds")
    ap.add_argument("--rounds", type=int, default=3, help="wrk rounds (each: direct and routed)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--app-threads", default="8,16",
                    help="comma-separated: one app per value, each measured in turn "
                         "(8 is an app's default)")
    ap.add_argument("--app-processes", type=int, default=1)
    ap.add_argument("--log-rate", type=int,
                    help="raise the router apps' log_rate quota (access log events/s)")
    ap.add_argument("--skip-deploys", action="store_true")
    ap.add_argument("--skip-router", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the platform's directory")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    log(f"load average at start: {load}")

    # Not under a private temporary root: app users must reach their files under berthd's dir.
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-deploy-"))
    os.chmod(tmp, 0o755)
    apps = tmp / "apps"
    apps.mkdir()
    # The watch window keeps the previous release warm through every rollback round.
    p = Platform(args.bin_dir, tmp, watch_window="10m")
    gb: dict[str, Any] | None = None
    rts: list[dict[str, Any]] = []
    try:
        p.start_berthd()
        p.start_services()
        log(f"platform up under {tmp}")
        if not args.skip_deploys:
            gb = bench_guestbook(p, apps, args.deploys, args.rollbacks, args.poll_interval,
                                 args.pause)
        if not args.skip_router:
            for threads in args.app_threads.split(","):
                rts.append(bench_router(p, apps, args, int(threads)))
    finally:
        p.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nberth deploy/rollback/router benchmark; load average at start: {load};"
          f" {os.cpu_count()} CPUs; binaries: {args.bin_dir}")
    if gb is not None:
        summarize_guestbook(args, gb)
    for rt in rts:
        summarize_router(args, rt)
    if args.json_out:
        args.json_out.write_text(json.dumps({"load": load, "guestbook": gb, "router": rts},
                                            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
