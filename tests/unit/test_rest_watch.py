"""GET /v1/watch/vports: status and programmed per vport, and the long poll over its cursor."""

import logging
from types import SimpleNamespace

import pytest

from controller.discovery import PortInfo, VrsSnapshot
from controller.rest.api import Api
from controller.rest.watch import MAX_WAIT, VportWatch
from openflow.flows import Owner, flow
from openflow.installed import FlowPlan
from openflow.reconciler import SwitchReconciler
from tests.unit.helpers import Controller, demo_net


class Clock:
    """A fake clock whose sleep advances it and runs ``on_sleep`` (what happens while a request waits)."""

    def __init__(self):
        self.now, self.slept, self.on_sleep = 0.0, 0, None

    def sleep(self, seconds):
        self.now += seconds
        self.slept += 1
        if self.on_sleep is not None:
            self.on_sleep()


@pytest.fixture
def ctl(tmp_path):
    from ryu.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser

    c = Controller(tmp_path)
    c.clock = Clock()
    datapath = SimpleNamespace(id=1, ofproto=ofp, ofproto_parser=parser, xid=0, address=("10.0.0.1", 1))
    c.rec = SwitchReconciler(datapath, log=logging.getLogger("test.reconciler"))
    c.watch = VportWatch(c.state, lambda: {1: c.rec}, sleep=c.clock.sleep, clock=lambda: c.clock.now)
    c.api = Api(c.service, c.state, c.settings, extra_routes=[c.watch.route()])
    yield c
    c.close()


def add_vport(ctl, name="os-p1"):
    _, _, subnet = demo_net(ctl)
    return ctl.create("vports", {"subnet_id": subnet["id"], "name": name, "mac": "02:00:00:00:00:01",
                                 "binding": {"flavour": "kvm", "iface_id": name}})


def plug(ctl, iface_id):
    tap = PortInfo("tap1", 5, "02:00:00:00:00:01", (("attached-mac", "02:00:00:00:00:01"), ("iface-id", iface_id)))
    ctl.state.vrs_update(VrsSnapshot("s1", "10.0.0.1:1", "hv1", datapath_id=1, bridge_present=True, ports=(tap,)))


def confirm(rec, flows):
    """The switch confirmed these flows (what the reconciler records after a commit or barrier reply)."""
    by_owner: dict = {}
    for f in flows:
        by_owner.setdefault(f.owner, set()).add(f)
    book = rec._book
    book.applied(FlowPlan(owners={o: book.installed.get(o, frozenset()) | frozenset(fs) for o, fs in by_owner.items()}))


def watch(ctl, **query):
    return ctl.call("GET", "/v1/watch/vports", query={k: str(v) for k, v in query.items()})


def test_a_vport_is_programmed_only_once_bound_and_all_its_flows_are_installed(ctl):
    vport = add_vport(ctl)
    assert watch(ctl)[1]["items"] == [{"id": vport["id"], "name": "os-p1", "subnet_id": vport["subnet_id"],
                                       "status": "unbound", "programmed": False}]
    plug(ctl, "os-p1")
    owner = Owner("vport", vport["id"])
    flows = [flow(0, 100, {"in_port": 5}, (), owner), flow(0, 90, {"in_port": 5}, (), owner)]
    ctl.rec.set_desired(flows)
    assert watch(ctl)[1]["items"][0]["status"] == "bound"
    assert watch(ctl)[1]["items"][0]["programmed"] is False
    confirm(ctl.rec, flows[:1])
    assert watch(ctl)[1]["items"][0]["programmed"] is False  # one flow still missing
    confirm(ctl.rec, flows[1:])
    assert watch(ctl)[1]["items"][0]["programmed"] is True
    ctl.rec.set_desired(flows + [flow(0, 80, {"in_port": 5}, (), owner)])
    assert watch(ctl)[1]["items"][0]["programmed"] is False  # a new desired flow of it is not there yet


def test_a_vport_bound_on_a_switch_without_openflow_is_not_programmed(ctl):
    vport = add_vport(ctl)
    ctl.watch.reconcilers = lambda: {}
    plug(ctl, "os-p1")
    assert watch(ctl)[1]["items"] == [{"id": vport["id"], "name": "os-p1", "subnet_id": vport["subnet_id"],
                                       "status": "bound", "programmed": False}]


def test_the_long_poll_answers_when_the_cursor_moves_and_not_before(ctl):
    add_vport(ctl)
    cursor = watch(ctl)[1]["cursor"]
    ctl.clock.on_sleep = lambda: plug(ctl, "os-p1") if ctl.clock.slept == 3 else None
    status, body = watch(ctl, since=cursor, wait=20)
    assert status == 200 and body["cursor"] > cursor and body["items"][0]["status"] == "bound"
    assert ctl.clock.slept == 3  # answered at the first look after the change
    ctl.clock.on_sleep = lambda: ctl.watch.note_synced() if ctl.clock.slept == 5 else None
    assert watch(ctl, since=body["cursor"], wait=20)[1]["cursor"] == body["cursor"] + 1


def test_the_long_poll_ends_after_wait_seconds_with_the_same_cursor(ctl):
    add_vport(ctl)
    cursor = watch(ctl)[1]["cursor"]
    status, body = watch(ctl, since=cursor, wait=2)
    assert status == 200 and body["cursor"] == cursor and ctl.clock.now >= 2
    ctl.clock.slept = 0
    assert watch(ctl, since=cursor - 1, wait=20)[1]["cursor"] == cursor and ctl.clock.slept == 0  # stale: at once


def test_the_prefix_filter_and_bad_queries(ctl):
    add_vport(ctl)
    assert watch(ctl, prefix="os-")[1]["count"] == 1 and watch(ctl, prefix="other")[1]["count"] == 0
    for query, field in (({"wait": MAX_WAIT + 1}, "wait"), ({"since": "x"}, "since"), ({"owner": "a"}, "owner")):
        status, body = watch(ctl, **query)
        assert status == 400 and body["error"]["field"] == field


def test_the_watch_route_is_in_the_openapi_document(ctl):
    paths = ctl.call("GET", "/v1/openapi.json")[1]["paths"]
    assert "get" in paths["/v1/watch/vports"]


def test_only_the_active_answers_the_watch_so_a_client_following_a_pair_goes_there(ctl):
    """A standby sends no flows and reads its switches back once, when it becomes standby: its ``programmed`` is
    false for every vport made since (and for one whose flows changed), and the Neutron driver, which sends reads to
    whichever node answered last, would keep ports DOWN (or mark them DOWN). It answers 503 not_active, as to a
    write, which the driver takes as "ask the other node" (networking_canopy/client.py)."""
    add_vport(ctl)
    role = {"reason": "this controller (ctl-b) is the standby; send writes to the active at 10.0.0.1"}
    ha = SimpleNamespace(writable=lambda: role["reason"])
    ctl.api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=[ctl.watch.route()], ha=ha)
    status, body = watch(ctl, prefix="os-")
    assert status == 503 and body["error"]["code"] == "not_active" and "10.0.0.1" in body["error"]["reason"]
    assert ctl.call("GET", "/v1/vports")[0] == 200  # other reads: both nodes
    role["reason"] = None  # the active
    assert watch(ctl, prefix="os-")[1]["count"] == 1


def test_a_change_in_the_answers_pauses_is_answered_at_the_next_poll_at_once(ctl, monkeypatch):
    """The answer pauses (after its turn, then every WATCH_EVERY vports) and State changes meanwhile: its cursor is the
    one read before it was made, so a client polling with it is answered at once, the change in that answer, never
    waiting out ``wait`` with it missed. (A cursor read after the items: the first answer shows the port unbound with
    the cursor past the change, and the next poll waits its 20 s, the change missed.)"""
    from controller.rest import watch as rest_watch

    vport = add_vport(ctl)
    monkeypatch.setattr(rest_watch, "WATCH_EVERY", 1)
    monkeypatch.setattr(rest_watch, "CHUNK", 1)
    pauses = []

    def pause():  # the second pause comes after the vport was described: it is bound only then
        pauses.append(1)
        if len(pauses) == 2:
            plug(ctl, "os-p1")

    ctl.watch.pause = pause
    status, body = watch(ctl)
    assert status == 200 and len(pauses) >= 2 and body["items"][0]["status"] == "unbound"  # described before it
    ctl.watch.pause = None
    status, body = watch(ctl, since=body["cursor"], wait=20)
    assert status == 200 and ctl.clock.slept == 0 and body["items"][0]["id"] == vport["id"]
    assert body["items"][0]["status"] == "bound"


def test_a_long_poll_whose_client_closed_makes_no_answer_over_a_real_socket(ctl, monkeypatch):
    """A client of ``?since=cursor&wait=25`` that closes its connection while the server waits for a change (curl
    stopped, a driver restarted): the server's look at the socket (``Request.gone``, rest/server.py) ends the wait at
    its next ``POLL`` and makes no answer (before, it waited the whole ``wait``, then built every vport's status, in
    lane turns, for nobody). An open client is answered in full as before. Real sockets on loopback; the fake clock
    advances a POLL per sleep, each a short green sleep; waits bounded."""
    import eventlet
    from eventlet.green import socket as green_socket

    from controller.rest.server import RestServer
    from controller.settings import Limits
    from tests.unit.helpers import TOKEN
    from tests.unit.test_rest_stop import answer_of

    add_vport(ctl)
    built, waiting = [], eventlet.Event()
    items = VportWatch.items
    monkeypatch.setattr(VportWatch, "items", lambda self, *a: built.append(1) or items(self, *a))

    def sleep(seconds):
        ctl.clock.now += seconds
        if not waiting.ready():
            waiting.send()
        eventlet.sleep(0.005)

    ctl.watch.sleep = sleep
    server = RestServer("127.0.0.1", 0, ctl.api, Limits())
    server.start()
    try:
        def request(query):
            return (f"GET /v1/watch/vports?{query} HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {TOKEN}\r\n\r\n").encode()

        sock = green_socket.create_connection(("127.0.0.1", server.port))
        status, body = answer_of(sock, request("wait=0"))
        assert status == 200 and body["count"] == 1 and built == [1]
        sock.close()
        gone = green_socket.create_connection(("127.0.0.1", server.port))
        gone.sendall(request(f"since={body['cursor']}&wait={MAX_WAIT}"))
        with eventlet.Timeout(20):
            waiting.wait()  # the server waits for a change
            gone.close()
            while server.handling:
                eventlet.sleep(0.01)
        assert built == [1] and ctl.clock.now < MAX_WAIT  # no answer made; the wait ended well before wait seconds
    finally:
        server.stop(drain=0)
