"""An unexpected exception while an OVSDB session applies its peer's update (ovsdb/peersession.py ``PeerSession``):
not a refusal (ovsdb/idl/paced.py refuses what the peer got wrong), a bug in applying a valid update. It ends that session
only: logged once naming the peer, its switch and the reason, the half-applied replica dropped with it, the switch
kept through its reconnect grace (ovsdb/claims.py: nothing it reported withdrawn). The peer's next session reads the
database from scratch and reports it as it is; another session meanwhile goes on reporting its peer's updates.

The sessions run in green threads with the real ``Replica`` and ovs's ``Idl.run``; only the connection is scripted
(``ScriptedSession``: the messages a monitoring ovsdb-server sends, its replies not needed)."""

import json
import logging
import uuid
from pathlib import Path
from types import SimpleNamespace

import eventlet
import ovs.db.idl
import ovs.jsonrpc

from controller.discovery import DiscoverySink
from ovsdb import idl, server
from ovsdb.idl import replica as replica_module
from ovsdb.idl import rowloop
from tests.unit.test_ovsdb_idl_parse import SCHEMA

VTEP_SCHEMA = json.loads(Path("/usr/share/openvswitch/vtep.ovsschema").read_text())
BOUND = 500  # turns of the event loop any wait here may take


def turns_until(condition) -> None:
    for _ in range(BOUND):
        if condition():
            return
        eventlet.sleep(0.001)
    raise AssertionError("not within %d turns" % BOUND)


class ScriptedSession:
    """What ``Replica`` holds as its ovs Session: connected until closed, ``recv`` the queued update2 notifies."""

    def __init__(self):
        self.queue, self.closed, self.rpc = [], False, None

    def run(self):
        pass

    def is_connected(self):
        return not self.closed

    def get_seqno(self):
        return 1

    def recv(self):
        return self.queue.pop(0) if self.queue else None

    def send(self, msg):
        return 0

    def wait(self, poller):
        pass

    def recv_wait(self, poller):
        pass

    def close(self):
        self.closed = True


class Link:
    """A peer's accepted connection before its replica, serving ``rows`` (update2 inserts) of a database (``schema``:
    Open_vSwitch's, or hardware_vtep's)."""

    def __init__(self, peer, rows, schema=SCHEMA):
        self.peer, self.schema, self.rpc, self.limit_error = peer, schema, SimpleNamespace(pacer=None), None
        self.session = ScriptedSession()
        self.session.queue.append(self.update(rows))

    @staticmethod
    def update(tables):
        return ovs.jsonrpc.Message.create_notify("update2", ["monitor", tables])

    def send(self, tables):
        self.session.queue.append(self.update(tables))

    def list_dbs(self, timeout_ms):
        return [self.schema["name"]]

    def get_schema(self, database, timeout_ms):
        return self.schema

    def answer_echoes(self):
        pass

    def close(self):
        self.session.close()


def database(chassis, *ports):
    """A hypervisor's rows as update2 inserts: br-int holding ``ports`` (name: iface-id), one interface each."""
    root, bridge = str(uuid.uuid4()), str(uuid.uuid4())
    rows = {"Open_vSwitch": {root: {"insert": {"bridges": ["uuid", bridge],
                                               "external_ids": ["map", [["system-id", chassis]]]}}},
            "Bridge": {bridge: {"insert": {"name": "br-int", "datapath_id": "0000000000000a01"}}},
            "Port": {}, "Interface": {}}
    refs = []
    for number, (name, iface_id) in enumerate(ports, 1):
        port, iface = str(uuid.uuid4()), str(uuid.uuid4())
        refs.append(["uuid", port])
        rows["Port"][port] = {"insert": {"name": name, "interfaces": ["uuid", iface]}}
        rows["Interface"][iface] = {"insert": {"name": name, "ofport": number,
                                               "external_ids": ["map", [["iface-id", iface_id]]]}}
    rows["Bridge"][bridge]["insert"]["ports"] = ["set", refs]
    return rows, bridge


def add_port(bridge, name, iface_id, ofport):
    """An update2 adding one port to ``bridge`` (whose ports are then ``ports``)."""
    port, iface = str(uuid.uuid4()), str(uuid.uuid4())
    return {"Port": {port: {"insert": {"name": name, "interfaces": ["uuid", iface]}}},
            "Interface": {iface: {"insert": {"name": name, "ofport": ofport,
                                             "external_ids": ["map", [["iface-id", iface_id]]]}}},
            "Bridge": {bridge: {"modify": {"ports": ["set", [["uuid", port]]]}}}}


class Sink(DiscoverySink):
    def __init__(self):
        self.snaps, self.gone = {}, []

    def vrs_update(self, snap):
        self.snaps[snap.chassis] = snap

    def vtep_update(self, snap):
        self.snaps[snap.name] = snap

    def vrs_gone(self, session):
        self.gone.append(session)

    vtep_gone = vrs_gone


def ports(snap):
    return sorted((p.name, p.ext("iface-id")) for p in snap.ports)


def fail_once(monkeypatch):
    """``rowloop.apply`` (update2's rows applied by the IDL) fails once, after applying the update's first table: a
    half-applied replica. Returns a call putting the real one back."""
    real_apply, raised = rowloop.apply, []

    def apply_then_fail(idl_, table_updates, tables):
        if not raised:
            raised.append(1)
            first_table = next(iter(table_updates))
            real_apply(idl_, {first_table: table_updates[first_table]}, tables)
            raise RuntimeError("injected while applying")
        real_apply(idl_, table_updates, tables)

    monkeypatch.setattr(rowloop, "apply", apply_then_fail)
    return lambda: monkeypatch.setattr(rowloop, "apply", real_apply)


def the_one_warning(caplog) -> str:
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    return errors[0].getMessage()


def scripted_replicas(monkeypatch, made):
    """``Replica`` made on a scripted session, already monitoring (its first copy: the link's first update)."""
    monkeypatch.setattr(replica_module, "_session_on", lambda link, probe_ms: link.session)
    real = idl.Replica

    def replica(link, *args, **kwargs):
        replica_ = real(link, *args, **kwargs)
        ovs_idl = replica_._idl  # as after its monitor request was answered: no request to answer here
        ovs_idl.state, ovs_idl._last_seqno, ovs_idl.cond_changed = ovs.db.idl.Idl.IDL_S_MONITORING, 1, False
        made.setdefault(link.peer, []).append(replica_)
        return replica_

    monkeypatch.setattr(server.idl, "Replica", replica)
    monkeypatch.setattr(real, "wait", lambda self, timeout_ms, doorbell=None: eventlet.sleep(0.001))


def started(manager, *links, again=False):
    """A session per link, named as the manager names a peer's (``#2``: its next connection), registered with the
    manager and started (each serves its link in a green thread of its own)."""
    sessions = []
    for link in links:
        session = server.PeerSession(manager, "ovsdb:" + link.peer + ("#2" if again else ""), link)
        manager._sessions[session.name] = session
        session.start()
        sessions.append(session)
    return sessions


def test_an_exception_applying_an_update_drops_only_that_session_and_the_next_one_reads_afresh(monkeypatch, caplog):
    made = {}
    scripted_replicas(monkeypatch, made)
    sink = Sink()
    manager = server.OvsdbManagerServer("127.0.0.1", 0, sink, provision_tunnel=False, secure_bridge=False,
                                        log=logging.getLogger("test.ovsdb"))
    rows1, bridge1 = database("kvm1", ("p1", "vp1"))
    rows2, bridge2 = database("kvm2", ("q1", "vq1"))
    one, two = Link("192.0.2.1:6640", rows1), Link("192.0.2.2:6640", rows2)
    with caplog.at_level(logging.INFO, logger="test.ovsdb"):
        first, other = started(manager, one, two)
        turns_until(lambda: {"kvm1", "kvm2"} <= set(sink.snaps))
        assert ports(sink.snaps["kvm1"]) == [("p1", "vp1")]
        restore = fail_once(monkeypatch)
        one.send(add_port(bridge1, "p2", "vp2", 2))  # its Port row applied, then the failure
        turns_until(lambda: first.state == server.CLOSED)
        restore()

        assert first._thread.dead and first._thread.wait() is None  # the green thread ended, nothing escaped it
        assert one.session.closed and first.name not in manager._sessions
        assert manager.claims.pending() == ["vrs:kvm1"] and sink.gone == []  # kept through its reconnect grace
        assert ports(sink.snaps["kvm1"]) == [("p1", "vp1")]  # nothing of the half-applied update reported
        said = the_one_warning(caplog)
        assert one.peer in said and "kvm1" in said and "injected while applying" in said, said

        # the other session goes on
        two.send(add_port(bridge2, "q2", "vq2", 2))
        turns_until(lambda: len(sink.snaps["kvm2"].ports) == 2)
        assert ports(sink.snaps["kvm2"]) == [("q1", "vq1"), ("q2", "vq2")] and other.state == server.SYNCED

        # the peer reconnects: a new session, a new replica read from scratch (the update it sent, in its copy)
        rows1_now, _ = database("kvm1", ("p1", "vp1"), ("p2", "vp2"))
        again = Link(one.peer, rows1_now)
        second, = started(manager, again, again=True)
        turns_until(lambda: len(sink.snaps["kvm1"].ports) == 2)
        assert ports(sink.snaps["kvm1"]) == [("p1", "vp1"), ("p2", "vp2")] and second.state == server.SYNCED
        assert made[one.peer][1] is not made[one.peer][0]
        assert sink.snaps["kvm1"].session == "vrs:kvm1" and manager.claims.pending() == [] and sink.gone == []
    for session in (other, second):
        session.close()


def vtep_rows(name, *tunnel_ips):
    """A hardware VTEP's rows as update2 inserts (its Physical_Switch), and that row's uuid."""
    switch = str(uuid.uuid4())
    return {"Physical_Switch": {switch: {"insert": {"name": name, "tunnel_ips": ["set", list(tunnel_ips)]}}}}, switch


def test_an_exception_applying_a_hardware_vteps_update_drops_its_session_and_the_next_one_reads_afresh(monkeypatch,
                                                                                                      caplog):
    made = {}
    scripted_replicas(monkeypatch, made)
    sink = Sink()
    manager = server.OvsdbManagerServer("127.0.0.1", 0, sink, program_vteps=False, log=logging.getLogger("test.ovsdb"))
    (rows1, switch1), (rows2, switch2) = vtep_rows("sw1", "10.0.0.1"), vtep_rows("sw2")
    one, two = Link("192.0.2.1:6640", rows1, VTEP_SCHEMA), Link("192.0.2.2:6640", rows2, VTEP_SCHEMA)
    with caplog.at_level(logging.INFO, logger="test.ovsdb"):
        first, other = started(manager, one, two)
        turns_until(lambda: {"sw1", "sw2"} <= set(sink.snaps))
        restore = fail_once(monkeypatch)
        one.send({"Physical_Switch": {switch1: {"modify": {"tunnel_ips": ["set", ["10.0.0.2"]]}}}})
        turns_until(lambda: first.state == server.CLOSED)
        restore()
        assert first._thread.wait() is None and one.session.closed and first.name not in manager._sessions
        assert manager.vtep_claims.pending() == ["vtep:sw1"] and sink.gone == []
        assert sink.snaps["sw1"].tunnel_ips == ("10.0.0.1",)
        said = the_one_warning(caplog)
        assert one.peer in said and "vtep:sw1" in said and "injected while applying" in said, said

        two.send({"Physical_Switch": {switch2: {"modify": {"tunnel_ips": ["set", ["10.0.0.9"]]}}}})  # the other: on
        turns_until(lambda: sink.snaps["sw2"].tunnel_ips == ("10.0.0.9",))
        assert other.state == server.SYNCED

        again = Link(one.peer, vtep_rows("sw1", "10.0.0.2")[0], VTEP_SCHEMA)
        second, = started(manager, again, again=True)
        turns_until(lambda: sink.snaps["sw1"].tunnel_ips == ("10.0.0.2",))  # a new replica, read from scratch
        assert made[one.peer][1] is not made[one.peer][0] and second.state == server.SYNCED
        assert manager.vtep_claims.pending() == [] and sink.gone == []
    for session in (other, second):
        session.close()


def test_a_reporter_failing_between_the_slices_of_a_big_update_drops_the_session_after_whole_slices(monkeypatch,
                                                                                                   caplog):
    """A big insert of ports is applied and reported in slices (ovsdb/idl/slices.py): the reporter failing at the
    second slice leaves reported only what the first slice made (whole ports), the session dropped and out of
    ``slicing``; the next session reports every port."""
    from ovsdb import vrs
    from ovsdb.idl import slices

    monkeypatch.setattr(slices, "SLICE_PORTS", 4)
    monkeypatch.setattr(slices, "LEAD_PORTS", 2)
    made = {}
    scripted_replicas(monkeypatch, made)
    sink = Sink()
    manager = server.OvsdbManagerServer("127.0.0.1", 0, sink, provision_tunnel=False, secure_bridge=False,
                                        log=logging.getLogger("test.ovsdb"))
    rows, bridge = database("kvm1", ("p0", "vp0"))
    one = Link("192.0.2.1:6640", rows)
    with caplog.at_level(logging.INFO, logger="test.ovsdb"):
        first, = started(manager, one)
        turns_until(lambda: "kvm1" in sink.snaps)
        big = {"Port": {}, "Interface": {}, "Bridge": {bridge: {"modify": {"ports": ["set", []]}}}}
        for number in range(1, 11):
            part = add_port(bridge, "p%d" % number, "vp%d" % number, number + 1)
            for table in ("Port", "Interface"):
                big[table].update(part[table])
            big["Bridge"][bridge]["modify"]["ports"][1] += part["Bridge"][bridge]["modify"]["ports"][1]
        real_refresh, calls = vrs.VrsReporter.refresh, []

        def refresh_failing_at_the_second_slice(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("injected in the reporter")
            return real_refresh(self, *args, **kwargs)

        monkeypatch.setattr(vrs.VrsReporter, "refresh", refresh_failing_at_the_second_slice)
        one.send(big)
        turns_until(lambda: first.state == server.CLOSED)
        monkeypatch.setattr(vrs.VrsReporter, "refresh", real_refresh)
        assert first._thread.wait() is None and one.session.closed and manager.slicing == set()
        assert ports(sink.snaps["kvm1"]) == [("p0", "vp0"), ("p1", "vp1"), ("p2", "vp2")]  # the lead slice: 2 ports
        said = the_one_warning(caplog)
        assert one.peer in said and "vrs:kvm1" in said and "injected in the reporter" in said, said

        now, _ = database("kvm1", *(("p%d" % n, "vp%d" % n) for n in range(11)))
        again = Link(one.peer, now)
        second, = started(manager, again, again=True)
        turns_until(lambda: len(sink.snaps["kvm1"].ports) == 11)
        assert ports(sink.snaps["kvm1"]) == sorted(("p%d" % n, "vp%d" % n) for n in range(11)) and sink.gone == []
    second.close()
