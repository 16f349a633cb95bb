"""The app's cache, in the shape of App Engine's memcache API, over Berth's cache servers.

Module functions use one process-wide `Client` built from `berth.config`; it logs in with the
app's token, pools connections, and spreads keys over every server in `BERTH_CACHE_SERVERS`.
A cache that is down reads as a miss and refuses writes: it never raises into the app.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from berth import config
from berth._memcache import Cluster, Node, Server, method

__all__ = [
    "DELETE_ITEM_MISSING",
    "DELETE_NETWORK_FAILURE",
    "DELETE_SUCCESSFUL",
    "MAX_KEY_BYTES",
    "Client",
    "Key",
    "add",
    "cas",
    "cas_reset",
    "close",
    "decr",
    "default_client",
    "delete",
    "delete_multi",
    "flush_all",
    "get",
    "get_multi",
    "gets",
    "incr",
    "replace",
    "set",
    "set_multi",
]

#: `delete` could not reach the cache server.
DELETE_NETWORK_FAILURE: Final = 0
#: `delete` found no such key.
DELETE_ITEM_MISSING: Final = 1
#: `delete` removed the key.
DELETE_SUCCESSFUL: Final = 2

#: Longest key memcached accepts; longer keys (after namespace and prefix) are hashed.
MAX_KEY_BYTES: Final = 250

#: A cache key as the app gives it: text (UTF-8 on the wire) or bytes.
Key = str | bytes

# The multi calls hand back the caller's own key type (dict[str, ...] stays str).
K = TypeVar("K", bound=str | bytes)

_NAMESPACE_RE: Final = re.compile(r"[0-9A-Za-z._-]{0,100}")
# Whitespace, control bytes and non-ASCII would break the text protocol or hashing by name.
_UNSAFE_KEY_RE: Final = re.compile(rb"[\x00-\x20\x7f-\xff]")


def _wire_key(key: Key, namespace: str | None, prefix: Key = b"") -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if prefix:
        raw = (prefix.encode("utf-8") if isinstance(prefix, str) else bytes(prefix)) + raw
    if namespace:
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ValueError(
                f"berth.cache: namespace {namespace!r} must match [0-9A-Za-z._-]{{0,100}}"
            )
        raw = namespace.encode("ascii") + b":" + raw
    if not raw or len(raw) > MAX_KEY_BYTES or _UNSAFE_KEY_RE.search(raw):
        raw = b"sha256:" + hashlib.sha256(raw).hexdigest().encode("ascii")
    return raw


def _expire(time: float) -> int:
    if time < 0:
        raise ValueError(f"berth.cache: expiration time must not be negative, got {time!r}")
    return int(time)


class Client:
    """A cache client for one app: login, connection pools and consistent hashing.

    `servers` are `host:port` strings or (host, port) pairs; with `token` set, every new
    connection first logs in as `app`. Thread-safe; `gets`/`cas` remember CAS ids per thread.
    """

    def __init__(
        self,
        servers: Sequence[str | Server] = (),
        *,
        app: str | None = None,
        token: str | None = None,
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        retry_interval: float = 1.0,
        max_pool_size: int | None = None,
    ) -> None:
        parsed: list[Server] = []
        for server in servers:
            if isinstance(server, str):
                parsed.extend(config.parse_servers(server, "berth.cache.Client servers"))
            else:
                parsed.append((server[0], int(server[1])))
        login: bytes | None = None
        if token:
            if not app:
                raise config.ConfigError(
                    "berth.cache: a cache token is configured but the app name is not "
                    f"(set {config.ENV_APP})"
                )
            login = f"{app} {token}".encode()
        self.servers: tuple[Server, ...] = tuple(parsed)
        self._cluster = Cluster(
            parsed,
            login=login,
            connect_timeout=connect_timeout,
            timeout=timeout,
            retry_interval=retry_interval,
            max_pool_size=max_pool_size,
        )
        self._local = threading.local()

    @classmethod
    def from_config(cls, cfg: config.Config | None = None) -> Client:
        """A client for the app described by `cfg` (default: `berth.config.current()`)."""
        cfg = cfg or config.current()
        return cls(cfg.cache_servers, app=cfg.get(config.ENV_APP), token=cfg.token)

    def _node(self, key: bytes) -> Node | None:
        return self._cluster.node_for(key)

    def _cas_ids(self) -> dict[bytes, Any]:
        ids: dict[bytes, Any] | None = getattr(self._local, "cas_ids", None)
        if ids is None:
            ids = {}
            self._local.cas_ids = ids
        return ids

    def _by_node(self, wire: Iterable[bytes]) -> dict[Node | None, list[bytes]]:
        batches: dict[Node | None, list[bytes]] = {}
        for k in wire:
            batches.setdefault(self._node(k), []).append(k)
        return batches

    def get(self, key: Key, namespace: str | None = None) -> Any:
        """The value stored under `key`, or None on a miss (or when the cache is down)."""
        k = _wire_key(key, namespace)
        return self._cluster.run(self._node(k), "get", lambda p: p.get(k), None)

    def get_multi(
        self,
        keys: Iterable[K],
        key_prefix: Key = "",
        namespace: str | None = None,
        for_cas: bool = False,
    ) -> dict[K, Any]:
        """The found keys (as given, without `key_prefix`) mapped to their values.

        With `for_cas`, remembers each key's CAS id for a later `cas` in this thread.
        """
        wire: dict[bytes, K] = {_wire_key(key, namespace, key_prefix): key for key in keys}
        found: dict[K, Any] = {}
        for node, batch in self._by_node(wire).items():
            if for_cas:
                got: dict[bytes, Any] = self._cluster.run(
                    node, "gets_multi", method("gets_many", batch), {}
                )
                ids = self._cas_ids()
                for k, (value, cas_id) in got.items():
                    ids[k] = cas_id
                    found[wire[k]] = value
            else:
                got = self._cluster.run(node, "get_multi", method("get_many", batch), {})
                for k, value in got.items():
                    found[wire[k]] = value
        return found

    def set(self, key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
        """Stores `value` (expiring after `time` seconds, 0 = never); True when stored."""
        k, exp = _wire_key(key, namespace), _expire(time)
        return bool(
            self._cluster.run(
                self._node(k), "set", lambda p: p.set(k, value, exp, noreply=False), False
            )
        )

    def add(self, key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
        """Stores `value` only if `key` is absent; True when stored."""
        k, exp = _wire_key(key, namespace), _expire(time)
        return bool(
            self._cluster.run(
                self._node(k), "add", lambda p: p.add(k, value, exp, noreply=False), False
            )
        )

    def replace(self, key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
        """Stores `value` only if `key` is present; True when stored."""
        k, exp = _wire_key(key, namespace), _expire(time)
        return bool(
            self._cluster.run(
                self._node(k), "replace", lambda p: p.replace(k, value, exp, noreply=False), False
            )
        )

    def set_multi(
        self,
        mapping: Mapping[K, Any],
        time: float = 0,
        key_prefix: Key = "",
        namespace: str | None = None,
    ) -> list[K]:
        """Stores every item; returns the keys (as given) that were NOT stored."""
        exp = _expire(time)
        wire: dict[bytes, K] = {}
        values: dict[bytes, Any] = {}
        for key, value in mapping.items():
            k = _wire_key(key, namespace, key_prefix)
            wire[k] = key
            values[k] = value
        failed: list[K] = []
        for node, batch in self._by_node(values).items():
            items = {k: values[k] for k in batch}
            not_stored: list[bytes] | None = self._cluster.run(
                node, "set_multi", method("set_many", items, exp, noreply=False), None
            )
            if not_stored is None and node is not None and node.available():
                # The server refused the batch as a whole (e.g. one value too large) and the
                # connection was dropped: store one by one to learn exactly which keys failed.
                not_stored = [
                    k
                    for k, v in items.items()
                    if not self._cluster.run(
                        node, "set", method("set", k, v, exp, noreply=False), False
                    )
                ]
            failed.extend(wire[k] for k in (batch if not_stored is None else not_stored))
        return failed

    def delete(self, key: Key, namespace: str | None = None) -> int:
        """Removes `key`: DELETE_SUCCESSFUL, DELETE_ITEM_MISSING or DELETE_NETWORK_FAILURE."""
        k = _wire_key(key, namespace)
        found: bool | None = self._cluster.run(
            self._node(k), "delete", lambda p: p.delete(k, noreply=False), None
        )
        if found is None:
            return DELETE_NETWORK_FAILURE
        return DELETE_SUCCESSFUL if found else DELETE_ITEM_MISSING

    def delete_multi(
        self, keys: Iterable[Key], key_prefix: Key = "", namespace: str | None = None
    ) -> bool:
        """Removes every key; True when every server answered (missing keys count as done)."""
        wire = [_wire_key(key, namespace, key_prefix) for key in keys]
        ok = True
        for node, batch in self._by_node(wire).items():
            done = self._cluster.run(
                node, "delete_multi", method("delete_many", batch, noreply=False), False
            )
            ok = ok and bool(done)
        return ok

    def _offset(
        self,
        op: str,
        key: Key,
        delta: int,
        namespace: str | None,
        initial_value: int | None,
    ) -> int | None:
        if not isinstance(delta, int) or delta < 0:
            raise ValueError(f"berth.cache: {op} delta must be a non-negative int, got {delta!r}")
        if initial_value is not None and (not isinstance(initial_value, int) or initial_value < 0):
            raise ValueError(
                f"berth.cache: initial_value must be a non-negative int, got {initial_value!r}"
            )
        k = _wire_key(key, namespace)
        node = self._node(k)

        def step(p: Any) -> int | None:
            result: int | None = getattr(p, op)(k, delta, noreply=False)
            return result

        value = self._cluster.run(node, op, step, None)
        if value is None and initial_value is not None and node is not None and node.available():
            # Absent: create it (add, so a concurrent creator wins cleanly), then apply delta.
            self._cluster.run(node, "add", lambda p: p.add(k, initial_value, 0, noreply=False), 0)
            value = self._cluster.run(node, op, step, None)
        return value

    def incr(
        self,
        key: Key,
        delta: int = 1,
        namespace: str | None = None,
        initial_value: int | None = None,
    ) -> int | None:
        """Adds `delta` to the integer at `key`; returns the new value.

        An absent key is created as `initial_value` first, or the result is None without it
        (None also when the value is not an integer or the cache is down). Values wrap at 2**64.
        """
        return self._offset("incr", key, delta, namespace, initial_value)

    def decr(
        self,
        key: Key,
        delta: int = 1,
        namespace: str | None = None,
        initial_value: int | None = None,
    ) -> int | None:
        """Subtracts `delta` from the integer at `key`, stopping at 0; see `incr`."""
        return self._offset("decr", key, delta, namespace, initial_value)

    def gets(self, key: Key, namespace: str | None = None) -> Any:
        """Like `get`, and remembers the key's CAS id for a later `cas` in this thread."""
        k = _wire_key(key, namespace)
        value, cas_id = self._cluster.run(self._node(k), "gets", lambda p: p.gets(k), (None, None))
        ids = self._cas_ids()
        if cas_id is None:
            ids.pop(k, None)
        else:
            ids[k] = cas_id
        return value

    def cas(self, key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
        """Stores `value` only if `key` is unchanged since this thread's `gets` of it.

        False when it changed, expired, was never fetched with `gets`, or the cache is down.
        """
        k, exp = _wire_key(key, namespace), _expire(time)
        cas_id = self._cas_ids().pop(k, None)
        if cas_id is None:
            return False
        stored = self._cluster.run(
            self._node(k), "cas", lambda p: p.cas(k, value, cas_id, exp, noreply=False), False
        )
        return stored is True

    def cas_reset(self) -> None:
        """Forgets every CAS id this thread remembered."""
        self._cas_ids().clear()

    def flush_all(self) -> bool:
        """Empties the app's whole cache (its namespace on every server); True when all did."""
        ok = True
        for node in self._cluster.nodes.values():
            done = self._cluster.run(node, "flush_all", lambda p: p.flush_all(noreply=False), False)
            ok = ok and bool(done)
        return ok

    def close(self) -> None:
        """Closes every pooled connection; the client reconnects on its next call."""
        self._cluster.close()


_default_lock = threading.Lock()
_default: tuple[config.Config, Client] | None = None


def default_client() -> Client:
    """The process-wide client for `berth.config.current()`; rebuilt after `config.reload()`."""
    global _default
    cfg = config.current()
    held = _default
    if held is not None and held[0] is cfg:
        return held[1]
    with _default_lock:
        held = _default
        if held is None or held[0] is not cfg:
            client = Client.from_config(cfg)
            if held is not None:
                held[1].close()
            _default = held = (cfg, client)
    return held[1]


def close() -> None:
    """Closes the process-wide client's connections (e.g. in a worker's shutdown hook)."""
    held = _default
    if held is not None:
        held[1].close()


def get(key: Key, namespace: str | None = None) -> Any:
    """See `Client.get`."""
    return default_client().get(key, namespace)


def get_multi(
    keys: Iterable[K],
    key_prefix: Key = "",
    namespace: str | None = None,
    for_cas: bool = False,
) -> dict[K, Any]:
    """See `Client.get_multi`."""
    return default_client().get_multi(keys, key_prefix, namespace, for_cas)


def set(key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
    """See `Client.set`."""
    return default_client().set(key, value, time, namespace)


def add(key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
    """See `Client.add`."""
    return default_client().add(key, value, time, namespace)


def replace(key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
    """See `Client.replace`."""
    return default_client().replace(key, value, time, namespace)


def set_multi(
    mapping: Mapping[K, Any],
    time: float = 0,
    key_prefix: Key = "",
    namespace: str | None = None,
) -> list[K]:
    """See `Client.set_multi`."""
    return default_client().set_multi(mapping, time, key_prefix, namespace)


def delete(key: Key, namespace: str | None = None) -> int:
    """See `Client.delete`."""
    return default_client().delete(key, namespace)


def delete_multi(keys: Iterable[Key], key_prefix: Key = "", namespace: str | None = None) -> bool:
    """See `Client.delete_multi`."""
    return default_client().delete_multi(keys, key_prefix, namespace)


def incr(
    key: Key, delta: int = 1, namespace: str | None = None, initial_value: int | None = None
) -> int | None:
    """See `Client.incr`."""
    return default_client().incr(key, delta, namespace, initial_value)


def decr(
    key: Key, delta: int = 1, namespace: str | None = None, initial_value: int | None = None
) -> int | None:
    """See `Client.decr`."""
    return default_client().decr(key, delta, namespace, initial_value)


def gets(key: Key, namespace: str | None = None) -> Any:
    """See `Client.gets`."""
    return default_client().gets(key, namespace)


def cas(key: Key, value: Any, time: float = 0, namespace: str | None = None) -> bool:
    """See `Client.cas`."""
    return default_client().cas(key, value, time, namespace)


def cas_reset() -> None:
    """See `Client.cas_reset`."""
    default_client().cas_reset()


def flush_all() -> bool:
    """See `Client.flush_all`."""
    return default_client().flush_all()
