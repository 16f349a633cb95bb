"""logger(1) (util-linux) and a private Debian rsyslogd forwarding to the collector."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support.procs import ServerProcess, free_port

from .conftest import TOKENS, Collector


def need(tool: str, package: str) -> str:
    path = shutil.which(tool) or (f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None)
    if path is None:
        pytest.fail(f"{tool} not found: apt-get install {package}", pytrace=False)
    return path


def run_logger(*args: str) -> None:
    subprocess.run([need("logger", "bsdutils"), *args], check=True, timeout=10)


def sd(app: str) -> list[str]:
    return ["--sd-id", "berth@32473", "--sd-param", f'token="{app}:{TOKENS[app]}"']


def test_logger_tcp_udp_and_octet_counting(collector: Collector) -> None:
    host, port = collector.addr("syslog-tcp")
    base = ["-n", host, "-P", str(port), "--rfc5424", "-t", "shop-worker", *sd("shop")]
    run_logger("-T", "-p", "user.err", *base, "over tcp")
    run_logger("-T", "--octet-count", "-p", "user.warning", *base, "octet counted")
    run_logger("-d", "-p", "local0.info", *base, "over udp")
    got = collector.wait_events("shop", 3, TOKENS["shop"])
    by_msg = {e["message"]: e for e in got}
    assert set(by_msg) == {"over tcp", "octet counted", "over udp"}
    assert by_msg["over tcp"]["level"] == "error"
    assert by_msg["octet counted"]["level"] == "warning"
    assert by_msg["over udp"]["source"] == "syslog-udp"
    assert by_msg["over tcp"]["logger"] == "shop-worker"


def test_logger_rfc3164_with_first_line_credential(collector: Collector) -> None:
    """A TCP stream may start with an `@berth APP:TOKEN` line; then plain RFC 3164 follows."""
    host, port = collector.addr("syslog-tcp")
    with socket.create_connection((host, port)) as s:
        s.sendall(f"@berth billing:{TOKENS['billing']}\n".encode())
        s.sendall(b"<11>Nov 25 10:00:00 web01 cron[42]: job failed\n<14>plain message\n")
    got = collector.wait_events("billing", 2, TOKENS["billing"])
    assert got[0]["message"] == "job failed"
    assert got[0]["host"] == "web01"
    assert got[0]["logger"] == "cron"
    assert got[0]["extra"]["procid"] == "42"
    assert got[1]["message"] == "plain message"


def test_logger_without_token_is_dropped_and_counted(collector: Collector) -> None:
    host, port = collector.addr("syslog-tcp")
    run_logger("-T", "-n", host, "-P", str(port), "--rfc5424", "-t", "shop", "no token")
    run_logger("-T", "-n", host, "-P", str(port), "--rfc5424", *sd("shop"), "with token")
    got = collector.wait_events("shop", 1, TOKENS["shop"])
    assert [e["message"] for e in got] == ["with token"]
    assert collector.metric("log_unauthenticated_total", "operator-token-abcdef") >= 1


RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{in_port}")
template(name="berth" type="string"
         string="<%PRI%>1 %TIMESTAMP:::date-rfc3339% %HOSTNAME% %APP-NAME% %PROCID% %MSGID% [berth@32473 token=\\"{cred}\\"] %msg%")
action(type="omfwd" target="127.0.0.1" port="{out_port}" protocol="tcp"
       template="berth" TCP_Framing="octet-counted")
"""


def test_rsyslog_forwarding(collector: Collector, tmp_path: Path) -> None:
    rsyslogd = need("rsyslogd", "rsyslog")
    work = tmp_path / "rsyslog"
    work.mkdir()
    in_port = free_port()
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(
        work=work, in_port=in_port, out_port=collector.addr("syslog-tcp")[1],
        cred=f"shop:{TOKENS['shop']}",
    ))
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"rsyslog rejected its config:\n{check.stderr}"
    proc = ServerProcess([rsyslogd, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
                         tmp_path / "logs", "rsyslogd")
    try:
        # rsyslog prints nothing when ready: poll by sending until something arrives.
        deadline = time.monotonic() + 20
        sent = 0
        while True:
            run_logger("-d", "-n", "127.0.0.1", "-P", str(in_port), "-t", "checkout",
                       "-p", "user.err", f"via rsyslog {sent}")
            sent += 1
            got = collector.events("shop", TOKENS["shop"])
            if got:
                break
            assert proc.proc.poll() is None, "rsyslogd exited\n" + proc.describe()
            assert time.monotonic() < deadline, "nothing forwarded by rsyslog\n" + proc.describe()
            time.sleep(0.2)
        for i in range(10):
            run_logger("-d", "-n", "127.0.0.1", "-P", str(in_port), "-t", "checkout", f"batch {i}")
        got = collector.wait_events("shop", 10, TOKENS["shop"], grep="batch")
        assert sorted(e["message"] for e in got) == sorted(f"batch {i}" for i in range(10))
        assert {e["logger"] for e in got} == {"checkout"}
        first = collector.events("shop", TOKENS["shop"], grep="via%20rsyslog")[0]
        assert first["level"] == "error"
    finally:
        proc.stop(sig=signal.SIGTERM)
