"""The log limiter (controller/loglimit.py) keeps each kind of key in its own bounded table: a flood of one kind's
keys (DHCP from thousands of vports) forgets only that kind's oldest keys, never another kind's limits (before: one
table for all, cleared whole past 10,000 keys, so a DHCP flood let the store's warnings log at full rate)."""

from __future__ import annotations

import logging

import pytest

from controller import loglimit

log = logging.getLogger("canopy.test.loglimit")


@pytest.fixture
def clock(monkeypatch):
    """The limiter's time, moved by the test (``clock[0] += ...``), and no key remembered from another test."""
    now = [1000.0]
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(loglimit.time, "monotonic", lambda: now[0])
    return now


def logged(caplog, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


def test_a_flood_of_one_kinds_keys_leaves_another_kinds_limits_alone(caplog, clock):
    with caplog.at_level(logging.INFO, logger=log.name):
        loglimit.warn_limited(log, ("store", "/var/lib/canopy", "write"), "store full")
        for n in range(30_000):  # 5,000 vports x DISCOVER/REQUEST, and more: past any one kind's bound
            loglimit.log_limited(log, logging.INFO, ("dhcp answered", 1, n, 1), "dhcp %d", n)
        assert len(loglimit._last_logged["dhcp answered"]) == loglimit.KEYS_PER_KIND  # bounded, oldest forgotten
        loglimit.warn_limited(log, ("store", "/var/lib/canopy", "write"), "store full")
        assert logged(caplog, "store full") == 1  # still limited
        clock[0] += loglimit.LOG_EVERY
        loglimit.warn_limited(log, ("store", "/var/lib/canopy", "write"), "store full")
    assert logged(caplog, "store full") == 2 and "(1 more like it not logged)" in caplog.records[-1].getMessage()


def test_a_kind_keeps_at_most_its_bound_forgetting_the_key_logged_longest_ago(caplog, clock, monkeypatch):
    monkeypatch.setattr(loglimit, "KEYS_PER_KIND", 3)

    def warn(*macs):
        for mac in macs:
            loglimit.warn_limited(log, ("mac", mac), "mac %s", mac)
    with caplog.at_level(logging.INFO, logger=log.name):
        warn("a", "b", "c", "a")  # the second a within its interval: not logged
        clock[0] += 5
        warn("d", "a")  # d forgets a (logged longest ago), so a logs again at once and forgets b
        warn("c", "d", "a")  # all remembered, within their interval: none logged
        assert list(loglimit._last_logged["mac"]) == [("mac", "c"), ("mac", "d"), ("mac", "a")]
        clock[0] += 5
        warn("c")  # its interval over: logged, now the latest
        warn("e")  # forgets d, not c
        assert list(loglimit._last_logged["mac"]) == [("mac", "a"), ("mac", "c"), ("mac", "e")]
    assert [r.getMessage() for r in caplog.records] == [
        "mac a", "mac b", "mac c", "mac d", "mac a", "mac c (1 more like it not logged)", "mac e"]


def test_the_kinds_are_bounded_too(clock, monkeypatch):
    monkeypatch.setattr(loglimit, "KINDS", 4)
    for kind in range(10):
        loglimit.warn_limited(log, (f"kind {kind}", 1), "x")
    assert list(loglimit._last_logged) == ["kind 6", "kind 7", "kind 8", "kind 9"]
    loglimit.warn_limited(log, "a bare key", "x")  # a key not a tuple is its own kind
    assert "a bare key" in loglimit._last_logged["a bare key"]
