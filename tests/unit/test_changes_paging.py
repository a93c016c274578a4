"""GET /v1/changes read a page at a time (controller/rest/api.py ``changes``) against a client that polls the log with
``since`` = the previous answer's ``last_seq``, writes committed between two pages of an answer (in its turns):
the client sees every change once, never one twice, and ``oldest_seq`` says changes are gone (``oldest_seq > since +
1``) only when some after ``since`` are missing from the answer (review29a: items, ``last_seq`` and what is gone are
of one state; a page at a time must not break that)."""

from __future__ import annotations

from controller.rest import api as rest_api

from .helpers import Controller

FIRST, WRITES, AT_ONCE = 25, 30, 5  # changes before the first poll; written in the answers' turns (at most); in one


def poll(ctl, limit=10_000) -> tuple[list[int], list[bool]]:
    """Poll from 0 with ``since`` = ``last_seq`` until an answer is empty: (the seqs seen, in order; for each answer
    whether it said changes after its ``since`` are gone)."""
    seen, gaps, cursor = [], [], 0
    for _ in range(100):
        status, answer = ctl.call("GET", "/v1/changes", query={"since": str(cursor), "limit": str(limit)})
        assert status == 200, answer
        seen += [c["seq"] for c in answer["items"]]
        gaps.append(answer["oldest_seq"] > cursor + 1)
        if not answer["items"]:
            return seen, gaps
        cursor = answer["last_seq"]
    raise AssertionError("the poll did not end")


def writing_controller(tmp_path, monkeypatch, keep_changes=100_000):
    """FIRST changes in the log, pages of 10, and AT_ONCE writes committed in each turn an answer takes between two
    pages (WRITES in all)."""
    ctl = Controller(tmp_path)
    for i in range(FIRST):
        ctl.create("tenants", {"name": f"t{i}"})
    ctl.store.keep_changes = keep_changes
    monkeypatch.setattr(rest_api, "CHANGES_PAGE", 10)
    written = []

    def pause():
        for _ in range(min(AT_ONCE, WRITES - len(written))):
            written.append(ctl.create("tenants", {"name": f"w{len(written)}"}))

    ctl.api.pause = pause
    return ctl, written


def test_a_poller_using_last_seq_sees_every_change_once_while_writes_come_between_pages(tmp_path, monkeypatch):
    ctl, written = writing_controller(tmp_path, monkeypatch)
    try:
        seen, gaps = poll(ctl)
        assert len(written) >= 2 * AT_ONCE, "writes came in one turn at most: it proved nothing"
        assert seen == list(range(1, FIRST + len(written) + 1))  # each once, in order
        assert not any(gaps)
    finally:
        ctl.close()


def test_a_log_trimmed_between_pages_but_not_past_them_is_not_reported_as_changes_gone(tmp_path, monkeypatch):
    """The log keeps FIRST + 5 changes: writes in the turns trim its head while the answer's pages are past it. Nothing the
    poller asked for is missing, so ``oldest_seq`` must not say some are gone (before: the last page's oldest_seq,
    from after the trim, made a client that got every change believe it had lost some)."""
    ctl, written = writing_controller(tmp_path, monkeypatch, keep_changes=FIRST + 5)
    try:
        seen, gaps = poll(ctl)
        assert ctl.store.reader.changes(0, 1)[1] > 1, "the log was never trimmed: it proved nothing"
        assert len(written) >= 2 * AT_ONCE and seen == list(range(1, FIRST + len(written) + 1))
        assert not any(gaps)
    finally:
        ctl.close()


def test_a_log_trimmed_past_the_next_page_says_changes_are_gone(tmp_path, monkeypatch):
    """A write in the turn trims the log past the next page: the answer ends before it, and its ``oldest_seq`` says
    changes after the poller's ``since`` are gone (it would otherwise go on from ``last_seq`` unaware)."""
    ctl, written = writing_controller(tmp_path, monkeypatch, keep_changes=5)
    try:
        status, answer = ctl.call("GET", "/v1/changes", query={"limit": "100"})
        assert [c["seq"] for c in answer["items"]] == list(range(1, 11))  # the first page only
        assert answer["oldest_seq"] > 11 and answer["last_seq"] == FIRST + AT_ONCE
    finally:
        ctl.close()
