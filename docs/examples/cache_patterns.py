"""berth.cache in an app: cache-aside reads, optimistic updates, a lock, a down server."""

from __future__ import annotations

import threading
from typing import Any

from berth import cache, config

CALLS = {"load_profile": 0}


# ANCHOR: cache-aside
def load_profile(user_id: int) -> dict[str, Any]:
    """The slow way: a database query, an HTTP call..."""
    CALLS["load_profile"] += 1
    return {"id": user_id, "name": f"user {user_id}"}


def profile(user_id: int) -> dict[str, Any]:
    key = f"profile:{user_id}"
    found: dict[str, Any] | None = cache.get(key)
    if found is None:  # a miss: not cached yet, evicted, expired, or the cache is down
        found = load_profile(user_id)
        cache.set(key, found, time=600)
    return found


# ANCHOR_END: cache-aside


# ANCHOR: cas
def add_tag(doc_key: str, tag: str) -> bool:
    """Adds `tag` to the cached document; safe against concurrent writers."""
    for _ in range(20):
        doc = cache.gets(doc_key)  # remembers the CAS id for this thread
        if doc is None:
            return False
        doc["tags"].append(tag)
        if cache.cas(doc_key, doc):  # stored only if nobody changed it since `gets`
            return True
    return False


# ANCHOR_END: cas


def main() -> None:
    # ANCHOR: cache-aside-use
    assert profile(7) == profile(7) == {"id": 7, "name": "user 7"}
    # ANCHOR_END: cache-aside-use
    assert CALLS["load_profile"] == 1, "the second call must be served by the cache"

    # ANCHOR: cas-use
    cache.set("doc:1", {"tags": []})
    threads = [threading.Thread(target=add_tag, args=("doc:1", f"t{i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tags = cache.get("doc:1")["tags"]
    # ANCHOR_END: cas-use
    assert sorted(tags) == [f"t{i}" for i in range(8)], tags

    # ANCHOR: lock
    def run_report_once(worker: str) -> bool:
        if not cache.add("lock:nightly-report", worker, time=60):  # someone else has it
            return False
        try:
            return True  # ... the work ...
        finally:
            cache.delete("lock:nightly-report")

    # ANCHOR_END: lock
    cache.add("lock:nightly-report", "another-worker", time=60)
    assert not run_report_once("me")
    cache.delete("lock:nightly-report")
    assert run_report_once("me")

    # ANCHOR: down
    down = cache.Client(["127.0.0.1:1"], app=config.app(), token=config.token(), timeout=0.5)
    assert down.get("anything") is None  # a miss, not an exception
    assert down.set("anything", 1) is False  # not stored; a warning is logged
    down.close()
    # ANCHOR_END: down

    # ANCHOR: explicit-client
    client = cache.Client.from_config()  # what the module functions use
    client.set("k", "v")
    assert client.get("k") == cache.get("k") == "v"
    client.close()
    # ANCHOR_END: explicit-client

    print("cache_patterns: ok")


if __name__ == "__main__":
    main()
