"""No acknowledged write is lost, and no write refused with 503 resurfaces, when the pair's HA link is cut or a
node freezes: a real Canopy pair in namespaces, one hypervisor (the switches are the pair's witnesses), the HA
link cut with iptables (REJECT with a TCP reset or an ICMP port unreachable, then DROP), the active SIGKILLed,
frozen with SIGSTOP and resumed (the active, or the standby). Every scenario samples both nodes' /v1/ha throughout: never two actives. And a
client without the pair's secret can neither inject replicated data nor displace the peer."""

from __future__ import annotations

import glob
import itertools
import os
import signal
import socket
import threading
import time

import msgpack
import pytest
import yaml

from tests.harness import netns
from tests.harness.http import RestClient

pytestmark = pytest.mark.integration

SECRET = "integration-pair-secret-0123"
HA_PORT = 6690
_names = itertools.count(1)


def pair_settings(node, peer, priority):
    return {"ha": {"node_id": node, "peer": peer.ip, "priority": priority, "heartbeat_interval_ms": 100,
                   "dead_interval_ms": 500, "ack_timeout_ms": 1000, "secret": SECRET}}


def role(ctl, timeout=2.0):
    client = RestClient(ctl.api.ns, ctl.api.host, ctl.api.port, ctl.api.token, timeout=timeout)
    try:
        return client.get("/v1/ha").json.get("role")
    except Exception:  # noqa: BLE001 - a dead or frozen controller answers nothing
        return None


def masters(hv):
    out = hv.vsctl("--format=json", "--columns=target,is_connected,role", "list", "Controller")
    import json

    return [t for t, connected, r in json.loads(out)["data"] if connected and r == "master"]


class RoleSampler:
    """Both nodes' /v1/ha, asked together in rounds until stopped: never two actives in one round."""

    def __init__(self, ctls):
        self.ctls = ctls
        self.rounds = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        while not self._stop.is_set():
            answers = {}
            threads = [threading.Thread(target=lambda n=n, c=c: answers.__setitem__(n, role(c, 1.0)))
                       for n, c in self.ctls.items()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            self.rounds.append(dict(answers))
            self._stop.wait(0.1)

    def both_active(self):
        return [r for r in self.rounds if list(r.values()).count("active") > 1]


class Ledger:
    """Writes sent to the pair and what each answered: acknowledged (2xx) or refused (503)."""

    def __init__(self):
        self.acked, self.refused, self.other = [], [], []

    def write(self, ctl, timeout=10.0):
        name = f"w{next(_names)}"
        client = RestClient(ctl.api.ns, ctl.api.host, ctl.api.port, ctl.api.token, timeout=timeout)
        try:
            reply = client.post("/v1/tenants", {"name": name})
        except Exception as exc:  # noqa: BLE001 - no answer: neither acknowledged nor refused
            self.other.append((name, repr(exc)))
            return None
        if reply.status == 201:
            self.acked.append(name)
        elif reply.status == 503:
            assert reply.json["error"]["code"] in ("not_replicated", "not_active", "commit_busy"), reply.text
            assert reply.json["error"]["reason"]
            self.refused.append(name)
        else:
            self.other.append((name, reply.status))
        return reply.status

    def check(self, lab, active, standby):
        """Every acknowledged write on the final active and, once replicated, on the standby; every refused one
        on neither."""
        def names(ctl):
            return {t["name"] for t in ctl.api.get("/v1/tenants").json["items"]}

        lab.wait_until(lambda: names(standby) == names(active), timeout=30, what="the standby in step")
        on_active = names(active)
        assert set(self.acked) <= on_active, f"acknowledged writes lost: {sorted(set(self.acked) - on_active)}"
        assert not set(self.refused) & on_active, f"refused writes present: {sorted(set(self.refused) & on_active)}"


def start_pair(lab):
    """(hosts, controllers) of a pair started in ``lab``, once A is active and B standby."""
    hosts = {"a": lab.add_controller_host("ctla"), "b": lab.add_controller_host("ctlb")}
    ctls = {"a": lab.start_controller(hosts["a"], pair_settings("a", hosts["b"], 200), name="canopya"),
            "b": lab.start_controller(hosts["b"], pair_settings("b", hosts["a"], 100), name="canopyb")}
    lab.wait_until(lambda: role(ctls["a"]) == "active" and role(ctls["b"]) == "standby", timeout=30,
                   what="A active, B standby")
    return hosts, ctls


def connect_to_pair(hv, hosts):
    """``hv`` connected to both nodes, each dropped about 10 s after it froze: the Controller rows' inactivity probe
    asks for 1 s, which OVS raises to its least, 5 s (a probe after 5 s idle, the drop 5 s later without an answer)."""
    hv.connect([hosts["a"], hosts["b"]])
    for uuid in hv.vsctl("--bare", "--columns=_uuid", "list", "Controller").split():
        hv.vsctl("set", "Controller", uuid, "inactivity_probe=1000")


@pytest.fixture(scope="module")
def pair(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        hosts, ctls = start_pair(lab)
        hv = lab.add_hypervisor("hv1", "kvm")
        connect_to_pair(hv, hosts)
        lab.wait_until(lambda: masters(hv) == [f"tcp:{hosts['a'].ip}:6653"], timeout=30, what="A master of hv1")
        lab.wait_until(lambda: all(c.api.get("/v1/ha").json["switches"]["reporting_a_master"] == 1
                                   for c in ctls.values()), timeout=30, what="both nodes see hv1's master")
        yield lab, ctls, hosts, hv


def current(lab, ctls):
    """(active, standby) once both are linked."""
    roles = {n: role(c) for n, c in ctls.items()}
    active = next((n for n, r in roles.items() if r == "active"), None)
    standby = next((n for n, r in roles.items() if r == "standby"), None)
    assert active and standby, roles
    lab.wait_until(lambda: linked(ctls[active]) and linked(ctls[standby]), timeout=30, what="the HA link up")
    return active, standby


def settle(lab, ctls, hosts, hv, active, standby):
    lab.wait_until(lambda: role(ctls[active]) == "active" and role(ctls[standby]) == "standby", timeout=40,
                   what=f"{active} active, {standby} standby")
    lab.wait_until(lambda: masters(hv) == [f"tcp:{hosts[active].ip}:6653"], timeout=30,
                   what=f"{active} master of hv1")
    lab.wait_until(lambda: linked(ctls[active]) and linked(ctls[standby]), timeout=30, what="the HA link up")


def linked(ctl):
    peer = ctl.api.get("/v1/ha").json["peer"]
    return peer["alive"] and peer["link"]["out"] and peer["link"]["in"]


def iptables(host, action, rules):
    for rule in rules:
        done = host.exec("iptables", action, "INPUT", *rule)
        assert done.returncode == 0 or action == "-D", done.stderr


def cut_rules(target):
    return [["-p", "tcp", "--dport", str(HA_PORT), *target], ["-p", "tcp", "--sport", str(HA_PORT), *target]]


@pytest.mark.parametrize("reject", ["tcp-reset", "icmp-port-unreachable"])
def test_a_rejecting_firewall_on_the_ha_link_neither_promotes_the_standby_nor_loses_writes(pair, reject):
    """(a) The HA link rejected at the active's host: the standby's dials are refused while the active is alive
    and holds the switch. The standby stays standby, the active refuses what the standby cannot confirm, and
    after the heal nothing acknowledged is lost."""
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201
    rules = cut_rules(["-j", "REJECT", "--reject-with", reject])
    with RoleSampler(ctls) as sampler:
        iptables(hosts[active], "-A", rules)
        try:
            lab.wait_until(lambda: ctls[standby].api.get("/v1/ha").json["peer"]["link"]["refused"], timeout=20,
                           what="the standby's dial refused")
            deadline = time.monotonic() + 3.0  # six dead intervals with the link refused
            while time.monotonic() < deadline:
                ledger.write(ctls[active])
                assert role(ctls[standby]) == "standby"
            assert ledger.refused, "writes the standby cannot confirm are refused"
            assert masters(hv) == [f"tcp:{hosts[active].ip}:6653"]
        finally:
            iptables(hosts[active], "-D", rules)
        settle(lab, ctls, hosts, hv, active, standby)
    assert not sampler.both_active(), sampler.both_active()
    assert ledger.write(ctls[active]) == 201
    ledger.check(lab, ctls[active], ctls[standby])


def test_a_dropped_ha_link_then_the_active_dying_loses_no_acknowledged_write(pair):
    """(b) The HA link silently dropped: the active refuses what the standby cannot confirm (no longer
    acknowledging with a warning), then it is SIGKILLed: the standby takes over with every acknowledged write,
    and none of the refused ones, also once the old active is back as standby."""
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201
    rules = cut_rules(["-j", "DROP"])
    with RoleSampler(ctls) as sampler:
        iptables(hosts[standby], "-A", rules)
        try:
            for _ in range(4):
                assert ledger.write(ctls[active]) == 503
            ctls[active].kill()
            lab.wait_until(lambda: role(ctls[standby]) == "active", timeout=30, what="the standby takes over")
        finally:
            iptables(hosts[standby], "-D", rules)
        ledger.write(ctls[standby])  # alone now: refused (no standby to confirm it)
        ctls[active].start()
        settle(lab, ctls, hosts, hv, standby, active)
    assert not sampler.both_active(), sampler.both_active()
    assert ledger.write(ctls[standby]) == 201
    ledger.check(lab, ctls[standby], ctls[active])


def test_a_frozen_active_replaced_meanwhile_acknowledges_none_of_its_queued_writes(pair):
    """(c) The active SIGSTOPped long enough for the standby to take over; writes queue at the frozen node. On
    SIGCONT it steps down before answering anything: every queued write is refused, none acknowledged and lost,
    and /v1/ha never shows both active."""
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201
    frozen = ctls[active].child
    with RoleSampler(ctls) as sampler:
        frozen.send(signal.SIGSTOP)
        try:
            queued = [threading.Thread(target=ledger.write, args=(ctls[active], 90.0)) for _ in range(4)]
            for thread in queued:
                thread.start()
            lab.wait_until(lambda: role(ctls[standby]) == "active", timeout=40, what="the standby takes over")
            ledger.write(ctls[standby])  # its peer is frozen: refused
        finally:
            frozen.send(signal.SIGCONT)
        for thread in queued:
            thread.join(100)
        settle(lab, ctls, hosts, hv, standby, active)
    assert not sampler.both_active(), sampler.both_active()
    assert len(ledger.refused) >= 4 and not ledger.other, (ledger.refused, ledger.other)
    assert ledger.write(ctls[standby]) == 201
    ledger.check(lab, ctls[standby], ctls[active])


def test_a_frozen_standby_changes_no_role_and_none_of_the_writes_meanwhile_is_acknowledged(pair):
    """(d) The standby SIGSTOPped for eight dead intervals (its switch connection dropped meanwhile, its peer's
    heartbeats unread): the active stays active and refuses every write (the one in flight when the standby froze
    too: it cannot confirm it); at SIGCONT the standby is caught up (a snapshot, as it may hold that write) without
    a role change, and the pair acknowledges writes again (faults38)."""
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201
    frozen = ctls[standby].child
    with RoleSampler(ctls) as sampler:
        frozen.send(signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                assert ledger.write(ctls[active]) == 503
                time.sleep(0.2)
            assert role(ctls[active]) == "active" and masters(hv) == [f"tcp:{hosts[active].ip}:6653"]
        finally:
            frozen.send(signal.SIGCONT)
        settle(lab, ctls, hosts, hv, active, standby)
    assert not sampler.both_active(), sampler.both_active()
    assert not [r for r in sampler.rounds if r.get(active) not in ("active", None)], sampler.rounds
    assert ledger.write(ctls[active]) == 201
    ledger.check(lab, ctls[active], ctls[standby])


def test_a_client_without_the_secret_cannot_inject_or_displace_the_peer(pair):
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    target = hosts[standby]
    body = {"id": "injected-id", "source": None, "name": "injected"}
    change = {"seq": 10_000, "txn": 10_000, "ts": time.time(), "kind": "tenant", "id": "injected-id", "op": "put",
              "body": body}
    snapshot = {"objects": {"tenant": {"injected-id": body}}, "meta": {}, "last_seq": 10_000,
                "history": [10_000, 1.0]}
    attempts = [  # the old protocol's hello (claiming a newer generation); a handshake without the secret; none
        msgpack.packb({"t": "hello", "node": active, "role": "active", "generation": 99, "seq": 10_000})
        + msgpack.packb({"t": "snapshot", "snapshot": snapshot}),
        msgpack.packb({"t": "hi", "node": active, "nonce": b"x" * 32})
        + msgpack.packb({"t": "auth", "proof": b"\0" * 32})
        + msgpack.packb({"t": "snapshot", "snapshot": snapshot}),
        msgpack.packb({"t": "changes", "changes": [change], "meta": {}}),
    ]
    before = ctls[standby].api.get("/v1/ha").json
    generation, failures = before["generation_id"], before["auth"]["failures"]
    for attempt in attempts:
        sock = netns.connect_tcp(hosts[active].ns, target.ip, HA_PORT, 5.0)  # from the peer's own address
        try:
            sock.sendall(attempt)
            sock.settimeout(10)
            try:
                while sock.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
        finally:
            sock.close()
    ha = ctls[standby].api.get("/v1/ha").json
    assert ha["auth"]["failures"] >= failures + len(attempts)
    assert ha["role"] == "standby" and ha["peer"]["alive"] and ha["peer"]["node_id"] == active
    assert ha["generation_id"] == generation  # nothing it claimed was believed
    assert not ctls[standby].api.get("/v1/tenants?name=injected").json["items"]
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201  # the real peer was never displaced
    ledger.check(lab, ctls[active], ctls[standby])


def test_a_standby_whose_store_file_is_deleted_takes_the_actives_store_and_writes_go_on(pair):
    """docs/store.md "An HA standby whose file went": the standby's canopy.db deleted under it. Before, its store
    refused every replicated batch for good, so the active answered every write 503 not_replicated until an operator
    restored the standby. Now the standby's tick takes a new file and the active's snapshot: writes are confirmed again
    within a few heartbeats (100 ms here), nothing acknowledged is lost, no role changes. Its own time is that of a
    few writes on the module's running pair."""
    lab, ctls, hosts, hv = pair
    active, standby = current(lab, ctls)
    ledger = Ledger()
    assert ledger.write(ctls[active]) == 201
    data = yaml.safe_load(ctls[standby].config_path.read_text())["data_dir"]
    os.remove(os.path.join(data, "canopy.db"))
    lab.wait_until(lambda: ctls[standby].api.get("/v1/ha").json["replication"]["store_renewals"] == 1, timeout=10,
                   what="the standby to renew its store")
    lab.wait_until(lambda: ledger.write(ctls[active]) == 201, timeout=10, what="a write confirmed again")
    ledger.check(lab, ctls[active], ctls[standby])
    assert ctls[standby].api.get("/v1/ha").json["replication"]["store_renewed"] is None
    assert (role(ctls[active]), role(ctls[standby])) == ("active", "standby")
    assert glob.glob(os.path.join(data, "canopy.db.saved-*")) and os.path.getsize(os.path.join(data, "canopy.db"))


def test_two_nodes_of_one_name_say_so_on_both_sides(lab):
    """Both nodes given one ha.node_id (it defaults to the host name: two hosts or containers named alike). They
    cannot link; each says why, in its log and in /v1/ha (``peer.link.last_dial_error``). Before (faults50) each
    closed the other's dial as "it is ourselves (does the peer address point at this node?)" and reported its own
    as "closed during the handshake (does the peer use the same ha.secret?)", which sent operators to the wrong
    setting."""
    hosts = {"a": lab.add_controller_host("ctla"), "b": lab.add_controller_host("ctlb")}
    ctls = {n: lab.start_controller(hosts[n], {"ha": {**pair_settings("ctl", hosts[p], 100)["ha"]}}, name=f"canopy{n}")
            for n, p in (("a", "b"), ("b", "a"))}
    said = "both nodes have ha.node_id 'ctl': each node of a pair needs its own"

    def told(ctl):
        return said in (ctl.api.get("/v1/ha").json["peer"]["link"]["last_dial_error"] or "") and \
            said in ctl.log_path.read_text()
    lab.wait_until(lambda: all(told(c) for c in ctls.values()), timeout=30, what="both nodes naming the node id")
    assert "does the peer use the same ha.secret" not in ctls["a"].log_path.read_text()
    for name, ctl in ctls.items():  # no write acknowledged, as with any unlinked pair (docs/ha.md)
        reply = ctl.api.post("/v1/tenants", {"name": f"t{name}"})
        assert reply.status == 503, reply.text
        assert reply.json["error"]["code"] in ("not_replicated", "not_active"), reply.text  # (active; deciding)
