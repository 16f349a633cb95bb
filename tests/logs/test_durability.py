"""Crash safety with a real process kill, torn tails, a full disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from .conftest import OPERATOR_TOKEN, TOKENS, Collector, CollectorFactory


def segments(data_dir: Path, app: str) -> list[Path]:
    return sorted((data_dir / "apps" / app).glob("*.seg"))


def test_kill_9_loses_no_acknowledged_event(collectors: CollectorFactory) -> None:
    c = collectors.start()
    acked: list[set[str]] = [set() for _ in range(4)]
    stop = threading.Event()

    def writer(k: int) -> None:
        try:
            conn = c.json_conn({"app": "crash", "ack": True}, timeout=5)
            batch = 0
            while not stop.is_set():
                msgs = [f"w{k} b{batch} e{i}" for i in range(50)]
                conn.send_raw(b"".join(json.dumps({"message": m}).encode() + b"\n" for m in msgs))
                assert conn.wait_ack(50 * (batch + 1)) == []
                acked[k].update(msgs)
                batch += 1
        except (OSError, AssertionError, ValueError):
            return  # the collector died under us: what was acked before counts

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    # Let some batches through, then kill without warning.
    deadline = __import__("time").monotonic() + 10
    while sum(len(a) for a in acked) < 2000:
        assert __import__("time").monotonic() < deadline, "writers made no progress"
        __import__("time").sleep(0.01)
    c2 = collectors.restart(c, kill=True)
    stop.set()
    for t in threads:
        t.join(10)
    want = set().union(*acked)
    got = {e["message"] for e in c2.events("crash")}
    missing = want - got
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    seqs = [e["seq"] for e in c2.events("crash")]
    assert seqs == list(range(1, len(seqs) + 1)), "sequence numbers are dense after recovery"


def test_torn_tail_is_truncated_and_the_collector_starts(collectors: CollectorFactory) -> None:
    c = collectors.start()
    conn = c.json_conn({"app": "torn", "ack": True})
    conn.send(*({"message": f"m{i}"} for i in range(100)))
    assert conn.wait_ack(100) == []
    conn.close()
    data_dir = c.data_dir
    c.process.stop()
    collectors.running.remove(c)
    last = segments(data_dir, "torn")[-1]
    size = last.stat().st_size
    # A torn write: the last record cut in half, then junk.
    with open(last, "r+b") as f:
        f.truncate(size - 30)
        f.seek(0, 2)
        f.write(b"\x99" * 17)
    # And a segment whose header never made it to disk.
    (last.parent / "99999999999999999999.seg").write_bytes(b"BERT")
    c2 = collectors.start(data_dir=data_dir)
    got = c2.events("torn")
    assert [e["message"] for e in got] == [f"m{i}" for i in range(99)]
    assert c2.metric("log_recovered_truncated_bytes_total") > 0
    conn = c2.json_conn({"app": "torn", "ack": True})
    conn.send({"message": "after"})
    assert conn.wait_ack(1) == []
    conn.close()
    got = c2.events("torn")
    assert got[-1]["message"] == "after" and got[-1]["seq"] == 100
    # A damaged header is set aside, never a reason to refuse to start.
    c2.process.stop()
    collectors.running.remove(c2)
    first = segments(data_dir, "torn")[0]
    raw = bytearray(first.read_bytes())
    raw[0:8] = b"NOTALOG!"
    first.write_bytes(bytes(raw))
    c3 = collectors.start(data_dir=data_dir)
    assert c3.metric("log_recovered_set_aside_total") == 1
    assert list((data_dir / "apps" / "torn").glob("*.corrupt"))


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 1 MiB tmpfs mounted for the test (root only)."""
    if shutil.which("mount") is None:
        pytest.fail("mount not found: apt-get install mount", pytrace=False)
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a 1 MiB tmpfs (needs root / CAP_SYS_ADMIN): {r.stderr}",
                    pytrace=False)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_refuses_with_a_clear_error_and_corrupts_nothing(
    collectors: CollectorFactory, small_fs: Path
) -> None:
    c = collectors.start(config='segment_bytes = "64KiB"\n', data_dir=small_fs / "data")
    conn = c.json_conn({"app": "full", "ack": True})
    acked = 0
    errors: list[dict] = []
    payload = "x" * 900
    for batch in range(400):
        conn.send(*({"message": f"b{batch} e{i} {payload}"} for i in range(20)))
        errors = conn.wait_ack(20 * (batch + 1))
        if errors:
            break
        acked = 20 * (batch + 1)
    assert errors, "a 1 MiB file system never filled up"
    assert "disk full" in errors[0]["error"], errors
    assert acked > 100
    # Still serving: reads work, other connections work, the error repeats clearly.
    got = c.events("full")
    assert len(got) >= acked
    # The refused batch left no partial record behind, so it is refused again as a whole.
    conn.send(*({"message": f"again e{i} {payload}"} for i in range(20)))
    errs = conn.wait_ack(20 * (batch + 2))
    assert errs and "disk full" in errs[0]["error"], errs
    conn.close()
    assert c.metric("log_disk_full_total") >= 1
    # Restart: every segment is intact (nothing truncated) and every acked event is there.
    c2 = collectors.restart(c)
    assert c2.metric("log_recovered_truncated_bytes_total") == 0
    got2 = c2.events("full")
    assert len(got2) >= acked
    assert [e["seq"] for e in got2] == list(range(1, len(got2) + 1))
