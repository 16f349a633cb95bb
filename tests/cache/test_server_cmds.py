"""Server commands: version, verbosity, quit, errors, stats (all forms), shutdown, -c limit."""

from __future__ import annotations

import re
import socket
import time

from support.wire import Wire

from .conftest import CacheServer, CacheServerFactory

GENERAL_STATS = [
    "pid", "uptime", "time", "version", "curr_connections", "total_connections", "cmd_get",
    "cmd_set", "get_hits", "get_misses", "curr_items", "total_items", "bytes", "evictions",
    "limit_maxbytes", "threads",
]


def test_version(mc: Wire) -> None:
    mc.send(b"version\r\n")
    mc.expect_match(rb"VERSION [0-9A-Za-z.+_-]+")


def test_verbosity(mc: Wire) -> None:
    mc.call(b"verbosity 1\r\n", b"OK\r\n")
    mc.call(b"verbosity 0\r\n", b"OK\r\n")
    mc.send(b"verbosity 1 noreply\r\n")
    mc.sync()


def test_quit_closes_the_connection(mc: Wire) -> None:
    mc.call(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
    mc.send(b"quit\r\n")
    mc.expect_eof()


def test_quit_after_pipelined_commands_answers_them_first(mc: Wire) -> None:
    mc.send(b"set k 0 0 1\r\nx\r\nget k\r\nquit\r\nget k\r\n")
    mc.expect(b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n")
    mc.expect_eof()


def test_unknown_command(mc: Wire) -> None:
    mc.call(b"foo\r\n", b"ERROR\r\n")
    mc.call(b"foo bar baz\r\n", b"ERROR\r\n")
    mc.call(b"\r\n", b"ERROR\r\n")
    mc.call(b"GET k\r\n", b"ERROR\r\n")
    mc.sync()


def test_garbage_then_valid_command(mc: Wire) -> None:
    mc.call(b"\x00\x01\x02\xff\xfe garbage \x7f\r\n", b"ERROR\r\n")
    mc.call(b"set k 0 0 2\r\nok\r\n", b"STORED\r\n")
    mc.call(b"get k\r\n", b"VALUE k 0 2\r\nok\r\nEND\r\n")


def test_bare_newline_terminated_commands(mc: Wire) -> None:
    # memcached accepts "\n" alone as a line end (telnet-style clients send it).
    mc.call(b"set k 0 0 2\nok\r\n", b"STORED\r\n")
    mc.call(b"get k\n", b"VALUE k 0 2\r\nok\r\nEND\r\n")


def _stats(w: Wire) -> dict[str, str]:
    return w.stats()


def test_stats_general_fields(server: CacheServer, mc: Wire) -> None:
    stats = _stats(mc)
    missing = [f for f in GENERAL_STATS if f not in stats]
    assert not missing, f"stats lacks {missing}; got {sorted(stats)}"
    assert int(stats["pid"]) == server.process.pid
    assert abs(int(stats["time"]) - time.time()) <= 5
    assert 0 <= int(stats["uptime"]) <= 60
    mc.send(b"version\r\n")
    assert mc.read_line() == f"VERSION {stats['version']}\r\n".encode()
    assert int(stats["limit_maxbytes"]) == 64 * 1024 * 1024
    assert int(stats["curr_connections"]) >= 1
    assert int(stats["total_connections"]) >= int(stats["curr_connections"])


def test_stats_follow_flags(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-m", "32", "-t", "2", "-c", "100")
    with server.connect() as w:
        stats = _stats(w)
        assert stats["limit_maxbytes"] == str(32 * 1024 * 1024)
        assert stats["threads"] == "2"
        settings = w.stats("settings")
        assert settings["maxbytes"] == str(32 * 1024 * 1024)
        assert settings["maxconns"] == "100"
        assert settings["num_threads"] == "2"


def test_stats_counters(server: CacheServer, mc: Wire) -> None:
    mc.call(b"set a 0 0 1\r\n1\r\nset b 0 0 1\r\n1\r\n", b"STORED\r\nSTORED\r\n")
    mc.call(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")
    mc.call(b"get nope\r\n", b"END\r\n")
    mc.call(b"get a b nope2\r\n", b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n1\r\nEND\r\n")
    others = [server.connect(), server.connect()]
    for o in others:
        o.sync()
    stats = _stats(mc)
    got = {k: stats[k] for k in ["cmd_get", "get_hits", "get_misses", "cmd_set", "curr_items",
                                 "total_items", "curr_connections"]}
    want = {"cmd_get": "5", "get_hits": "3", "get_misses": "2", "cmd_set": "2", "curr_items": "2",
            "total_items": "2", "curr_connections": "3"}
    assert got == want, f"got {got}, want {want}"
    assert int(stats["bytes"]) > 0
    for o in others:
        o.close()
    mc.call(b"delete a\r\n", b"DELETED\r\n")
    stats = _stats(mc)
    assert stats["curr_items"] == "1"


def test_stats_reset(mc: Wire) -> None:
    mc.call(b"set a 0 0 1\r\n1\r\n", b"STORED\r\n")
    mc.call(b"get a nope\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n")
    mc.call(b"stats reset\r\n", b"RESET\r\n")
    stats = _stats(mc)
    got = {k: stats[k] for k in ["cmd_get", "get_hits", "get_misses", "cmd_set", "total_items"]}
    want = {"cmd_get": "0", "get_hits": "0", "get_misses": "0", "cmd_set": "0", "total_items": "0"}
    assert got == want, f"after stats reset: got {got}, want {want}"
    assert stats["curr_items"] == "1"  # a reset forgets counters, not items


def test_stats_settings_shape(mc: Wire) -> None:
    settings = mc.stats("settings")
    for name in ["maxbytes", "maxconns", "tcpport", "num_threads", "item_size_max", "evictions"]:
        assert name in settings, f"stats settings lacks {name}: {sorted(settings)}"
    assert settings["item_size_max"] == str(1024 * 1024)


def test_stats_items_and_slabs_shape(mc: Wire) -> None:
    mc.call(b"set a 0 0 5\r\nhello\r\n", b"STORED\r\n")
    items = mc.stats_lines("items")
    assert items[-1] == b"END\r\n"
    for line in items[:-1]:
        assert re.fullmatch(rb"STAT items:\d+:\w+ \S+\r\n", line), line
    numbers = [int(m.group(1)) for line in items
               if (m := re.fullmatch(rb"STAT items:\d+:number (\d+)\r\n", line))]
    assert sum(numbers) == 1, items
    slabs = mc.stats_lines("slabs")
    assert slabs[-1] == b"END\r\n"
    for line in slabs[:-1]:
        assert re.fullmatch(rb"STAT (\d+:)?\w+ \S+\r\n", line), line
    names = {line.split()[1] for line in slabs[:-1]}
    assert {b"active_slabs", b"total_malloced"} <= names, names
    assert any(re.fullmatch(rb"STAT \d+:chunk_size \d+\r\n", line) for line in slabs), slabs


def test_stats_conns_shape(server: CacheServer, mc: Wire) -> None:
    other = server.connect()
    other.sync()
    lines = mc.stats_lines("conns")
    assert lines[-1] == b"END\r\n"
    for line in lines[:-1]:
        assert re.fullmatch(rb"STAT \d+:\w+ .+\r\n", line), line
    peers = [line for line in lines if re.fullmatch(rb"STAT \d+:addr tcp:127\.0\.0\.1:\d+\r\n", line)]
    assert len(peers) >= 2, lines
    other.close()


def test_stats_cachedump_shape(mc: Wire) -> None:
    mc.call(b"stats cachedump 1 0\r\n", b"END\r\n")
    mc.call(b"set a 0 0 5\r\nhello\r\n", b"STORED\r\n")
    # memcached dumps only its COLD LRU, which a new item reaches after a moment: poll.
    deadline = time.monotonic() + 5
    while True:
        lines = mc.stats_lines("cachedump 1 0")
        assert lines[-1] == b"END\r\n"
        for line in lines[:-1]:
            assert re.fullmatch(rb"ITEM \S+ \[\d+ b; \d+ s\]\r\n", line), line
        if b"ITEM a [5 b; 0 s]\r\n" in lines:
            break
        assert time.monotonic() < deadline, f"item a never listed by cachedump: {lines}"
        time.sleep(0.05)


def test_stats_unknown_subcommand(mc: Wire) -> None:
    mc.call(b"stats bogus\r\n", b"ERROR\r\n")
    mc.sync()


def test_shutdown_refused_without_A(server: CacheServer, mc: Wire) -> None:
    mc.call(b"shutdown\r\n", b"ERROR: shutdown not enabled\r\n")
    mc.sync()
    assert server.process.proc.poll() is None


def test_shutdown_accepted_with_A(cache_servers: CacheServerFactory) -> None:
    server: CacheServer = cache_servers.start("-A")
    with server.connect() as w:
        w.call(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        w.send(b"shutdown\r\n")
        w.expect_eof(timeout=10)
    code = server.process.wait_exit(10)
    assert code is not None, "server still running 10 s after shutdown\n" + server.process.describe()
    assert code == 0, server.process.describe()


def _try_connect(server: CacheServer) -> tuple[socket.socket | None, bytes]:
    """Connect once: (socket, b"") when admitted, (None, what was said before EOF) when refused."""
    s = socket.create_connection((server.host, server.port), timeout=5)
    # An admitted connection says nothing until spoken to; a refused one is told at once.
    s.settimeout(0.3)
    try:
        first = s.recv(4096)
    except socket.timeout:
        s.settimeout(5)
        s.sendall(b"mn\r\n")
        reply = s.recv(64)
        assert reply == b"MN\r\n", reply
        return s, b""
    s.settimeout(5)
    rest = b""
    try:
        while chunk := s.recv(4096):
            rest += chunk
    except ConnectionResetError:
        rest += b"<RST>"
    s.close()
    return None, first + rest + b"<EOF>"


def test_connection_limit(cache_servers: CacheServerFactory) -> None:
    # memcached reserves file descriptors out of -c for itself, so its real limit is lower
    # than -c; ours admits exactly -c clients.
    server: CacheServer = cache_servers.start("-c", "16", "-t", "1")
    opened: list[socket.socket] = []
    try:
        for _ in range(40):
            sock, refusal = _try_connect(server)
            if sock is None:
                break
            opened.append(sock)
        else:
            raise AssertionError("40 connections admitted with -c 16")
        assert refusal == b"ERROR Too many open connections\r\n<EOF>"
        if not server.is_memcached:
            assert len(opened) == 16, f"-c 16 admitted {len(opened)} connections"
        # Freeing one slot lets a new client in (the server notices the close asynchronously).
        opened.pop().close()
        deadline = time.monotonic() + 5
        while True:
            sock, refusal = _try_connect(server)
            if sock is not None:
                opened.append(sock)
                break
            assert refusal == b"ERROR Too many open connections\r\n<EOF>"
            assert time.monotonic() < deadline, "no slot freed 5 s after a client left"
            time.sleep(0.05)
    finally:
        for s in opened:
            s.close()
