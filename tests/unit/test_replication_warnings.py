"""The active's warnings about its standby (controller/replication.py ``Replicator``) are rate-limited
(controller/loglimit.py): a standby that keeps reporting a bad position, a bad seq, or keeps falling out of step and
catching up again (its "caught up" line at info too), logs one line per LOG_EVERY seconds with a count of those left
out, not one a message."""

import logging

import pytest

from controller import loglimit
from controller.replication import Replicator
from controller.store import Change, Store

REPEATS = 50


class DownLink:
    """An HA link with no standby connected: nothing is sent."""
    connected_out = connected_in = False
    out_epoch = 0

    def send(self, msg):
        return False


@pytest.fixture
def replicator(tmp_path, monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})  # no other test's rate limit carried over
    now = [1000.0]
    monkeypatch.setattr(loglimit.time, "monotonic", lambda: now[0])
    store = Store(str(tmp_path))
    rep = Replicator(store, DownLink(), ack_timeout=0.01, log=logging.getLogger("test.replication"))
    rep.now = now
    yield rep
    store.close()


def _lines(caplog, start, level=logging.WARNING):
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.getMessage().startswith(start)]


def _unsteady(rep):
    """The standby falls out of step (a write it did not confirm) and catches up again (it reports our position)."""
    assert rep.confirm([Change("tenant", "t1", "put", {"name": "t1"}, seq=1, ts=1.0)], {}) is not None
    assert rep.lagging
    rep.forget([Change("tenant", "t1", "put", {"name": "t1"}, seq=1, ts=1.0)])
    rep.on_message({"t": "hb", "seq": 0, "history": [0, 0]})
    assert not rep.lagging


@pytest.mark.parametrize("start, message", [
    ("standby sent hb with seq", lambda rep: rep.on_message({"t": "hb", "seq": "x"})),
    ("standby position", lambda rep: rep.on_message({"t": "hello", "seq": 7, "history": [7, 1.5]})),
    ("standby not in step at seq", _unsteady),
    ("standby caught up at seq", _unsteady),  # at info: a flapping HA link flooded the log with it (stop 38)
])
def test_a_standby_repeating_itself_is_logged_once_per_interval_with_a_count(replicator, caplog, start, message):
    caplog.set_level(logging.INFO, logger="test.replication")
    level = logging.INFO if "caught up" in start else logging.WARNING
    for _ in range(REPEATS):
        message(replicator)
    assert len(_lines(caplog, start, level)) == 1  # on main: one line per message (REPEATS)
    replicator.now[0] += loglimit.LOG_EVERY
    message(replicator)
    lines = _lines(caplog, start, level)
    assert len(lines) == 2 and lines[1].endswith(f"({REPEATS - 1} more like it not logged)")
