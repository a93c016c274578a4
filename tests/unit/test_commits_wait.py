"""A REST write's wait for State's commit section is bounded (rest.write_wait_ms): on a node that has just taken
over, the HA applier holds the section for the whole replicated message it has in hand (seconds for a batch of
10,000 under load). Past the bound the write is refused (503 commit_busy, Retry-After, naming what holds the
section) and changes nothing; reads never wait; a retry once the batch is taken succeeds and builds on it."""

from __future__ import annotations

import threading

from controller.commits import CommitBusy, OneAtATime
from controller.pacer import Pacer
from controller.policy import Policy
from controller.replication import Applier
from controller.rest.wire import Request
from controller.store import Store
from tests.unit.helpers import TOKEN, Controller, make_settings
from tests.unit.interleave import BOUND, Gate, finish, run
from tests.unit.replication_pair import Sent

WAIT_MS = 50  # the write's bound in these tests (a setting: nothing here measures time)


def old_active_batch(tmp_path, names) -> dict:
    """The old active's last replicated message: its commits of tenants ``names``."""
    store = Store(make_settings(tmp_path / "old").data_dir)
    from controller.store import Change

    for name in names:
        store.commit([Change("tenant", f"id-{name}", "put", {"id": f"id-{name}", "source": None, "name": name})])
    batch = {"t": "changes", "changes": [c.to_wire() for c in store.changes_since(0)], "meta": {}}
    store.close()
    return batch


def answer(ctl, method, path, body=None):
    """The API's whole response (status, headers, JSON body) to one request."""
    import json

    data = json.dumps(body).encode() if body is not None else b""
    resp = ctl.api.handle(Request(method, path, {}, {"content-type": "application/json",
                                                     "authorization": f"Bearer {TOKEN}"}, data))
    data = resp.encoded()
    return resp.status, resp.headers, json.loads(data or b"null") if resp.content_type == "application/json" else data


def tenants(ctl) -> set:
    return {o["name"] for o in ctl.state.policy.all("tenant")}


def test_a_write_behind_the_appliers_batch_is_refused_after_its_bound_and_a_retry_builds_on_the_batch(tmp_path):
    ctl = Controller(tmp_path, write_wait_ms=WAIT_MS)  # just took over: REST writes accepted
    applier = Applier(ctl.store, ctl.state, Sent())  # unstarted: applies on the caller's thread
    gate = Gate()
    applier.pacer = Pacer(lambda: gate.entered.is_set() or gate.stop(), every=1)  # stops at its first pause
    batch = old_active_batch(tmp_path, ["first", "second", "third"])
    applying, applied, failed = run(applier.on_message, batch)
    assert gate.entered.wait(BOUND)  # the applier holds the commit section, mid-batch

    result: list = []
    writing, written, _ = run(lambda: result.append(answer(ctl, "POST", "/v1/tenants", {"name": "written"})))
    assert written.wait(BOUND), "the write waited for the whole batch: its wait is not bounded"
    status, headers, body = result[0]
    assert status == 503 and headers.get("Retry-After") == "1", (status, headers, body)
    assert body["error"]["code"] == "commit_busy"
    assert body["error"]["message"].startswith("commit section busy: replicated batch being applied (3 changes"), body
    assert "nothing was changed" in body["error"]["message"]
    assert f"this write waited {WAIT_MS / 1000:g} s" in body["error"]["message"], body  # its whole bound, as set
    assert ctl.store.last_seq() == 0 and tenants(ctl) == set() and not applied.is_set()

    for path in ("/v1/tenants", "/v1/status", "/metrics", "/v1/changes"):  # reads never wait for the section
        status, _, _ = answer(ctl, "GET", path)
        assert status == 200, path
    assert not applied.is_set(), "the applier finished before the reads: they proved nothing"

    gate.open()
    finish(applying, writing)
    assert not failed, failed
    status, _, body = answer(ctl, "POST", "/v1/tenants", {"name": "written"})
    assert status == 201, body
    history = [c.body["name"] for c in ctl.store.changes_since(0)]
    assert history == ["first", "second", "third", "written"], history
    assert tenants(ctl) == {"first", "second", "third", "written"}
    assert Policy(ctl.store.load_objects()).objects == ctl.state.policy.objects
    ctl.close()


def test_a_write_behind_another_write_is_bounded_too(tmp_path):
    """The service's write lock (a write waiting for its standby's confirmation holds it) counts in the same bound:
    the second write is refused, naming the first."""
    ctl = Controller(tmp_path, write_wait_ms=WAIT_MS)
    gate = Gate()
    ctl.service.replicate = lambda changes, meta: gate.stop()  # the first write waits for "its standby"
    first, first_done, failed = run(ctl.service.create, "tenant", {"name": "first"})
    assert gate.entered.wait(BOUND)
    status, headers, body = answer(ctl, "POST", "/v1/tenants", {"name": "second"})
    assert status == 503 and headers.get("Retry-After") == "1", body
    assert "a REST write (create) being committed" in body["error"]["message"], body
    gate.open()
    finish(first)
    assert not failed and tenants(ctl) == {"first"}
    ctl.close()


def test_the_section_names_its_holder_and_waits_unbounded_without_a_bound():
    commits = OneAtATime()
    holding, release = threading.Event(), threading.Event()

    def hold():
        with commits.section(holder="replicated batch being applied (7 changes)"):
            holding.set()
            release.wait(BOUND)

    holder, _, _ = run(hold)
    assert holding.wait(BOUND)
    assert commits.busy().startswith("replicated batch being applied (7 changes), held for ")
    try:
        with commits.section(wait=0):
            raise AssertionError("entered a held section")
    except CommitBusy as exc:
        assert exc.holder.startswith("replicated batch being applied (7 changes)") and exc.waited == 0
    def enter():
        with commits.section():
            pass

    waiter, entered, _ = run(enter)
    assert not entered.wait(0.05)  # still waiting (no bound)
    release.set()
    assert entered.wait(BOUND)
    finish(holder, waiter)
