"""Python's stdlib logging, unchanged, into the collector: SysLogHandler over TCP and UDP
(credential in the ident) and the JSON handler of docs/protocols/logs.md."""

from __future__ import annotations

import logging
import logging.handlers
import socket
import uuid

from .conftest import TOKENS, Collector
from .jsonhandler import BerthJSONHandler


def fresh_logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"{name}.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    return log


def syslog_handler(c: Collector, socktype: int, app: str) -> logging.handlers.SysLogHandler:
    h = logging.handlers.SysLogHandler(address=c.addr("syslog-tcp"), socktype=socktype)
    h.ident = f"@berth {app}:{TOKENS[app]} "
    h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return h


def test_sysloghandler_tcp_keeps_tracebacks_whole(collector: Collector) -> None:
    h = syslog_handler(collector, socket.SOCK_STREAM, "shop")
    log = fresh_logger("shop.web", h)
    log.info("first")
    log.warning("second")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("it broke")
    h.close()
    got = collector.wait_events("shop", 3, TOKENS["shop"])
    assert [e["message"].splitlines()[0] for e in got] == ["first", "second", "it broke"]
    assert [e["level"] for e in got] == ["info", "warning", "error"]
    assert got[0]["logger"] == log.name
    assert got[0]["source"] == "syslog-tcp"
    # NUL framing: the traceback's newlines stay inside the one event.
    assert "Traceback (most recent call last)" in got[2]["message"]
    assert "ZeroDivisionError" in got[2]["message"]
    assert "token" not in str(got), "the credential is never stored"


def test_sysloghandler_udp(collector: Collector) -> None:
    h = syslog_handler(collector, socket.SOCK_DGRAM, "billing")
    log = fresh_logger("billing.jobs", h)
    for i in range(5):
        log.error("udp %d", i)
    h.close()
    got = collector.wait_events("billing", 5, TOKENS["billing"])
    assert sorted(e["message"] for e in got) == [f"udp {i}" for i in range(5)]
    assert {e["source"] for e in got} == {"syslog-udp"}


def test_sysloghandler_without_a_token_is_refused(collector: Collector) -> None:
    h = logging.handlers.SysLogHandler(address=collector.addr("syslog-tcp"), socktype=socket.SOCK_STREAM)
    log = fresh_logger("shop", h)
    log.error("sneaky")
    h.close()
    bad = syslog_handler(collector, socket.SOCK_STREAM, "shop")
    bad.ident = "@berth shop:wrong-token "
    log2 = fresh_logger("shop", bad)
    log2.error("sneaky too")
    bad.close()
    good = syslog_handler(collector, socket.SOCK_STREAM, "shop")
    log3 = fresh_logger("shop", good)
    log3.error("legit")
    good.close()
    got = collector.wait_events("shop", 1, TOKENS["shop"])
    assert [e["message"] for e in got] == ["legit"]
    assert collector.metric("log_unauthenticated_total", "operator-token-abcdef") >= 2


def test_json_handler_with_acks(collector: Collector) -> None:
    host, port = collector.addr("json")
    h = BerthJSONHandler(host, port, "shop", TOKENS["shop"])
    log = fresh_logger("shop.api", h)
    log.info("hello %s", "world")
    try:
        {}["missing"]
    except KeyError:
        log.exception("lookup failed")
    # ack mode: emit() returned only after the events were durable, so they are readable now.
    got = collector.events("shop", TOKENS["shop"])
    h.close()
    assert [e["message"] for e in got] == ["hello world", "lookup failed"]
    assert got[1]["level"] == "error"
    assert "KeyError: 'missing'" in got[1]["exception"]
    assert got[0]["stream"] == "logging"


def test_without_tenants_the_app_comes_from_the_input(open_collector: Collector) -> None:
    h = logging.handlers.SysLogHandler(address=open_collector.addr("syslog-tcp"), socktype=socket.SOCK_STREAM)
    h.ident = "@berth inventory "
    log = fresh_logger("inv", h)
    log.info("named by ident")
    h.close()
    got = open_collector.wait_events("inventory", 1)
    assert got[0]["message"] == "named by ident"
