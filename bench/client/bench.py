"""bench/client parts 1 and 2: berth.cache vs pymemcache, and the cost of one log call."""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from berth import cache
from berth import logging as berth_logging
from berth.testing import Process
from pymemcache.client.base import Client as PlainClient


def cache_round_trips(port: int, rounds: int, pairs: int) -> None:
    plain = PlainClient(("127.0.0.1", port), connect_timeout=1, timeout=1, no_delay=True)
    ours = cache.Client([f"127.0.0.1:{port}"], app="bench", token="")
    value = b"x" * 100

    def run_plain() -> float:
        start = time.perf_counter()
        for i in range(pairs):
            key = f"k{i % 1000}"
            plain.set(key, value, noreply=False)
            plain.get(key)
        return pairs / (time.perf_counter() - start)

    def run_ours() -> float:
        start = time.perf_counter()
        for i in range(pairs):
            key = f"k{i % 1000}"
            ours.set(key, value)
            ours.get(key)
        return pairs / (time.perf_counter() - start)

    run_plain(), run_ours()  # warm up both
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(run_plain())
        b.append(run_ours())
    pa, pb = statistics.median(a), statistics.median(b)
    print(
        f"cache get+set pairs/s, one connection, 100-byte values, medians of {rounds} rounds "
        f"of {pairs}: pymemcache {pa:,.0f}, berth.cache {pb:,.0f}, ratio {pb / pa:.3f}x"
    )


def log_call_cost(json_port: int, batches: int, per_batch: int) -> None:
    # As under berth.runtime: install() makes records lean (no frame walk for file/line).
    berth_logging.lean_records()
    handler = berth_logging.BerthHandler(
        ("127.0.0.1", json_port), "bench", None, version="1.0.0", instance="bench-1"
    )
    log = logging.getLogger("bench.request")
    log.propagate = False
    log.setLevel(logging.INFO)

    def measure(h: logging.Handler) -> tuple[float, float, float]:
        """Median and p99 of single calls (each timed alone), and the batch average, in us."""
        log.handlers[:] = [h]
        single: list[int] = []
        averages = []
        clock = time.perf_counter_ns
        for _ in range(batches):
            start = clock()
            for i in range(per_batch):
                t0 = clock()
                log.info("request %s done in %d ms", "/home", i)
                single.append(clock() - t0)
            averages.append((clock() - start) / per_batch / 1000)
            if isinstance(h, berth_logging.BerthHandler):
                h.flush(timeout=30)  # keep the queue from filling: measure the call, not drops
        single.sort()
        return (
            single[len(single) // 2] / 1000,
            single[len(single) * 99 // 100] / 1000,
            statistics.median(averages),
        )

    baseline = measure(logging.NullHandler())
    ours = measure(handler)
    stats = handler.stats()
    handler.close()
    print(
        f"log call (logger.info with 2 args), {batches} x {per_batch} calls, each timed: "
        f"median / p99 / batch average: NullHandler {baseline[0]:.2f} / {baseline[1]:.2f} / "
        f"{baseline[2]:.2f} us, berth system handler {ours[0]:.2f} / {ours[1]:.2f} / "
        f"{ours[2]:.2f} us (delivered {stats.delivered}, dropped {stats.dropped}, "
        f"fallback {stats.fallback}; the batch average includes the shipper thread's share "
        f"of the GIL)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=20000)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache_server = Process(
        [str(args.bin_dir / "cache-server"), "-p", "0", "-l", "127.0.0.1", "-m", "64",
         "--admin-listen", "127.0.0.1:0"],
        ["memcache"], args.work, "cache-server",
    )  # fmt: skip
    data = args.work / "log-data"
    data.mkdir(exist_ok=True)
    collector = Process(
        [str(args.bin_dir / "log-collector"), "--data-dir", str(data), "--listen-json",
         "127.0.0.1:0", "--listen-http", "", "--listen-syslog", "", "--admin-listen",
         "127.0.0.1:0"],
        ["json"], args.work, "log-collector",
    )  # fmt: skip
    try:
        cache_round_trips(cache_server.ports["memcache"], args.rounds, args.pairs)
        log_call_cost(collector.ports["json"], batches=200, per_batch=500)
    finally:
        cache_server.stop()
        collector.stop()


if __name__ == "__main__":
    main()
