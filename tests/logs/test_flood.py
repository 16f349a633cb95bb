"""A flood from one app neither stops the collector nor starves another app, and memory stays
bounded (back-pressure instead of buffering)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from .conftest import Collector


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_flood_does_not_starve_others_and_memory_stays_bounded(open_collector: Collector) -> None:
    msg = b"<14>1 - h flood - - - " + b"x" * 900
    frame = str(len(msg)).encode() + b" " + msg
    block = frame * 1000  # ~1 MB
    total_blocks = 60
    done = threading.Event()

    def flood() -> None:
        with socket.create_connection(open_collector.addr("syslog-tcp")) as s:
            for _ in range(total_blocks):
                s.sendall(block)
        done.set()

    floods = [threading.Thread(target=flood) for _ in range(3)]
    for t in floods:
        t.start()
    # Meanwhile another app's acknowledged writes keep going through.
    c = open_collector.json_conn({"app": "quiet", "ack": True}, timeout=30)
    for i in range(20):
        c.send({"message": f"q{i}"})
        assert c.wait_ack(i + 1) == []
    c.close()
    for t in floods:
        t.join(120)
    assert done.is_set()
    got = open_collector.wait_events("flood", 3 * total_blocks * 1000, timeout=60)
    assert len(got) == 3 * total_blocks * 1000
    assert [e["message"] for e in open_collector.events("quiet")] == [f"q{i}" for i in range(20)]
    # ~180 MB went through; the collector's peak memory stays far below that.
    peak = vm_hwm_kib(open_collector.process.pid)
    print(f"peak RSS {peak} KiB")
    assert peak < 150 * 1024, f"peak RSS {peak} KiB: input is being buffered, not back-pressured"
