"""berth.logging against a real log collector: delivery, fields, fallback, drops, refusals."""

from __future__ import annotations

import io
import json
import logging
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from servers import LogCollector, free_port, wait_until

from berth import config
from berth import logging as berth_logging

TOKENS = {"alpha": "tok-log-alpha", "beta": "tok-log-beta", "limited": "tok-log-limited"}


def events(collector: LogCollector, app: str, **params: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in {"limit": "1000", **params}.items())
    request = urllib.request.Request(
        f"{collector.http_url}/v1/apps/{app}/events?{query}",
        headers={"Authorization": f"Bearer {TOKENS[app]}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.load(response)
    found: list[dict[str, Any]] = body["events"]
    return found


def make_handler(
    collector: LogCollector, app: str = "alpha", **kwargs: Any
) -> berth_logging.BerthHandler:
    host, port = collector.json_address.rsplit(":", 1)
    return berth_logging.BerthHandler((host, int(port)), app, TOKENS[app], **kwargs)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(f"test.{id(object())}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_records_arrive_with_their_fields(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    h = make_handler(log_collector, version="1.2.3", instance="web-1")
    logger.addHandler(h)
    logger.info("order %s paid", 42, extra={"amount": 12.5, "user": {"id": 7}})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it broke")
    h.flush()
    assert h.stats().delivered == 2
    got = events(log_collector, "alpha", logger=logger.name)
    assert [e["message"] for e in got] == ["order 42 paid", "it broke"]
    first, second = got
    assert first["level"] == "info" and first["logger"] == logger.name
    assert first["version"] == "1.2.3" and first["instance"] == "web-1"
    assert first["extra"]["amount"] == 12.5 and first["extra"]["user"] == {"id": 7}
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exception"]


def test_messages_show_arguments_as_they_were_at_the_call(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    h = make_handler(log_collector)
    logger.addHandler(h)
    items = ["a"]
    state = {"n": 1}
    logger.info("items %s", items)
    logger.info("state %(n)s", state)
    logger.info("plain %s %d", "text", 7)
    items.append("b")
    state["n"] = 2
    h.flush()
    got = [e["message"] for e in events(log_collector, "alpha", logger=logger.name)]
    assert got == ["items ['a']", "state 1", "plain text 7"]


def test_apps_are_kept_apart(log_collector: LogCollector, logger: logging.Logger) -> None:
    h = make_handler(log_collector, app="beta")
    logger.addHandler(h)
    logger.warning("beta only")
    h.flush()
    assert [e["message"] for e in events(log_collector, "beta", logger=logger.name)] == [
        "beta only"
    ]
    assert events(log_collector, "alpha", logger=logger.name) == []


def test_many_records_from_many_threads_all_arrive(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    import threading

    h = make_handler(log_collector, batch=50)
    logger.addHandler(h)

    def work(n: int) -> None:
        for i in range(250):
            logger.info("t%d-%d", n, i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    h.flush(timeout=20)
    stats = h.stats()
    assert (stats.delivered, stats.dropped, stats.fallback) == (1000, 0, 0)
    assert len(events(log_collector, "alpha", logger=logger.name)) == 1000


def test_collector_down_falls_back_to_stderr_and_counts(logger: logging.Logger) -> None:
    out = io.StringIO()
    h = berth_logging.BerthHandler(
        ("127.0.0.1", free_port()), "alpha", "t", fallback=out, retry_interval=60
    )
    logger.addHandler(h)
    logger.error("nobody listens")
    logger.error("still nobody")
    h.flush()
    stats = h.stats()
    assert stats.fallback == 2 and stats.delivered == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert "unreachable" in lines[0]["message"]
    assert [line["message"] for line in lines[1:]] == ["nobody listens", "still nobody"]


def test_a_bad_token_falls_back_instead_of_losing_records(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    out = io.StringIO()
    host, port = log_collector.json_address.rsplit(":", 1)
    h = berth_logging.BerthHandler((host, int(port)), "alpha", "wrong", fallback=out)
    logger.addHandler(h)
    logger.warning("kept somewhere")
    h.flush()
    assert h.stats().fallback == 1
    assert "refused the hello" in out.getvalue() and "kept somewhere" in out.getvalue()


def test_a_full_queue_drops_and_counts_without_blocking(logger: logging.Logger) -> None:
    # A listener that never accepts: the shipper waits for the hello reply until its timeout.
    with socket.create_server(("127.0.0.1", 0)) as stall:
        out = io.StringIO()
        h = berth_logging.BerthHandler(
            stall.getsockname()[:2], "alpha", "t", max_queue=5, timeout=2, fallback=out
        )
        logger.addHandler(h)
        logger.info("first")  # taken by the shipper, which then stalls
        wait_until(lambda: h.stats().queued == 1 and not h._queue, what="shipper took the record")
        for i in range(100):
            logger.info("r%d", i)
        stats = h.stats()
        assert stats.dropped == 95
        h.flush(timeout=10)
    assert h.stats().fallback == 6  # the stalled one and the five that fit


def test_rate_limited_records_are_counted_as_refused(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    h = make_handler(log_collector, app="limited")
    logger.addHandler(h)
    for i in range(200):
        logger.info("flood %d", i)
    h.flush(timeout=20)
    stats = h.stats()
    assert stats.refused > 0
    assert stats.delivered + stats.refused == 200


def test_reconnects_after_the_collector_restarts(
    log_collector: LogCollector, logger: logging.Logger
) -> None:
    h = make_handler(log_collector, retry_interval=0.1)
    logger.addHandler(h)
    logger.info("before restart")
    h.flush()
    log_collector.restart()
    logger.info("after restart")
    h.flush()
    wait_until(lambda: h.stats().delivered + h.stats().fallback == 2, what="both shipped")
    messages = [e["message"] for e in events(log_collector, "alpha", logger=logger.name)]
    assert "before restart" in messages
    assert "after restart" in messages or h.stats().fallback == 1


def test_handler_needs_the_collector_address() -> None:
    config.reload({"BERTH_APP": "alpha"})
    with pytest.raises(config.ConfigError, match="BERTH_LOG_ADDR"):
        berth_logging.handler()


def test_install_makes_it_the_only_root_handler(log_collector: LogCollector) -> None:
    # install() changes the process' root logger: run it in a child process.
    code = """
import logging, os
from berth import logging as bl
logging.basicConfig()
h = bl.install()
assert bl.install() is h
assert logging.getLogger().handlers == [h], logging.getLogger().handlers
assert logging.getLogger().level == logging.WARNING
logging.getLogger("child").warning("from the child")
logging.getLogger("child").info("below the level")
h.flush()
print(bl.stats().delivered)
"""
    env = {
        "BERTH_APP": "alpha",
        "BERTH_LOG_ADDR": log_collector.json_address,
        "BERTH_LOG_LEVEL": "warning",
        "PATH": "/usr/bin:/bin",
    }
    secrets_dir = log_collector.data_dir.parent
    secrets_file = secrets_dir / "alpha-secrets.toml"
    secrets_file.write_text(f'token = "{TOKENS["alpha"]}"\n')
    secrets_file.chmod(0o600)
    env["BERTH_SECRETS_FILE"] = str(secrets_file)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert [e["message"] for e in events(log_collector, "alpha", logger="child")] == [
        "from the child"
    ]
