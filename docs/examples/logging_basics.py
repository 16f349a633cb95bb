"""berth.logging: the standard library's logging, shipped to the app's log stream."""

from __future__ import annotations

import logging
import warnings

import berth.logging


def main() -> None:
    # ANCHOR: install
    handler = berth.logging.install()  # the runtime does this; a script does it itself
    log = logging.getLogger("shop.orders")
    # ANCHOR_END: install
    assert logging.getLogger().handlers == [handler]

    # ANCHOR: log
    log.info("order %s paid", 1234, extra={"amount_cents": 1299, "customer": "c_42"})
    log.debug("not shipped: below the root level (BERTH_LOG_LEVEL, default INFO)")
    try:
        int("twelve")
    except ValueError:
        log.exception("refund failed")  # the traceback travels with the event
    warnings.warn("PAGE_SIZE is deprecated: set PER_PAGE", stacklevel=1)  # a record too
    # ANCHOR_END: log

    # ANCHOR: flush
    handler.flush(timeout=10)  # wait until the collector has acknowledged what is queued
    stats = berth.logging.stats()
    print(stats)
    # ANCHOR_END: flush
    assert stats.delivered == 3, stats
    assert (stats.fallback, stats.dropped, stats.refused, stats.queued) == (0, 0, 0, 0), stats
    print("logging_basics: ok")


if __name__ == "__main__":
    main()
