"""Many clients asking for a big answer at once (controller/rest/lane.py): between two turns of another green thread
(the lag probe, an OVSDB probe, an HA heartbeat) the event loop computes one answer's stretch, not one per client.

Counted, not timed: the vport views built between two turns of a probe. Before the lane, 8 clients asking
``GET /v1/vports`` together built all 8 listings in one round of the loop (8 x 40 views), and with 60 clients and
3,000 vports a real controller's loop was held 2.5 s (docs/operations.md, "When a part fails")."""

from __future__ import annotations

import eventlet

from controller.rest.wire import Request
from controller.rest.lane import Lane

from .helpers import Controller
from .probeturns import beside_probe, runs_between

VPORTS, CLIENTS = 40, 8


def controller_with_vports(tmp_path):
    ctl = Controller(tmp_path)
    ports = [{"name": f"v{i}", "mac": "02:00:00:00:%02x:%02x" % (i // 256, i % 256), "ips": [f"10.0.1.{i + 2}"],
              "binding": {"flavour": "kvm"}} for i in range(VPORTS)]
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": ports}]}]}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    return ctl


def most_views_between_probe_turns(ctl, pause) -> int:
    """``CLIENTS`` green threads ask ``GET /v1/vports`` together, the Api pausing with ``pause``; a probe green thread
    takes a turn whenever it can. The most vport views built between two of its turns."""
    marks = []
    view = ctl.api._view
    ctl.api._view = lambda kind, obj, **kw: marks.append("view") or view(kind, obj, **kw)
    ctl.api.pause = pause

    def client():
        resp = ctl.api.handle(Request("GET", "/v1/vports", {}, {}, b"", "127.0.0.1"))
        assert resp.status == 200 and len(resp.body["items"]) == VPORTS
        ctl.api.encoded(resp)

    beside_probe([client] * CLIENTS, marks)
    return max(runs_between(marks))


def test_many_big_answers_at_once_are_computed_one_at_a_time(tmp_path):
    ctl = controller_with_vports(tmp_path)
    try:
        lane = Lane(lambda: eventlet.sleep(0))
        assert most_views_between_probe_turns(ctl, lane.pause) == VPORTS  # one listing's views per turn
        assert lane.queued >= CLIENTS - 1
        # a plain turn of the loop (what the REST pacers used before): every client's listing in one round
        assert most_views_between_probe_turns(ctl, lambda: eventlet.sleep(0)) == CLIENTS * VPORTS
    finally:
        ctl.close()


def test_a_request_that_never_pauses_never_queues(tmp_path):
    """GET /v1/status and a small write answer while big answers wait for their turn: they take no turn of the
    lane."""
    ctl = Controller(tmp_path)
    try:
        lane = Lane(lambda: eventlet.sleep(0))
        ctl.api.pause = lane.pause
        holder = eventlet.spawn(lane.pause)  # an answer in its turn
        waiting = eventlet.spawn(lane.pause)  # another queued behind it
        eventlet.sleep(0)
        queued = lane.queued
        resp = ctl.api.handle(Request("GET", "/v1/status", {}, {}, b"", "127.0.0.1"))
        ctl.api.encoded(resp)
        assert resp.status == 200 and lane.queued == queued == 1
        status, _ = ctl.call("POST", "/v1/tenants", {"name": "acme"})  # a small write: its body decoded in one go
        assert status == 201 and lane.queued == 1
        holder.wait()
        waiting.wait()
    finally:
        ctl.close()


def test_a_big_fib_is_listed_a_stretch_at_a_time_after_its_turn(monkeypatch):
    """GET /v1/domains/{id}/fib made every route of the domain into a view in one stretch (20,000 host routes: ~95 ms
    of CPU, tests/benchmarks/stretches.py's layout): now it waits for its turn of the lane, then pauses every
    FIB_EVERY routes. Counted: the route views made between two pauses."""
    from controller.remote import RemotePrefix, RemoteTable
    from controller.rest import dataplane
    from tests.unit.test_remote_view import PEER, PEER_RMAC, setup

    def remote(state):
        dom = state.policy.find("domain", "acme/prod")
        return RemoteTable(prefixes=tuple(RemotePrefix(dom["id"], f"172.16.{i}.0/24", PEER, PEER_RMAC, dom["l3_vni"])
                                          for i in range(50)))

    state, prog = setup(remote)
    marks = []
    made = dataplane._route_view
    monkeypatch.setattr(dataplane, "_route_view", lambda *args: marks.append("v") or made(*args))
    monkeypatch.setattr(dataplane, "FIB_EVERY", 10)
    [fib] = [r for r in dataplane.routes(state, prog, dict, lambda: marks.append("p")) if r.pattern.endswith("/fib")]
    did = state.policy.find("domain", "acme/prod")["id"]
    body = fib.handler(None, did).body
    assert body["count"] > 50 and marks[0] == "p"  # its turn first, then the routes
    assert max(len(run) for run in "".join(marks).split("p")) == 10


def test_no_answer_holds_the_lane_once_it_is_killed_or_fails():
    """The lane is held only inside ``pause`` (around the loop's turn): an answer killed in its turn or while it waits
    (its green thread killed: the server stopping), or failing between two pauses, leaves it free for the next in
    line. A leak would leave the later answers waiting forever (bounded here: they must finish in 10 s)."""
    lane = Lane(lambda: eventlet.sleep(0))
    turns = []

    def answer(name, fail=False):
        lane.pause()
        turns.append(name)
        if fail:
            raise ValueError("the handler failed")
        lane.pause()
        turns.append(name)

    in_turn = eventlet.spawn(answer, "in turn")
    waiting = eventlet.spawn(answer, "waiting")
    failing = eventlet.spawn(answer, "failing", True)
    eventlet.sleep(0)  # the first holds the lane (in its turn), the other two wait
    assert lane._turn.held == 1 and lane._turn.waiting == 2
    in_turn.kill()
    waiting.kill()
    with eventlet.Timeout(10):
        try:
            failing.wait()
        except ValueError:
            pass
        later = [eventlet.spawn(answer, f"later {i}") for i in range(3)]
        for thread in later:
            thread.wait()
    assert turns == ["failing"] + ["later 0", "later 1", "later 2"] * 2
    assert lane._turn.held == 0 and lane._turn.waiting == 0  # free, nobody waiting


def test_a_listing_waits_for_its_turn_with_the_collector_on():
    """A listing may wait for its turn behind many others (seconds): the collector is held off only while it lists,
    not while it waits (a switch's flows and BGP routes paused it before their first pause, the turn's wait)."""
    from controller.pacer import paused_now
    from controller.rest import bgp, dataplane, vteps
    from tests.unit.test_remote_view import setup

    state, prog = setup(vtep=True)
    dpid = next(iter(prog.view.switches.values())).datapath_id
    did = state.policy.find("domain", "acme/prod")["id"]
    waits = []
    routes = dataplane.routes(state, prog, dict, lambda: waits.append(paused_now()))
    routes += bgp.routes(None, lambda: waits.append(paused_now()))
    routes += vteps.routes(state, prog, lambda: waits.append(paused_now()))
    handlers = {r.pattern: r.handler for r in routes}
    request = Request("GET", "", {}, {}, b"", "127.0.0.1")
    first_waits = []
    for ask in (lambda: handlers["/v1/switches/{dpid}/flows"](request, f"{dpid:016x}"),
                lambda: handlers["/v1/domains/{id}/fib"](None, did), lambda: handlers["/v1/bgp/routes"](request),
                lambda: handlers["/v1/vteps"](request), lambda: handlers["/v1/vteps/{name}"](request, "tor1")):
        waits.clear()
        ask()
        first_waits.append(waits[0])  # the turn's: the collector held off then?
    assert first_waits == [False] * 5 and not paused_now()


def vtep_with_remote_macs(count):
    """tor1 bound to acme/web, with ``count`` MACs an EVPN peer announced in that subnet: its remote MACs."""
    from controller.remote import RemoteTable
    from tests.unit.test_remote_view import remote_mac, setup

    def remote(state):
        return RemoteTable(macs=tuple(remote_mac(state, mac="02:00:00:aa:%02x:%02x" % (i // 256, i % 256), ips=())
                                      for i in range(count)))

    return setup(remote, vtep=True)


def test_a_vteps_answer_is_made_a_stretch_at_a_time_after_its_turn(monkeypatch):
    """GET /v1/vteps and /v1/vteps/{name} made every MAC of every VTEP into a view in one stretch (10,000 remote MACs:
    7-12 ms): now they wait for their turn of the lane, then pause every VTEPS_EVERY views. Counted: the MACs, ports
    and bindings made into views between two pauses; the answer is the same as without pauses."""
    from controller.rest import vteps

    state, prog = vtep_with_remote_macs(200)
    plain = {r.pattern: r.handler for r in vteps.routes(state, prog)}
    plain = {pattern: plain[pattern](None, *args).body for pattern, args in (("/v1/vteps", ()),
                                                                             ("/v1/vteps/{name}", ("tor1",)))}
    marks = []
    real = vteps.paced
    monkeypatch.setattr(vteps, "paced", lambda items, tick, *a: ((marks.append("v"), item)[1]
                                                                 for item in real(items, tick, *a)))
    monkeypatch.setattr(vteps, "VTEPS_EVERY", 10)
    monkeypatch.setattr(vteps, "CHUNK", 5)
    paced = {r.pattern: r.handler for r in vteps.routes(state, prog, lambda: marks.append("p"))}
    for pattern, args in (("/v1/vteps", ()), ("/v1/vteps/{name}", ("tor1",))):
        marks.clear()
        body = paced[pattern](None, *args).body
        assert body == plain[pattern]
        assert len((body["items"][0] if args == () else body)["remote_macs"]) > 200  # the peer's and the VMs'
        assert marks[0] == "p" and marks.count("v") > 200  # its turn first, then the views
        assert max(len(run) for run in "".join(marks).split("p")) < vteps.VTEPS_EVERY + vteps.CHUNK


class _Session:
    def __init__(self, name, server, closes=None):
        self.name, self.server, self.closes = name, server, closes

    def describe(self):
        if self.closes is not None:  # another session closes while this answer pauses
            self.server._sessions.pop(self.closes)
        return {"session": self.name}


def test_the_ovsdb_sessions_answer_is_made_a_stretch_at_a_time_after_its_turn(monkeypatch):
    """GET /v1/ovsdb/sessions described every session in one stretch (hundreds with a big fleet): now it waits for its
    turn of the lane, then pauses every SESSIONS_EVERY sessions; a session that closes meanwhile is left out."""
    from types import SimpleNamespace

    from controller.rest import sessions
    from ovsdb.server import OvsdbManagerServer

    server = SimpleNamespace(_sessions={}, first_reads=SimpleNamespace(status=lambda: {"limit": 4}))
    server.sessions = lambda tick=None: OvsdbManagerServer.sessions(server, tick)
    for i in range(50):
        server._sessions[f"ovsdb:{i:02d}"] = _Session(f"ovsdb:{i:02d}", server, "ovsdb:49" if i == 20 else None)
    marks = []
    monkeypatch.setattr(sessions, "SESSIONS_EVERY", 10)
    [route] = sessions.routes(server, lambda: marks.append("p"))
    real = _Session.describe
    monkeypatch.setattr(_Session, "describe", lambda self: marks.append("v") or real(self))
    body = route.handler(None).body
    assert [item["session"] for item in body["items"]] == [f"ovsdb:{i:02d}" for i in range(49)]
    assert body["count"] == 49 and body["first_reads"] == {"limit": 4}
    assert marks[0] == "p" and max(len(run) for run in "".join(marks).split("p")) == 10


def test_the_switches_are_described_a_stretch_at_a_time_and_one_switch_alone(tmp_path, monkeypatch):
    """GET /v1/switches described every port of every switch in one stretch before its encoding paused (10,000 ports:
    ~80 ms of CPU): now a port at a time, pausing every SWITCHES_EVERY. GET /v1/switches/{dpid} described every
    switch's ports to answer with one: now only that switch's. Counted: the ports described between two pauses."""
    from controller import state_report
    from controller.discovery import PortInfo, VrsSnapshot
    from controller.rest import api as rest_api

    ctl = Controller(tmp_path)
    try:
        for n, count in ((0xA, 300), (0xB, 50)):
            ports = tuple(PortInfo(name=f"tap{i}", ofport=i + 1, mac=f"02:00:00:{n:02x}:{i >> 8:02x}:{i & 0xff:02x}")
                          for i in range(count))
            ctl.state.vrs_update(VrsSnapshot(session=f"s{n}", chassis=f"hv{n}", hostname=f"hv{n}", peer="127.0.0.1:1",
                                             bridge="br-int", bridge_present=True, datapath_id=n,
                                             vtep_ip=f"192.0.2.{n}", flavour="kvm", ports=ports))
        plain = ctl.call("GET", "/v1/switches")[1]
        marks = []
        brief = state_report._Briefs.of
        monkeypatch.setattr(state_report._Briefs, "of",
                            lambda briefs, port, vlan: marks.append("v") or brief(briefs, port, vlan))  # once a port
        monkeypatch.setattr(rest_api, "SWITCHES_EVERY", 20)
        ctl.api.pause = lambda: marks.append("p")
        assert ctl.call("GET", "/v1/switches")[1] == plain
        assert marks[0] == "p" and marks.count("v") == 350  # its turn first
        assert max(len(run) for run in "".join(marks).split("p")) == 20
        marks.clear()
        status, one = ctl.call("GET", f"/v1/switches/{0xB:016x}")
        assert status == 200 and one == plain["items"][1] and marks.count("v") == 50  # hv11's ports only
        marks.clear()
        status, one = ctl.call("GET", f"/v1/switches/{0xA:016x}")  # its 300 ports described a stretch at a time too
        assert status == 200 and one == plain["items"][0] and marks[0] == "p" and marks.count("v") == 300
        assert max(len(run) for run in "".join(marks).split("p")) == 20
    finally:
        ctl.close()


def test_the_change_log_is_read_a_page_at_a_time_with_turns_between(tmp_path, monkeypatch):
    """GET /v1/changes?limit=10000 read and converted 10,000 changes in one stretch (~130 ms of CPU): now CHANGES_PAGE
    at a time, each from one committed state, with the lane's turn between two pages; the answer is the same. A log
    trimmed past the next page meanwhile ends the answer there, and oldest_seq says so."""
    from controller.rest import api as rest_api

    ctl = Controller(tmp_path)
    try:
        for i in range(25):
            ctl.create("tenants", {"name": f"t{i}"})
        whole = ctl.call("GET", "/v1/changes", query={"limit": "100"})[1]
        assert len(whole["items"]) == 25
        marks, changes = [], ctl.store.reader.changes
        monkeypatch.setattr(ctl.store.reader, "changes", lambda seq, limit: marks.append(limit) or changes(seq, limit))
        monkeypatch.setattr(rest_api, "CHANGES_PAGE", 10, raising=False)  # (raising=False: also before it was paged)
        ctl.api.pause = lambda: marks.append("p")
        assert ctl.call("GET", "/v1/changes", query={"limit": "100"})[1] == whole
        assert marks == [10, "p", 10, "p", 10]  # 10, 10 and the last 5: a turn between two pages
        marks.clear()
        assert ctl.call("GET", "/v1/changes", query={"since": "3", "limit": "12"})[1]["items"] == whole["items"][3:15]
        assert marks == [10, "p", 2]
        ctl.store.keep_changes = 5
        ctl.api.pause = lambda: ctl.create("tenants", {"name": "late"})  # its commit trims the log to its last 5
        trimmed = ctl.call("GET", "/v1/changes", query={"limit": "100"})[1]
        assert trimmed["items"] == whole["items"][:10] and trimmed["oldest_seq"] > 11  # the rest: gone meanwhile
    finally:
        ctl.close()


def test_a_collection_is_listed_a_stretch_at_a_time_after_its_turn(tmp_path, monkeypatch):
    """GET /v1/vports (and every collection) made all its views in one stretch after its turn (10,000 vports: ~30 ms
    of CPU unbound, more bound): now it pauses every LIST_EVERY objects ordered or made into views; the answer is the
    same. Counted: the vport views made between two pauses."""
    from controller.rest import api as rest_api

    ctl = controller_with_vports(tmp_path)
    try:
        plain = ctl.call("GET", "/v1/vports")[1]
        marks = []
        view = ctl.api._view
        monkeypatch.setattr(ctl.api, "_view", lambda kind, obj, **kw: marks.append("v") or view(kind, obj, **kw))
        monkeypatch.setattr(rest_api, "LIST_EVERY", 10, raising=False)  # (raising=False: also before it was paced)
        monkeypatch.setattr(rest_api, "LIST_CHUNK", 5, raising=False)
        ctl.api.pause = lambda: marks.append("p")
        assert ctl.call("GET", "/v1/vports")[1] == plain and plain["count"] == VPORTS
        assert marks[0] == "p" and marks.count("v") == VPORTS  # its turn first
        assert max(len(run) for run in "".join(marks).split("p")) == 10
    finally:
        ctl.close()


def test_the_vport_watch_is_answered_a_stretch_at_a_time_after_its_turn(tmp_path, monkeypatch):
    """GET /v1/watch/vports described every vport in one stretch without a turn of the lane (~160 bytecodes a vport:
    20,000 held the loop for ~3.2 M bytecodes at every long poll answered): now after its turn, pausing every
    WATCH_EVERY vports described. Counted: the vports described between two pauses."""
    from controller.rest import watch as rest_watch

    ctl = controller_with_vports(tmp_path)
    try:
        request = Request("GET", "/v1/watch/vports", {}, {}, b"", "127.0.0.1")
        plain = rest_watch.VportWatch(ctl.state, dict).handle(request).body
        marks = []
        status = ctl.state.vport_status
        monkeypatch.setattr(ctl.state, "vport_status", lambda vid: marks.append("v") or status(vid))
        monkeypatch.setattr(rest_watch, "WATCH_EVERY", 10, raising=False)  # (raising=False: also before it was paced)
        monkeypatch.setattr(rest_watch, "CHUNK", 5, raising=False)
        answer = rest_watch.VportWatch(ctl.state, dict, pause=lambda: marks.append("p")).handle(request).body
        assert answer == plain and plain["count"] == VPORTS
        assert marks[0] == "p" and marks.count("v") == VPORTS  # its turn first
        assert max(len(run) for run in "".join(marks).split("p")) == 10
    finally:
        ctl.close()
