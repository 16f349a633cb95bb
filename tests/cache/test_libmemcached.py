"""libmemcached's command-line tools (Debian's libmemcached-tools) against the server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import CacheServer


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: apt-get install libmemcached-tools", pytrace=False)
    return path


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return proc


def _ok(args: list[str], timeout: float = 60) -> str:
    proc = _run(args, timeout)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]}\n"
        f"stderr: {proc.stderr[-2000:]}")
    return proc.stdout


def test_memccp_then_memccat_round_trip(server: CacheServer, tmp_path: Path) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(os.urandom(300_000) + b"\r\nEND\r\n")
    _ok([_tool("memccp"), f"--servers={server.addr}", str(src)])
    out = tmp_path / "copy.bin"
    _ok([_tool("memccat"), f"--servers={server.addr}", f"--file={out}", "payload.bin"])
    assert out.read_bytes() == src.read_bytes()
    with server.connect() as w:
        [(key, _, data, _)] = w.get_values(b"get payload.bin\r\n")
        assert data == src.read_bytes()


def test_memcexist_memctouch_memcrm_memcflush(server: CacheServer) -> None:
    servers = f"--servers={server.addr}"
    with server.connect() as w:
        w.call(b"set tool-key 0 0 2\r\nhi\r\nset other 0 0 1\r\nx\r\n", b"STORED\r\nSTORED\r\n")
    _ok([_tool("memcexist"), servers, "tool-key"])
    assert _run([_tool("memcexist"), servers, "no-such-key"]).returncode != 0
    _ok([_tool("memctouch"), servers, "--expire=500", "tool-key"])
    with server.connect() as w:
        w.send(b"mg tool-key t\r\n")
        assert 490 <= int(w.expect_match(rb"HD t(\d+)").group(1)) <= 500
    _ok([_tool("memcrm"), servers, "tool-key"])
    assert _run([_tool("memcexist"), servers, "tool-key"]).returncode != 0
    _ok([_tool("memcflush"), servers])
    with server.connect() as w:
        w.call(b"get other\r\n", b"END\r\n")


def test_memcstat_shows_our_stats(server: CacheServer) -> None:
    with server.connect() as w:
        w.call(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n2\r\n", b"STORED\r\nSTORED\r\n")
    out = _ok([_tool("memcstat"), f"--servers={server.addr}"])
    assert f"Server: {server.host} ({server.port})" in out, out
    fields = dict(re.findall(r"^\s+(\w+): (.*)$", out, re.MULTILINE))
    assert fields.get("pid") == str(server.process.pid), out
    assert fields.get("curr_items") == "2", out
    assert fields.get("total_items") == "2", out
    assert "version" in fields and "limit_maxbytes" in fields, out


def test_memcslap_bounded_load(server: CacheServer) -> None:
    slap = shutil.which("memcslap") or shutil.which("memslap")
    if slap is None:
        pytest.fail("memcslap not found: apt-get install libmemcached-tools", pytrace=False)
    before = server.stats()
    _ok([slap, f"--servers={server.addr}", "--concurrency=2", "--execute-number=2000",
         "--test=set"], timeout=120)
    _ok([slap, f"--servers={server.addr}", "--concurrency=2", "--execute-number=2000",
         "--test=get"], timeout=120)
    _ok([slap, f"--servers={server.addr}", "--concurrency=1", "--execute-number=500",
         "--test=mget"], timeout=120)
    after = server.stats()
    delta = {k: int(after[k]) - int(before[k]) for k in ["cmd_set", "cmd_get", "get_hits", "get_misses"]}
    # set: 2 threads x 2000; get and mget preload their keys first, then read them all back.
    assert delta["cmd_set"] >= 4000 + 2000 + 500, delta
    assert delta["get_hits"] >= 4000 + 500, delta
    assert delta["get_misses"] == 0, delta


def test_memcaslap_verified_load(server: CacheServer) -> None:
    aslap = shutil.which("memcaslap") or shutil.which("memaslap")
    if aslap is None:
        pytest.fail("memcaslap not found: apt-get install libmemcached-tools", pytrace=False)
    out = _ok([aslap, "-s", server.addr, "-T", "1", "-c", "4", "-x", "5000", "-v", "0.1"],
              timeout=120)
    fields = dict(re.findall(r"^(\w+): (\S+)", out, re.MULTILINE))
    assert fields.get("cmd_get") == "4500" and fields.get("cmd_set") == "500", out
    assert fields.get("verify_failed") == "0", out
    assert fields.get("verify_misses") == "0", out
    assert fields.get("get_misses") == "0", out
