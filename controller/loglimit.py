"""A warning repeated many times a second (a hostile peer's refused connections, a full disk's refused writes) is
logged at most once per LOG_EVERY seconds for the same key, with a count of those left out: the log stays
readable and the first occurrence is never lost. No imports beyond the standard library, so the store and the
CLI can use it without the event loop's.

A key's first element names its kind (``("dhcp ignored", datapath, cookie, ...)``, ``("store", path, what)``);
each kind keeps its own table of at most KEYS_PER_KIND keys and, when full, forgets the key logged longest ago:
a flood of one kind's keys (DHCP from thousands of vports) never resets another kind's limits (the store's, EVPN's).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

_last_logged: dict = {}  # kind -> OrderedDict(key -> [when last logged, occurrences not logged since]), oldest first
LOG_EVERY = 10.0  # seconds: a repeated warning (same key) is logged at most this often, with a count
KEYS_PER_KIND = 10000  # keys one kind remembers; beyond, the one logged longest ago is forgotten
KINDS = 1000  # kinds remembered (each a name in the code, so far fewer); beyond, the one made first goes
GROUP_LINES = 5  # lines of one group's keys together per LOG_EVERY (``log_limited_in``)


def warn_limited(logger, key, msg: str, *args) -> None:
    """``logger.warning(msg, *args)``, at most once per LOG_EVERY seconds for the same ``key``; the line says how
    many like it were left out meanwhile."""
    log_limited(logger, logging.WARNING, key, msg, *args)


def log_limited(logger, level: int, key, msg: str, *args) -> bool:
    """``logger.log(level, msg, *args)``, limited as ``warn_limited``; whether the line was logged."""
    now = time.monotonic()
    table = _table_of(key[0] if isinstance(key, tuple) and key else key)
    entry = table.get(key)
    if entry is None:
        entry = table[key] = [-LOG_EVERY, 0]
        if len(table) > KEYS_PER_KIND:
            table.popitem(last=False)
    if now - entry[0] < LOG_EVERY:
        entry[1] += 1
        return False
    skipped, entry[0], entry[1] = entry[1], now, 0
    table.move_to_end(key)
    logger.log(level, msg + (f" ({skipped} more like it not logged)" if skipped else ""), *args)
    return True


def log_limited_in(logger, level: int, group: tuple, key, msg: str, *args) -> None:
    """``log_limited`` for ``key``, and at most GROUP_LINES lines per LOG_EVERY for every key of ``group`` together
    (``group[0]`` names its kind, as a key's does): a VM asking under a new MAC each time (each MAC a key of its own,
    so that one MAC's flood hides no other's first line) logs GROUP_LINES lines per interval, not one per request.
    The group's next line says how many of its lines were left out."""
    now = time.monotonic()
    table = _table_of(group[0])
    entry = table.get(group)
    if entry is None:
        entry = table[group] = [now, 0, 0]  # the interval's start, lines logged in it, lines left out since the last
        if len(table) > KEYS_PER_KIND:
            table.popitem(last=False)
    elif now - entry[0] >= LOG_EVERY:
        entry[0], entry[1] = now, 0
        table.move_to_end(group)
    if entry[1] >= GROUP_LINES:
        entry[2] += 1
        return
    left_out = entry[2]
    suffix = f" ({left_out} more lines of the same source left out)" if left_out else ""
    if log_limited(logger, level, key, msg + suffix, *args):
        entry[1], entry[2] = entry[1] + 1, 0


def _table_of(kind) -> OrderedDict:
    """The bounded table of ``kind``'s keys, made on first use; beyond KINDS the kind made first is forgotten."""
    table = _last_logged.get(kind)
    if table is None:
        if len(_last_logged) >= KINDS:
            del _last_logged[next(iter(_last_logged))]
        table = _last_logged[kind] = OrderedDict()
    return table
