"""pymemcache glue for `berth.cache`: login on every new connection, pooling, and routing.

Kept apart from the public module so `berth.cache` reads as the App Engine API and nothing else.
pymemcache ships no type information, so its classes are `Any` to mypy here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from pymemcache.client.base import Client as _PmClient
from pymemcache.client.rendezvous import RendezvousHash
from pymemcache.exceptions import (
    MemcacheError,
    MemcacheUnexpectedCloseError,
)
from pymemcache.serde import pickle_serde

log = logging.getLogger("berth.cache")

T = TypeVar("T")

Server = tuple[str, int]

_LOGIN_KEY: Final = b"berth-login"


class CacheLoginError(MemcacheError):  # type: ignore[misc]
    """The cache server refused the app's name and token."""


class _LoginClient(_PmClient):  # type: ignore[misc]
    """A pymemcache Client that logs in right after every (re)connect.

    pymemcache opens sockets lazily in `_connect` and reopens them there after any failure, so
    hooking it is the one place that sees every new connection.
    """

    def __init__(self, server: Server, *, login: bytes | None, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self._login = login

    def _connect(self) -> None:
        super()._connect()
        if self._login is None:
            return
        sock = self.sock
        try:
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (_LOGIN_KEY, len(self._login), self._login))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    raise MemcacheUnexpectedCloseError()
                reply += chunk
                if len(reply) > 4096:
                    break
        except Exception:
            self.close()
            raise
        if reply != b"STORED\r\n":
            self.close()
            text = reply.decode("utf-8", "replace").strip()
            raise CacheLoginError(f"cache server {self.server} refused the login: {text}")


class _Pool:
    """Idle logged-in connections to one server, shared by threads without a lock.

    `list.pop()` and `list.append()` are atomic in CPython, so checking a connection out and
    back in costs two method calls (pymemcache's PooledClient takes a lock and a context
    manager per call, a measurable share of a loopback round trip). A thread that finds no
    idle connection opens one; at most `max_idle` are kept, the rest are closed on return.
    """

    def __init__(self, server: Server, *, login: bytes | None, max_idle: int, **kwargs: Any):
        self.server = server
        self._login = login
        self._kwargs = kwargs
        self._max_idle = max_idle
        self._idle: list[_LoginClient] = []

    def acquire(self) -> _LoginClient:
        try:
            return self._idle.pop()
        except IndexError:
            return _LoginClient(self.server, login=self._login, **self._kwargs)

    def release(self, client: _LoginClient) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(client)
        else:
            client.close()

    def drop_idle(self) -> None:
        while True:
            try:
                client = self._idle.pop()
            except IndexError:
                return
            client.close()


def method(name: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A call of pool method `name` with these arguments, bound now (safe inside loops)."""
    return lambda pool: getattr(pool, name)(*args, **kwargs)


class Node:
    """One cache server: its connection pool and when it may be tried again after a failure."""

    def __init__(self, server: Server, pool: _Pool, retry_interval: float) -> None:
        self.server = server
        self.name = f"{server[0]}:{server[1]}"
        self.pool = pool
        self.retry_interval = retry_interval
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        """False while the node is resting after a connection failure."""
        return self._down_until <= time.monotonic()

    def mark_down(self) -> None:
        """Skips this node for `retry_interval`, so a dead server costs one timeout, not many."""
        with self._lock:
            self._down_until = time.monotonic() + self.retry_interval

    def drop_idle(self) -> None:
        """Closes the pool's idle connections: after one failed, the rest are likely dead too
        (server restarted or idle timeout), and the retry must reach a fresh connection.
        """
        self.pool.drop_idle()

    def mark_up(self) -> None:
        """Clears a previous failure."""
        if self._down_until:
            with self._lock:
                self._down_until = 0.0


class Cluster:
    """Every cache server of the app, with keys spread by rendezvous hashing.

    A key always maps to the same server, down or not: a down server reads as misses rather
    than moving its keys elsewhere, where stale copies would outlive its return.
    """

    def __init__(
        self,
        servers: Sequence[Server],
        *,
        login: bytes | None,
        connect_timeout: float,
        timeout: float,
        retry_interval: float,
        max_pool_size: int | None,
    ) -> None:
        self.nodes: dict[str, Node] = {}
        self._hasher = RendezvousHash()
        for server in servers:
            pool = _Pool(
                server,
                login=login,
                max_idle=max_pool_size or 64,
                serde=pickle_serde,
                connect_timeout=connect_timeout,
                timeout=timeout,
                no_delay=True,
                # The pool must see every failure to drop the broken connection.
                ignore_exc=False,
                default_noreply=False,
            )
            node = Node(server, pool, retry_interval)
            if node.name in self.nodes:
                continue
            self.nodes[node.name] = node
            self._hasher.add_node(node.name)
        self._single = next(iter(self.nodes.values())) if len(self.nodes) == 1 else None
        self._warned_empty = False

    def node_for(self, key: bytes) -> Node | None:
        """The server owning `key`, or None when no server is configured."""
        if self._single is not None:
            return self._single
        if not self.nodes:
            if not self._warned_empty:
                self._warned_empty = True
                log.warning("berth.cache: no cache servers configured; every get is a miss")
            return None
        name: str = self._hasher.get_node(key.decode("ascii"))
        return self.nodes[name]

    def run(self, node: Node | None, op: str, call: Callable[[Any], T], default: T) -> T:
        """Runs `call(pool)` on `node`; any failure is logged and answered with `default`.

        A connection error is retried once on a fresh connection, because a pooled connection
        the server closed while idle fails on first use; a second failure rests the node.
        """
        if node is None or (node._down_until and not node.available()):
            return default
        pool = node.pool
        for attempt in (1, 2):
            client = pool.acquire()
            try:
                result = call(client)
            except CacheLoginError as e:
                client.close()
                return self._failed(node, op, e, default)
            except (OSError, MemcacheUnexpectedCloseError) as e:
                client.close()
                if attempt == 1 and not isinstance(e, TimeoutError):
                    node.drop_idle()
                    continue
                return self._failed(node, op, e, default)
            except MemcacheError as e:
                # A protocol-level refusal (e.g. a value too large): the server may have
                # closed the connection, so it does not go back to the pool.
                client.close()
                log.warning("berth.cache: %s on %s failed: %s", op, node.name, e)
                return default
            except BaseException:
                client.close()
                raise
            pool.release(client)
            if node._down_until:
                node.mark_up()
            return result
        return default  # pragma: no cover - the loop always returns

    def _failed(self, node: Node, op: str, exc: BaseException, default: T) -> T:
        node.mark_down()
        log.warning(
            "berth.cache: server %s unavailable (%s: %s); %s reads as a miss for %.1fs",
            node.name,
            type(exc).__name__,
            exc,
            op,
            node.retry_interval,
        )
        return default

    def close(self) -> None:
        """Closes every pooled connection."""
        for node in self.nodes.values():
            node.pool.drop_idle()
