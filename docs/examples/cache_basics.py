"""berth.cache: the app's memcache, App Engine's API over Berth's cache servers."""

from __future__ import annotations

from berth import cache


def main() -> None:
    # ANCHOR: flush
    assert cache.flush_all()  # start empty: only this app's items go, on every server
    # ANCHOR_END: flush

    # ANCHOR: get-set
    cache.set("greeting", "hello")  # True when stored
    cache.set("user:42", {"name": "Ann", "posts": 3}, time=300)  # any picklable value, 5 min
    greeting = cache.get("greeting")
    user = cache.get("user:42")
    missing = cache.get("nothing-here")  # a miss is None
    # ANCHOR_END: get-set
    assert (greeting, user, missing) == ("hello", {"name": "Ann", "posts": 3}, None)

    # ANCHOR: add-replace-delete
    cache.delete("lock:report")
    first = cache.add("lock:report", "worker-1", time=30)  # only if absent
    second = cache.add("lock:report", "worker-2", time=30)  # False: already held
    swapped = cache.replace("lock:report", "worker-3")  # only if present
    gone = cache.delete("lock:report")  # DELETE_SUCCESSFUL
    again = cache.delete("lock:report")  # DELETE_ITEM_MISSING
    # ANCHOR_END: add-replace-delete
    assert (first, second, swapped) == (True, False, True)
    assert (gone, again) == (cache.DELETE_SUCCESSFUL, cache.DELETE_ITEM_MISSING)

    # ANCHOR: counters
    cache.delete("views")
    assert cache.incr("views") is None  # absent and no initial value
    views = cache.incr("views", initial_value=100)  # created as 100, then +1
    views = cache.incr("views", 10)
    floor = cache.decr("views", 500)  # decr stops at 0
    # ANCHOR_END: counters
    assert (views, floor) == (111, 0)

    # ANCHOR: multi
    not_stored = cache.set_multi({"1": "one", "2": "two"}, key_prefix="num:")
    found = cache.get_multi(["1", "2", "3"], key_prefix="num:")  # one round trip per server
    all_answered = cache.delete_multi(["1", "2"], key_prefix="num:")
    # ANCHOR_END: multi
    assert not_stored == [] and found == {"1": "one", "2": "two"} and all_answered
    assert cache.get("num:1") is None

    # ANCHOR: namespaces
    cache.set("count", 1, namespace="tenant-a")
    cache.set("count", 2, namespace="tenant-b")  # the same key in another namespace
    a = cache.get("count", namespace="tenant-a")
    b = cache.get("count", namespace="tenant-b")
    plain = cache.get("count")  # no namespace is a namespace of its own
    # ANCHOR_END: namespaces
    assert (a, b, plain) == (1, 2, None)

    # ANCHOR: keys
    long_key = "report/" + "x" * 400  # over memcached's 250 bytes
    cache.set(long_key, "stored under sha256:<hex> of the key")
    cache.set("clé avec espaces", "non-ASCII and spaces work too")
    # ANCHOR_END: keys
    assert cache.get(long_key) == "stored under sha256:<hex> of the key"
    assert cache.get("clé avec espaces") == "non-ASCII and spaces work too"

    # ANCHOR: too-large
    huge = b"x" * (2 * 1024 * 1024)  # over the server's item size limit (1 MiB)
    stored = cache.set("huge", huge)  # False, and a warning on the berth.cache logger
    rejected = cache.set_multi({"small": b"ok", "huge": huge})
    # ANCHOR_END: too-large
    assert stored is False and rejected == ["huge"] and cache.get("huge") is None

    # ANCHOR: bad-arguments
    try:
        cache.set("k", "v", time=-1)
    except ValueError as e:  # programming errors raise; only cache failures read as misses
        print(e)
    else:
        raise AssertionError("a negative time must raise")
    # ANCHOR_END: bad-arguments
    print("cache_basics: ok")


if __name__ == "__main__":
    main()
