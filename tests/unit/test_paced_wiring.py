"""The pacers stop 44 left count-only pace by the wall clock too where the controller wires them (controller/app.py):
a switch's reconciler, the HA standby's applier, a scrape's switch counts (controller/pacer.py ``BoundedPacer``).

Counted, not timed: the clock a ``BoundedPacer`` reads here is the bytecodes run (tests/bytecodes.py) at ``RATE``
a second, divided by ``SHARE``: the event loop's share of a CPU on a loaded machine (stop 44's labs: five busy
processes on two cores). A count-only pacer's stretch is as long in wall clock as its units take at that share;
a bounded one ends at its first check past ``BUDGET``. On a quiet machine (``SHARE`` 1) these stretches, 90,000-
140,000 bytecodes, are under the budget (160,000 at ``RATE``): the clock changes nothing there."""

from __future__ import annotations

from controller.pacer import BUDGET, CHECKS, BoundedPacer, Pacer, loop_pacer, paced
from openflow.installed import CHUNK
from tests.bytecodes import Bytecodes
from tests.unit.forked import forked
from tests.unit.sinks import Reports

RATE = 20_000_000  # bytecodes a second of a CPU (as tests/unit/test_bounded_pacer.py)
SHARE = 4  # the loop gets a quarter of a CPU: a stretch's wall clock is 4 times its CPU
LOADED_BUDGET = int(BUDGET * RATE / SHARE)  # 40,000 bytecodes: what the budget allows at that share
RECONCILE_EVERY, STATE_EVERY = 1000, 500  # as controller/app.py (checked below: importing it here costs seconds)


class Stretches:
    """The longest run of bytecodes between two pauses of the work it runs; ``clock`` is the wall clock at
    ``SHARE`` (the bytecodes of the stretch under way, as the pauses start each at 0)."""

    def __init__(self):
        self.counter, self.most, self.pauses = Bytecodes(), 0, 0

    def pause(self) -> None:
        self.most = max(self.most, self.counter.count)
        self.counter.count = 0
        self.pauses += 1

    def clock(self) -> float:
        return self.counter.count * SHARE / RATE

    def bind(self, pacer):
        if isinstance(pacer, BoundedPacer):
            pacer.clock = self.clock
            pacer._since = self.clock()  # (made on perf_counter)
        return pacer

    def run(self, work) -> int:
        self.counter.run(work)
        return max(self.most, self.counter.count)


def _count_only(pause, every):
    return Pacer(pause, every)


OWNERS = 1_000  # a switch's owners, two flows each


def _reconciler_plan(make) -> int:
    """The longest stretch of planning a switch's change set (every one of OWNERS owners changed: 4 x OWNERS flows)
    with its pacer made by ``make(pause, RECONCILE_EVERY)``."""
    from openflow.flows import Group
    from tests.unit.test_reconcile_pacing import desired, reconciler

    rec, _switch = reconciler()
    rec.set_desired_owners(desired(count=OWNERS), [Group(7, ())])  # in sync, then every owner changed
    rec._book.read_back({})
    rec._book.applied(rec._book.plan())
    rec._book.set_desired(desired(salt=1, count=OWNERS), changed=set(desired(salt=1, count=OWNERS)))
    stretches = Stretches()
    rec.pacer = stretches.bind(make(stretches.pause, RECONCILE_EVERY))
    return stretches.run(rec._plan)


def test_a_reconcilers_change_set_pauses_within_the_budget_at_the_loops_share():
    """Planning 4,000 flow changes: RECONCILE_EVERY flows a stretch by the count (83,234 bytecodes: 17 ms at a
    quarter of a CPU); bounded, 43,003: the budget and what runs until the next check (an owner's flows). The adds'
    sort ticks a chunk of 512 flows keyed at a time (openflow/pacedsort.py; one stretch of up to 32,768 flows,
    ~590,000 bytecodes, before stop 46: tests/unit/test_paced_sort.py)."""
    before, after = _reconciler_plan(_count_only), _reconciler_plan(loop_pacer)
    assert before > 2 * LOADED_BUDGET, before
    assert after < LOADED_BUDGET + 10_000 < before, (before, after)


def _applier_batch(make, vports: int = 150) -> int:
    """The longest stretch of a standby's applier taking one replicated batch of ``vports`` vports (decoded,
    checked: its pacer made by ``make(pause, 100)`` as controller/app.py's), State's pacer the same pause."""
    import tempfile
    from pathlib import Path

    from controller.replication import Applier
    from tests.benchmarks.applier_hold import old_active
    from tests.unit.helpers import Controller
    from tests.unit.replication_pair import Sent

    with tempfile.TemporaryDirectory() as tmp:
        old, changes = old_active(Path(tmp), vports)
        batch = {"t": "changes", "changes": [c.to_wire() for c in changes], "meta": old.store.replicated_meta()}
        new = Controller(Path(tmp) / "new")
        try:
            stretches, state_stretches = Stretches(), Stretches()
            state_stretches.counter = stretches.counter  # State's pauses end a stretch too, not one of the applier's
            applier = Applier(new.store, new.state, Sent())
            applier.pacer = stretches.bind(make(stretches.pause, 100))
            new.state.pacer = state_stretches.bind(loop_pacer(state_stretches.pause, STATE_EVERY))  # as the app's
            stretches.run(lambda: applier.on_message(batch))
            assert new.store.last_seq() == len(changes)
            return stretches.most  # (the stretches its pauses ended: not the store's write, State's intake)
        finally:
            old.close()
            new.close()


def test_a_standbys_applier_pauses_within_the_budget_at_the_loops_share():
    """Decoding and checking a replicated batch of 150 vports: 100 changes a stretch by the count (279,834
    bytecodes: 56 ms at a quarter of a CPU); bounded, 69,465: the budget and the changes until the next check (12)."""
    before, after = _applier_batch(_count_only), _applier_batch(loop_pacer)
    assert before > 2 * LOADED_BUDGET, before
    assert after < LOADED_BUDGET + 100 // CHECKS * 3_000 < before, (before, after)


def _scrape_counts(budget) -> int:
    """The longest stretch of a scrape's switch families (controller/metrics.py ``_switches``) over a switch
    just read back (a full diff of 6 x OWNERS flows, their cookies computed the first time)."""
    from controller import metrics
    from tests.unit.helpers import Controller
    from tests.unit.test_reconcile_pacing import read_back_of_many_flows, reconciler
    import tempfile
    from pathlib import Path

    recs = {}
    for dpid in (1,):
        rec, _switch = reconciler()
        read_back_of_many_flows(rec)
        recs[dpid] = rec
    stretches = Stretches()
    with tempfile.TemporaryDirectory() as tmp:
        ctl = Controller(Path(tmp))
        try:
            made = metrics.paced

            def bound(pause, every, budget):
                return stretches.bind(made(pause, every, budget))
            metrics.paced = bound
            try:
                return stretches.run(lambda: list(metrics._switches(ctl.state, recs, stretches.pause, None, budget)))
            finally:
                metrics.paced = made
        finally:
            ctl.close()


def test_a_scrapes_switch_counts_pause_within_the_budget_at_the_loops_share():
    """Counting a switch just read back (its flows keyed, cookies computed): COUNT_EVERY flows a stretch by the count,
    134,758 bytecodes (27 ms at a quarter of a CPU); with the app's ``budget`` (``Metrics.attach``), 76,769: the
    budget and the rest of a chunk of flows (openflow/installed.py ``paced_sets``: a tick per 512)."""
    before, after = _scrape_counts(None), _scrape_counts(BUDGET)
    assert before > 3 * LOADED_BUDGET, before
    assert after < 2 * LOADED_BUDGET < before, (before, after)


def _app_pacers(data) -> str:
    """The pacers of the app as ryu-manager builds it (``CanopyApp()``, with an HA pair) and of a switch's reconciler
    (``_adopt``): a line each, its type, budget and count. Run in a forked child (tests/unit/forked.py): the settings
    and the class it sets are the child's alone."""
    from types import SimpleNamespace

    from controller import app, runtime, settings
    from controller.yamldoc import Doc

    runtime.SETTINGS = settings.from_doc(Doc("<t>", {"data_dir": str(data), "ha": {
        "node_id": "b", "peer": "10.250.0.1", "priority": 100, "secret": "s" * 32}}))
    made = []

    class Rec:  # the reconciler's pacer kept; it never starts
        def __init__(self, dp, pacer=None, **kw):
            made.append(pacer)
        keep_stale = hold = lambda self, on: None
        start = stop = lambda self: None

    app.SwitchReconciler = Rec
    rest_budgets = []  # the budget each REST module's routes were given (controller/rest/lane.py answer_pacer)
    for module in (app.rest_sessions, app.rest_dataplane, app.rest_vteps, app.rest_bgp):
        def given(*args, _routes=module.routes, _name=module.__name__.rsplit(".", 1)[1], budget=None, **kw):
            rest_budgets.append(f"rest {_name} {budget}")
            return _routes(*args, budget=budget, **kw)
        module.routes = given
    canopy = app.CanopyApp()  # wired as ryu-manager builds the app
    canopy._adopt(SimpleNamespace(id=1, address=("127.0.0.1", 40001), is_active=True))
    lines = [f"{name} {type(pacer).__name__} {pacer.budget} {pacer.every}"
             for name, pacer in [("reconciler", made[0]), ("applier", canopy.pair.applier.pacer),
                                 ("state", canopy.state.pacer), ("programmer", canopy.programmer.pacer)]]
    return "\n".join(lines + [f"metrics {canopy.api.metrics.sources['budget']}", f"rest api {canopy.api.budget}"]
                     + rest_budgets + [f"rest watch {canopy.watch.budget}"])


def test_the_app_wires_bounded_pacers_for_reconcilers_the_applier_and_the_scrapes_counts(tmp_path):
    """Built in a child forked from this process, not a new interpreter: the app's modules are imported here once
    (a score of unit files import them in it too), not again by a child (that import was the test's cost: ~1.4 s of CPU, 7 s
    at load 9.5); building the app takes ~30 ms and runs no green thread."""
    import controller.app  # noqa: F401 - imported before the fork: the child builds the app at once

    data = tmp_path / "data"
    data.mkdir()
    done = forked(lambda: _app_pacers(data))
    assert done.splitlines() == [f"reconciler BoundedPacer {BUDGET} {RECONCILE_EVERY}",
                                 f"applier BoundedPacer {BUDGET} 100",
                                 f"state BoundedPacer {BUDGET} {STATE_EVERY}",
                                 f"programmer BoundedPacer {BUDGET} 200", f"metrics {BUDGET}",
                                 f"rest api {BUDGET}", f"rest sessions {BUDGET}", f"rest dataplane {BUDGET}",
                                 f"rest vteps {BUDGET}", f"rest bgp {BUDGET}", f"rest watch {BUDGET}"]
    assert type(paced(None, 1, None)) is Pacer


class _Key(tuple):
    """A flow's key as read back, whose hashings are counted (``HASHED``): C work, not seen in bytecodes."""

    def __hash__(self):
        HASHED[0] += 1
        return tuple.__hash__(self)


HASHED = [0]


def _tally_hashing(book):
    """``book.tally``'s counts and the most keys hashed between two of its ticks."""
    most = [0]

    def tick(units=1):
        most[0] = max(most[0], HASHED[0])
        HASHED[0] = 0
    HASHED[0] = 0
    counts = book.tally(tick)
    return counts, max(most[0], HASHED[0])

def test_a_count_after_a_read_back_diffs_a_chunk_at_a_time():
    """A switch just read back is counted by a full diff (openflow/installed.py ``FlowBook.tally``): its set
    operations over every key desired and read back ran in one stretch between two ticks (vrs_scale's restart: a
    scrape's count of a switch of 16,000 flows, ~12 ms of CPU, the restart's longest stretches). Now a chunk at a
    time. Counted: the read-back keys hashed between two ticks (all 5,000 before, ``CHUNK`` at most now) and the
    counts, as the set operations give them."""
    from openflow.installed import FlowBook
    from tests.unit.test_reconcile_pacing import desired, flows_of

    book = FlowBook()
    book.set_desired(desired(count=OWNERS))
    held = {_Key(f.key): f for i in range(0, OWNERS, 2) for f in flows_of(i)}  # half held, and stale flows
    held.update({_Key(f.key): f for i in range(2 * OWNERS) for f in flows_of(i, salt=9)})
    book.read_back(held)
    want = {f.key for fs in book.desired.values() for f in fs}  # (each flow's key made: its cookie computed)
    counts, most = _tally_hashing(book)
    assert counts == (2 * OWNERS, len(held), len(want - held.keys()) + len(held.keys() - want), 0)
    assert most <= CHUNK, most


def _vtep_with_macs(count: int):
    """A hardware VTEP's database (tests/unit/vtep_fakes.py) whose switch learnt ``count`` MACs in VNI 5001."""
    from tests.unit.vtep_fakes import FakeVtepDb

    db = FakeVtepDb()
    ls = db.logical_switch("canopy-5001", 5001)
    for i in range(count):
        db.add("Ucast_Macs_Local", MAC="02:00:00:%02x:%02x:%02x" % (i >> 16, (i >> 8) & 255, i & 255),
               logical_switch=ls, ipaddr="", locator=db.own)
    return db


def test_a_vteps_local_macs_are_read_with_pauses():
    """A hardware VTEP's local MACs read whole (ovsdb/vtep_reporter.py ``LocalMacs``: at connect, or when a port's
    bindings change) were one stretch: 10,000 MACs, ~12 million bytecodes, ~130 ms of CPU. Now the session's pacer is
    ticked per row (``PAUSE_PORTS`` a pause in the app, and by the wall clock): counted at 1,000 MACs, the most
    bytecodes between two pauses of a pacer pausing every 100 rows."""
    from ovsdb.vtep_reporter import VtepReporter

    db, sink, counter, most = _vtep_with_macs(1_000), Reports(), Bytecodes(), [0]

    def pause():
        most[0] = max(most[0], counter.count)
        counter.count = 0
    reporter = VtepReporter(sink, "s1", "peer", pacer=Pacer(pause, 100))
    counter.run(lambda: reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local")))
    assert reporter.pacer.pauses == 10 and len(sink.updates[-1].local_macs) == 1_000
    assert max(most[0], counter.count) < 200_000, most[0]  # (~1,200 bytecodes a row; all 1,000: ~1.2 million)


def test_a_vtep_made_to_speak_in_a_pause_of_its_read_reports_its_rows_whole():
    """In a pause of session B's whole read (B silent: session A speaks for the switch), A goes: the claims make B
    speak at once, and B reports its rows read whole; the read under way then ends with the same MACs."""
    from ovsdb.claims import VtepClaims
    from ovsdb.vtep_reporter import VtepReporter

    db, sink, clock = _vtep_with_macs(300), Reports(), [0.0]
    claims = VtepClaims(sink, grace=0.0, clock=lambda: clock[0])
    a, armed = VtepReporter(sink, "a", "peer-a", claims=claims), []

    def pause():
        if armed == [True]:
            armed.append(False)
            a.gone()  # B becomes the speaker and reports its rows whole (``speak``), in this pause
    b = VtepReporter(sink, "b", "peer-b", claims=claims, pacer=Pacer(pause, 100))
    b.refresh(db.all("Physical_Switch"), lambda: db.all("Ucast_Macs_Local"))
    a.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))  # the newest speaks
    assert not b.speaking and a.speaking
    reported = len(sink.updates)
    db.learn = db.add("Ucast_Macs_Local", MAC="02:00:00:ff:00:01", logical_switch=db.all("Logical_Switch")[0],
                      ipaddr="", locator=db.own)
    armed.append(True)
    b.refresh(db.all("Physical_Switch"), lambda: db.all("Ucast_Macs_Local"))  # read whole again (changes=None)
    assert b.speaking and armed == [True, False] and b.pacer.pauses == (300 + 301 + 301) // 100  # speak read too
    assert len(sink.updates) == reported + 1 and sink.updates[-1].peer == "peer-b"  # by speak, whole: the new MAC
    assert len(sink.updates[-1].local_macs) == 301 and b.last.local_macs == sink.updates[-1].local_macs
    assert b._local.sorted() == b.last.local_macs


def test_a_count_after_a_read_back_hashes_a_switchs_refused_flows_once_not_once_a_chunk():
    """A switch that refused many flows (its table full: ``FlowBook.rejected``) counted after a read-back: the
    refused keys were hashed again for every chunk of the desired ones (``set.difference`` with two dicts iterates
    the second whole), 6 chunks x 1,500 here, 32 x 6,000 for 16,000 flows with 6,000 refused, ~20 ms of CPU more.
    Counted: the refused keys hashed between two ticks (``CHUNK`` at most) and the counts, as before."""
    from openflow.installed import FlowBook
    from tests.unit.test_reconcile_pacing import desired

    book = FlowBook()
    book.set_desired(desired(count=1_500))  # 3,000 flows desired, none held, half of them refused
    book.read_back({})
    keys = [f.key for fs in book.desired.values() for f in fs]
    book.rejected = {_Key(k): "table full" for k in keys[::2]}
    counts, most = _tally_hashing(book)
    assert counts[:3] == (3_000, 0, len(keys) - len(book.rejected)) == (3_000, 0, 1_500)
    assert most <= CHUNK, most


def test_a_vtep_made_to_speak_in_a_pause_of_its_changed_macs_reports_its_rows_whole():
    """As above, in a pause of session B reading only its changed local MACs (``changes``): B speaks, reads its rows
    whole and reports them; the changes read under way end on the old set, which is dropped; B's next change is
    reported from the rows read whole, with only that MAC changed."""
    from ovsdb.claims import VtepClaims
    from ovsdb.rowchanges import RowChange, RowChanges, row_key
    from ovsdb.vtep_reporter import VtepReporter

    db, sink = _vtep_with_macs(300), Reports()
    claims = VtepClaims(sink, grace=0.0, clock=lambda: 0.0)
    a, armed = VtepReporter(sink, "a", "peer-a", claims=claims), []

    def pause():
        if armed == [True]:
            armed.append(False)
            a.gone()
    b = VtepReporter(sink, "b", "peer-b", claims=claims, pacer=Pacer(pause, 100))
    rows = lambda: db.all("Ucast_Macs_Local")  # noqa: E731
    b.refresh(db.all("Physical_Switch"), rows)
    a.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    ls = db.all("Logical_Switch")[0]

    def learn(first, count):
        changes = RowChanges()
        for i in range(first, first + count):
            row = db.add("Ucast_Macs_Local", MAC="02:00:00:fe:%02x:%02x" % (i >> 8, i & 255), logical_switch=ls,
                         ipaddr="", locator=db.own)
            changes.record("Ucast_Macs_Local", row_key(row), RowChange(row))
        return changes
    changes, reported = learn(0, 150), len(sink.updates)
    armed.append(True)
    b.refresh(db.all("Physical_Switch"), rows, changes)  # a pause after 100 of the 150: B speaks there
    assert b.speaking and armed == [True, False]
    assert len(sink.updates) == reported + 1 and len(sink.updates[-1].local_macs) == 450
    assert b._local.sorted() == b.last.local_macs == sink.updates[-1].local_macs
    b.refresh(db.all("Physical_Switch"), rows, learn(150, 1))
    assert len(sink.updates[-1].local_macs) == 451 and b._local.sorted() == sink.updates[-1].local_macs
    assert {m.mac for m in sink.updates[-1].changed} == {"02:00:00:fe:00:96"}


def test_a_vtep_made_to_speak_while_idle_keeps_the_rows_its_own_session_read_in_the_speaks_pauses():
    """Session A goes while B is idle: the claims make B speak in A's green thread, a whole read with pauses. In one,
    B's own thread takes its next update (a MAC learnt: B's local MACs, gone in ``speak``, read whole again) and
    reports it. The speak's read, begun before, of the rows as they were, then ended and was reported over it: the
    switch shown without the MAC, and B's later changes applied to those older rows (the MAC lost until a whole
    read). Now a read that a newer one began in its pauses is dropped; the newer one reports."""
    from ovsdb.claims import VtepClaims
    from ovsdb.rowchanges import RowChange, RowChanges, row_key
    from ovsdb.vtep_reporter import VtepReporter

    db, sink = _vtep_with_macs(300), Reports()
    claims = VtepClaims(sink, grace=0.0, clock=lambda: 0.0)
    a, armed = VtepReporter(sink, "a", "peer-a", claims=claims), []
    rows = lambda: db.all("Ucast_Macs_Local")  # noqa: E731
    ls = db.all("Logical_Switch")[0]

    def learn(mac):
        changes = RowChanges()
        row = db.add("Ucast_Macs_Local", MAC=mac, logical_switch=ls, ipaddr="", locator=db.own)
        changes.record("Ucast_Macs_Local", row_key(row), RowChange(row))
        return changes

    def pause():
        if armed == [True]:
            armed.append(False)
            b.refresh(db.all("Physical_Switch"), rows, learn("02:00:00:fe:00:01"))  # B's own thread, meanwhile
    b = VtepReporter(sink, "b", "peer-b", claims=claims, pacer=Pacer(pause, 100))
    b.refresh(db.all("Physical_Switch"), rows)
    a.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    armed.append(True)
    a.gone()  # B speaks (in A's thread), its update arriving in a pause of that read
    assert b.speaking and armed == [True, False]
    assert len(sink.updates[-1].local_macs) == 301 and b._local.sorted() == b.last.local_macs
    b.refresh(db.all("Physical_Switch"), rows, learn("02:00:00:fe:00:02"))
    assert len(sink.updates[-1].local_macs) == 302 and b._local.sorted() == sink.updates[-1].local_macs


def test_a_vtep_session_ended_in_a_pause_of_its_first_read_claims_and_reports_nothing():
    """The session ends (``gone``) in a pause of its first read: the read then joined the claims and reported the
    switch, a claimant that never leaves (the switch never reported gone)."""
    from ovsdb.claims import VtepClaims, vtep_key
    from ovsdb.vtep_reporter import VtepReporter

    db, sink = _vtep_with_macs(300), Reports()
    claims = VtepClaims(sink, grace=0.0, clock=lambda: 0.0)
    b = VtepReporter(sink, "b", "peer-b", claims=claims, pacer=Pacer(lambda: b.gone(), 100))
    assert b.refresh(db.all("Physical_Switch"), lambda: db.all("Ucast_Macs_Local")) is False
    assert sink.updates == [] and claims.speaker(vtep_key(db.all("Physical_Switch")[0].name)) is None
