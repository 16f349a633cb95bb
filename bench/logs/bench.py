#!/usr/bin/env python3
"""Log collector vs Debian rsyslog: the same syslog TCP load into each, events/s end to end.

Each round starts the server fresh on free loopback ports, then C sender processes push N
octet-counted RFC 5424 messages of 200 bytes each (the whole message, header included) as
fast as the server takes them. The clock stops when the server has stored every event:
for ours, when the last durable sequence number (HTTP API `last_seq`, i.e. after the group
commit's fsync) reaches N; for rsyslog (imtcp in, omfile out, no fsync), when its output file
holds N lines. While ours ingests, a probe app sends one JSON event every 10 ms and a live
tail (server-sent events) of that app measures send-to-tail latency (p50/p99).

Standard library only. Run through bench/logs/run.sh.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EVENT_BYTES = 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def message(i: int) -> bytes:
    """One RFC 5424 message of exactly EVENT_BYTES bytes (before framing)."""
    head = f"<14>1 2026-11-25T12:00:00.000000Z benchhost bench 4242 - - event {i:010d} ".encode()
    return head + b"x" * (EVENT_BYTES - len(head))


def chunk(start: int, count: int) -> bytes:
    out = bytearray()
    for i in range(start, start + count):
        m = message(i)
        out += f"{len(m)} ".encode() + m
    return bytes(out)


def sender(port: int, events: int, ready: mp.Barrier) -> None:
    block = chunk(0, 5000)
    per_block = 5000
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        ready.wait()
        left = events
        while left >= per_block:
            s.sendall(block)
            left -= per_block
        if left:
            s.sendall(chunk(0, left))


def drive(port: int, conns: int, events: int, done) -> float:
    """Sends `events` over `conns` connections; returns seconds until `done()` is true."""
    per = events // conns
    barrier = mp.Barrier(conns + 1)
    procs = [mp.Process(target=sender, args=(port, per, barrier)) for _ in range(conns)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    while not done(per * conns):
        time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    return elapsed


def start(argv: list[str], wait_lines: int = 0, log: Path | None = None) -> tuple[subprocess.Popen, list[str]]:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=open(log or os.devnull, "wb"), text=True)
    lines = []
    while len(lines) < wait_lines:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"{argv[0]} exited during startup (see {log})")
        lines.append(line.strip())
    return p, lines


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def last_seq(http_addr: tuple[str, int], app: str) -> int:
    c = http.client.HTTPConnection(*http_addr, timeout=5)
    c.request("GET", f"/v1/apps/{app}/events?order=desc&limit=1")
    body = json.loads(c.getresponse().read())
    c.close()
    return body["last_seq"]


class TailProbe:
    """Sends a timestamped JSON event every 10 ms and measures when the live tail shows it."""

    def __init__(self, json_addr: tuple[str, int], http_addr: tuple[str, int]) -> None:
        self.json_addr, self.http_addr = json_addr, http_addr
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.sent: dict[int, float] = {}

    def run(self) -> None:
        c = http.client.HTTPConnection(*self.http_addr, timeout=30)
        c.request("GET", "/v1/apps/probe/tail?cursor=0")
        resp = c.getresponse()
        reader = threading.Thread(target=self._read, args=(resp,), daemon=True)
        reader.start()
        s = socket.create_connection(self.json_addr)
        i = 0
        while not self.stop.is_set():
            self.sent[i] = time.perf_counter()
            s.sendall(json.dumps({"app": "probe", "message": str(i)}).encode() + b"\n")
            i += 1
            time.sleep(0.01)
        time.sleep(0.3)
        s.close()
        c.close()

    def _read(self, resp) -> None:
        try:
            for raw in resp:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    i = int(json.loads(line[5:])["message"])
                    if i in self.sent:
                        self.latencies.append((time.perf_counter() - self.sent[i]) * 1000)
        except Exception:  # the connection is closed under us at the end of the run
            return


def run_ours(binary: str, conns: int, events: int, work: Path) -> dict:
    data = work / "ours-data"
    shutil.rmtree(data, ignore_errors=True)
    p, lines = start([binary, "--data-dir", str(data), "--listen-json", "127.0.0.1:0",
                      "--listen-syslog", "127.0.0.1:0", "--listen-http", "127.0.0.1:0",
                      "--admin-listen", "127.0.0.1:0"], wait_lines=5, log=work / "ours.stderr")
    addrs = {}
    for line in lines:
        _, kind, addr = line.split()
        host, port = addr.rsplit(":", 1)
        addrs[kind] = (host, int(port))
    probe = TailProbe(addrs["json"], addrs["http"])
    t = threading.Thread(target=probe.run)
    t.start()
    time.sleep(0.3)
    try:
        secs = drive(addrs["syslog-tcp"][1], conns, events,
                     lambda n: last_seq(addrs["http"], "bench") >= n)
    finally:
        probe.stop.set()
        t.join(10)
        stop(p)
    lat = sorted(probe.latencies)
    return {
        "events_per_s": events / secs,
        "seconds": secs,
        "tail_p50_ms": statistics.median(lat) if lat else None,
        "tail_p99_ms": lat[int(len(lat) * 0.99) - 1] if len(lat) >= 100 else (lat[-1] if lat else None),
        "tail_samples": len(lat),
    }


RSYSLOG_CONF = """
global(workDirectory="{work}")
main_queue(queue.size="200000")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{out}")
"""


def run_rsyslog(rsyslogd: str, conns: int, events: int, work: Path) -> dict:
    rs = work / "rsyslog"
    shutil.rmtree(rs, ignore_errors=True)
    rs.mkdir(parents=True)
    port = free_port()
    out = rs / "out.log"
    conf = rs / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=rs, port=port, out=out))
    p, _ = start([rsyslogd, "-n", "-f", str(conf), "-i", str(rs / "pid")], log=work / "rsyslog.stderr")
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or p.poll() is not None:
                raise SystemExit("rsyslogd did not start; see " + str(work / "rsyslog.stderr"))
            time.sleep(0.05)
    counted = {"lines": 0, "pos": 0}

    def done(n: int) -> bool:
        try:
            with open(out, "rb") as f:
                f.seek(counted["pos"])
                data = f.read()
        except FileNotFoundError:
            return False
        counted["pos"] += len(data)
        counted["lines"] += data.count(b"\n")
        return counted["lines"] >= n

    try:
        secs = drive(port, conns, events, done)
    finally:
        stop(p)
    return {"events_per_s": events / secs, "seconds": secs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--collector", required=True, help="path to the log-collector binary")
    ap.add_argument("--rsyslogd", default=shutil.which("rsyslogd") or "/usr/sbin/rsyslogd")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    if not Path(a.rsyslogd).exists():
        raise SystemExit("rsyslogd not found: apt-get install rsyslog")
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-logs-"))
    work.mkdir(parents=True, exist_ok=True)
    ours, theirs = [], []
    for r in range(a.rounds):
        o = run_ours(a.collector, a.connections, a.events, work)
        t = run_rsyslog(a.rsyslogd, a.connections, a.events, work)
        ours.append(o)
        theirs.append(t)
        print(f"round {r + 1}: ours {o['events_per_s']:,.0f} ev/s "
              f"(tail p50 {o['tail_p50_ms']:.1f} ms, p99 {o['tail_p99_ms']:.1f} ms, "
              f"{o['tail_samples']} samples)  rsyslog {t['events_per_s']:,.0f} ev/s", flush=True)
    mo = statistics.median(x["events_per_s"] for x in ours)
    mt = statistics.median(x["events_per_s"] for x in theirs)
    p99 = statistics.median(x["tail_p99_ms"] for x in ours)
    print(json.dumps({"connections": a.connections, "events": a.events, "event_bytes": EVENT_BYTES,
                      "rounds": a.rounds, "ours_events_per_s": round(mo),
                      "rsyslog_events_per_s": round(mt), "ratio": round(mo / mt, 3),
                      "ours_tail_p99_ms": round(p99, 1)}))
    print(f"median: ours {mo:,.0f} ev/s, rsyslog {mt:,.0f} ev/s, ratio {mo / mt:.2f}x; "
          f"tail p99 while ingesting {p99:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
