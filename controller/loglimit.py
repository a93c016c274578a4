"""A warning repeated many times a second (a hostile peer's refused connections, a full disk's refused writes) is
logged at most once per LOG_EVERY seconds for the same key, with a count of those left out: the log stays
readable and the first occurrence is never lost. No imports beyond the standard library, so the store and the
CLI can use it without the event loop's."""

from __future__ import annotations

import logging
import time

_last_logged: dict = {}  # key -> [when last logged, occurrences not logged since]
LOG_EVERY = 10.0  # seconds: a repeated warning (same key) is logged at most this often, with a count


def warn_limited(logger, key, msg: str, *args) -> None:
    """``logger.warning(msg, *args)``, at most once per LOG_EVERY seconds for the same ``key``; the line says how
    many like it were left out meanwhile."""
    log_limited(logger, logging.WARNING, key, msg, *args)


def log_limited(logger, level: int, key, msg: str, *args) -> None:
    """``logger.log(level, msg, *args)``, limited as ``warn_limited``."""
    now = time.monotonic()
    entry = _last_logged.setdefault(key, [-LOG_EVERY, 0])
    if now - entry[0] < LOG_EVERY:
        entry[1] += 1
        return
    skipped, entry[0], entry[1] = entry[1], now, 0
    logger.log(level, msg + (f" ({skipped} more like it not logged)" if skipped else ""), *args)
    if len(_last_logged) > 10000:  # many sources: forget them all rather than grow
        _last_logged.clear()
