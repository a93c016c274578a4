"""Two Canopy controllers in one AS, federated through two FRR route reflectors (Debian's bgpd, an
independent EVPN implementation), each controller an iBGP route-reflector client of both:

- routes cross through the reflectors and VMs under A and B ping each other;
- a withdrawal reaches the other controller's flows (FRR withdraws with label 0: RFC 7432 route keys);
- a reflector that crashes and restarts loses no ping (graceful restart, RFC 4724), with the other
  reflector down, so the restarting one is the only path;
- with both reflectors up, losing one for good changes nothing (no single point of failure);
- an EVPN route with an IPv4-mapped IPv6 next hop (16 bytes on the wire, as FRR sends for its type 5
  routes) from a third peer leaves every session up and traffic flowing.

The same lab (``fed``) with that third peer replacing routes, MAC mobility and session resets:
``test_evpn_replace.py``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.harness.path_evidence import PathEvidence
from tests.integration import frr
from tests.integration.test_federation import L3_VNI, VPORTS, policy
from tests.integration.test_overlay import dhcp, reach

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not frr.AVAILABLE and os.environ.get("CI") != "true",
                                 reason="FRR bgpd (Debian package frr) not installed")]

REPO = Path(__file__).resolve().parents[2]
ASN = 65000
RAW_ASN = 65099
MACS = {v["name"]: v["mac"] for v in VPORTS}


def controller_policy(me):
    """The shared tenant, with this controller's own RDs (a reflector keeps one best path per RD)."""
    doc = policy([dict(v) for v in VPORTS])
    domain = doc["tenants"][0]["domains"][0]
    domain["rd"] = f"{me.ip}:1"
    for number, subnet in enumerate(domain["subnets"], start=2):
        subnet["rd"] = f"{me.ip}:{number}"
    return doc


def bgp_settings(me, reflectors, extra=()):
    neighbors = [{"address": rr.ip, "asn": ASN, "local_address": me.ip, "hold_time": 9, "rr_client": True}
                 for rr in reflectors]
    return {"bgp": {"asn": ASN, "router_id": me.ip, "neighbors": neighbors + list(extra)}}


def peers(api):
    return {p["address"]: p for p in api.get("/v1/bgp/peers").json["items"]}


def received(api, kind):
    return api.get(f"/v1/bgp/routes?direction=in&type={kind}").json["items"]


def received_macs(api):
    return {r["mac"] for r in received(api, 2)}


def apply_policies(documents, source):
    """Each controller's policy: ``documents`` holds (api, document) pairs."""
    for api, doc in documents:
        reply = api.post("/v1/apply", {"document": doc, "source": source})
        assert reply.status == 200, reply.text


def sessions_and_leases(lab, apis, reflector_ips, vms, what):
    """Waits until every controller's session with every reflector is up, then gives every VM its DHCP lease."""
    lab.wait_until(lambda: all(peers(api)[ip]["state"] == "up" for api in apis for ip in reflector_ips), timeout=60,
                   what=what)
    for name, vm in vms.items():
        assert dhcp(lab, vm).get("ip"), f"{name} got no DHCP lease"


def flows(hv):
    return hv.ofctl("dump-flows", "br-int").lower()


@pytest.fixture(scope="module")
def fed(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
        rr1, rr2, raw = lab.add_controller_host("rr1"), lab.add_controller_host("rr2"), lab.add_controller_host("raw")
        reflectors = {host.name: frr.start_route_reflector(lab, host, ASN, [ctl_a.ip, ctl_b.ip])
                      for host in (rr1, rr2)}
        raw_updates = lab.workdir / "raw-updates.hex"

        def start_raw():
            return lab.spawn("bgpraw", [sys.executable, "-m", "tests.harness.bgpraw", "--listen", raw.ip, "--asn",
                                        str(RAW_ASN), "--router-id", raw.ip, str(raw_updates)],
                             lab.workdir / "bgpraw.log", ns=raw.ns, env={"PYTHONPATH": str(REPO)})

        raw_child = [start_raw()]

        def kill_raw(then_start: bool):
            """SIGKILL the raw peer (its kernel closes the session); start it again if ``then_start`` (it sends
            every UPDATE of the file again, in order, once the session is up)."""
            raw_child[0].send(signal.SIGKILL)
            raw_child[0].popen.wait(timeout=10)
            if then_start:
                raw_child[0] = start_raw()

        raw_neighbor = {"address": raw.ip, "asn": RAW_ASN, "local_address": ctl_a.ip, "hold_time": 9}
        a = lab.start_controller(ctl_a, bgp_settings(ctl_a, (rr1, rr2), [raw_neighbor]), name="canopya")
        b = lab.start_controller(ctl_b, bgp_settings(ctl_b, (rr1, rr2)), name="canopyb")
        apply_policies(((a.api, controller_policy(ctl_a)), (b.api, controller_policy(ctl_b))), "fed")
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect(ctl_a)
        hvb.connect(ctl_b)
        vms = {name: lab.add_vm(hv, name, mac=MACS[name], vnic_id=name)
               for name, hv in (("a1", hva), ("a2", hva), ("b1", hvb), ("b2", hvb))}
        sessions_and_leases(lab, (a.api, b.api), (rr1.ip, rr2.ip), vms,
                            "both controllers' sessions with both reflectors")
        yield lab, a, b, (hva, hvb), vms, reflectors, (raw, raw_updates, kill_raw)


def test_routes_cross_the_reflectors_and_vms_ping(fed):
    lab, a, b, _, vms, reflectors, _ = fed
    lab.wait_until(lambda: {MACS["b1"], MACS["b2"]} <= received_macs(a.api), timeout=30,
                   what="B's VMs in A's received routes")
    assert {MACS["a1"], MACS["b1"]} <= reflectors["rr1"].evpn_macs()
    reach(lab, vms["a1"], "10.0.1.21", timeout=30)  # same subnet, L2 VNI
    reach(lab, vms["a1"], "10.0.2.21", timeout=30)  # across subnets, L3 VNI
    reach(lab, vms["b2"], "10.0.1.11", timeout=30)
    row = peers(a.api)[reflectors["rr1"].host.ip]
    assert row["graceful_restart"] and row["graceful_restart"]["forwarding"]


def test_a_withdrawal_reaches_the_other_controllers_flows(fed):
    """FRR withdraws a type 2 route with label 0 and no second label; B must still remove it."""
    lab, a, b, (hva, hvb), vms, _, _ = fed
    reach(lab, vms["b2"], "10.0.2.11", timeout=30)
    lab.wait_until(lambda: MACS["a2"] in flows(hvb), timeout=15, what="a2's flows on hvb")
    lab.remove_vm(vms.pop("a2"))
    lab.wait_until(lambda: MACS["a2"] not in received_macs(b.api), timeout=30, what="a2's route withdrawn at B")
    lab.wait_until(lambda: MACS["a2"] not in flows(hvb), timeout=15, what="a2's flows gone on hvb")
    assert not vms["b2"].ping("10.0.2.11", count=1, timeout=2)


class Pinger:
    """``ping -i 0.01`` from a VM to ``responder`` until stopped, its replies counted as they come; ``stop()``
    returns (sent, received) up to the last reply (the request in flight when it is stopped is not a loss).
    ``-D -O``: each line carries its time, and a request still unanswered when the next one goes is named,
    so ``lost()`` can place a loss against the controllers' and the switches' logs.

    ``check()`` does not count as lost a reply the responder's own kernel failed to send: Linux sends echo replies
    from per-CPU ICMP sockets shared by every network namespace of the host, and when their send buffer is full (on a
    loaded host, the packets of other namespaces still queued) ``icmp_reply`` drops the reply before it reaches any
    interface, counting it in the responder's Icmp OutErrors. Such a reply was never in the network.

    Nor does it count a request (or its reply) in flight while a VM was plugged into a hypervisor on its path
    (``excuse(vm.plugged)``: its link made, its port added): a link appearing there can lose such a packet even when
    no flow changes (docs/vrs.md, "A packet in flight when a port is added"). A lost request is placed by when
    requests around it left (``placed()``): after its predecessor left and before its successor left; it is in that
    window when that interval overlaps the plugging. Ping's own lines say when a request left: the stamp of "no answer
    yet for icmp_seq=N", printed as request N+1 goes, or else a reply's stamp less its round trip (late by ping's own
    delay in printing it).

    A failure names what moved meanwhile on the hypervisors of the path (tests.harness.path_evidence): where Open
    vSwitch dropped a packet or handed a VXLAN packet to the hypervisor's kernel, and the kernel's route, address and
    link changes in their namespaces."""

    INTERVAL = 0.01

    def __init__(self, vm, responder, ip):
        self._heard_nothing(responder, responder.icmp_counters())
        self.evidence = PathEvidence([host.hv for host in (vm, responder) if hasattr(host, "hv")])
        try:
            self.proc = subprocess.Popen(["ip", "netns", "exec", vm.ns, "ping", "-n", "-D", "-O", "-i",
                                          str(self.INTERVAL), "-w", "600", ip],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except BaseException:  # no ping, no stop(): the evidence's monitors end here
            self.evidence.stop()
            raise
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @classmethod
    def stopped(cls, lines: list[str], responder, counters: dict[str, int], evidence) -> Pinger:
        """A stopped Pinger that read ``lines`` of ping's output while ``responder``'s ICMP counters moved by
        ``counters``, ``evidence`` what moved on the path (for tests of the count: no ping process)."""
        pinger = cls.__new__(cls)
        pinger._heard_nothing(responder, counters)
        pinger.evidence = evidence
        for line in lines:
            pinger.take(line)
        return pinger

    def _heard_nothing(self, responder, counters: dict[str, int]) -> None:
        self.lines: list[str] = []
        self.replies = 0
        self.seqs: set[int] = set()
        self.unanswered: dict[int, str] = {}  # sequence number -> ping's time stamp when the next request went
        self.answered_left: dict[int, float] = {}  # sequence number -> when it left: its reply's stamp less its time=
        self.responder = responder
        self.windows: list[tuple[float, float]] = []
        self.counters = counters

    def _read(self):
        for line in self.proc.stdout:
            self.take(line)

    def take(self, line: str) -> None:
        """One line of ping's output: a reply ("[STAMP] 64 bytes from ...: icmp_seq=N ttl=64 time=RTT ms") or a
        request unanswered when the next went ("[STAMP] no answer yet for icmp_seq=N")."""
        self.lines.append(line)
        if "icmp_seq=" not in line:
            return
        seq = int(line.split("icmp_seq=")[1].split()[0])
        stamp = line.split("]")[0].lstrip("[")
        if "bytes from" in line:
            self.seqs.add(seq)
            self.replies = len(self.seqs)
            if "time=" in line:
                self.answered_left.setdefault(seq, float(stamp) - float(line.split("time=")[1].split()[0]) / 1000)
        elif "no answer yet" in line:
            self.unanswered.setdefault(seq, stamp)

    def wait_replies(self, lab, count):
        """Bounded wait for ``count`` more replies (so the window around an event is never empty)."""
        target = self.replies + count
        lab.wait_until(lambda: self.replies >= target, timeout=60, what=f"{count} more ping replies")

    def stop(self) -> tuple[int, int]:
        try:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)
            self.reader.join(timeout=10)
        finally:  # the evidence's monitors end whatever ping did
            self.evidence.stop()
        after = self.responder.icmp_counters()
        self.counters = {name: after[name] - self.counters[name] for name in after}
        if not self.seqs:
            raise AssertionError(f"no ping reply: {''.join(self.lines[-5:])}")
        return max(self.seqs), len(self.seqs)

    def excuse(self, window: tuple[float, float] | None) -> None:
        """A port was added to a switch on the path between these wall-clock times (see the class)."""
        assert window is not None, "no port addition to excuse"
        self.windows.append(window)

    def in_a_window(self) -> list[int]:
        """The lost requests whose place (``placed()``) overlaps the time a port was added."""
        def inside(seq):
            place = self.placed(seq)
            return place is not None and any(place[0] <= end and start <= place[1] for start, end in self.windows)

        return [seq for seq in self.missing() if inside(seq)]

    def left(self, seq: int) -> float | None:
        """When request ``seq`` left (wall clock): the stamp of ping naming ``seq - 1`` unanswered (printed just before
        it sends ``seq``), else its reply's stamp less its round trip (late by as long as ping took to get to the reply:
        its stamp is when it printed, its round trip up to the kernel's receipt); None when ping said neither."""
        stamp = self.unanswered.get(seq - 1)
        return self.answered_left.get(seq) if stamp is None else float(stamp)

    def placed(self, seq: int) -> tuple[float, float] | None:
        """Between which wall-clock times request ``seq`` left: after the nearest request up to it whose leaving is
        known left (itself when ping named its lost predecessor as it went, else its predecessor, else the nearest
        before that), before the nearest one after it whose leaving is known left (its successor, as a rule). None when
        ping said nothing on one side."""
        after = next((at for earlier in range(seq, 0, -1) if (at := self.left(earlier)) is not None), None)
        last = max(self.seqs, default=0)
        before = next((at for later in range(seq + 1, last + 1) if (at := self.left(later)) is not None), None)
        return None if after is None or before is None else (after, before)

    def check(self, sent: int, got: int, minimum: int, when: str) -> None:
        """At least ``minimum`` requests, all of them received by the responder, and every one before the last
        reply answered but for the replies the responder's kernel counted as not sent and the requests in flight
        while a port was added (see the class)."""
        unsent, excused = self.counters["OutErrors"], len(self.in_a_window())
        assert sent >= minimum, f"only {sent} pings {when}"
        self.check_reached(sent, when)
        assert sent - got <= unsent + excused, (f"{sent - got} of {sent} pings lost {when} ({unsent} replies not sent "
                                                f"by {self.responder.name}'s kernel, {excused} while a port was "
                                                f"added): {self.lost()}")

    def check_reached(self, sent: int, when: str) -> None:
        """Every one of ``sent`` requests received by the responder but for those in flight while a port was added
        (see the class); a failure names the lost requests and what moved on the path (``lost()``)."""
        received, excused = self.counters["InEchos"], len(self.in_a_window())
        assert received + excused >= sent, (f"{sent - received} of {sent} echo requests never reached "
                                            f"{self.responder.name} {when} ({excused} while a port was added): "
                                            f"{self.lost()}")

    def missing(self) -> list[int]:
        """The requests before the last reply that got none."""
        return sorted(set(range(1, max(self.seqs, default=0) + 1)) - self.seqs)

    def lost_sent(self) -> dict[int, float | None]:
        """The requests before the last reply that got none, each with the wall-clock time its successor went (None:
        ping did not say)."""
        return {seq: float(self.unanswered[seq]) if seq in self.unanswered else None for seq in self.missing()}

    def lost(self) -> str:
        """The requests before the last reply that got none, each with the UTC times between which it left
        (``placed()``), and what moved on the path's hypervisors."""
        said = [line.strip() for line in self.lines if _complaint(line)]
        added = [_utc_span(window) for window in self.windows]
        evidence = self.evidence.report()
        return ", ".join(f"icmp_seq={seq} (left {_utc_span(self.placed(seq))})" for seq in self.missing()) + (
            f"; ports added {', '.join(added)}" if added else "") + (f"; ping said: {said[:5]}" if said else "") + (
            f"; {evidence}" if evidence else "")


def _complaint(line: str) -> bool:
    """A line of ping's that is neither a reply nor a late one: "sendmsg: ...", "Destination Host Unreachable"."""
    if "bytes from" in line or "no answer yet" in line:
        return False
    return "icmp_seq=" in line or "sendmsg" in line


def _utc(stamp: float | None) -> str:
    if stamp is None:
        return "?"
    return datetime.datetime.fromtimestamp(float(stamp), datetime.timezone.utc).strftime("%H:%M:%S.%f")


def _utc_span(span: tuple[float, float] | None) -> str:
    return "?" if span is None else f"{_utc(span[0])}-{_utc(span[1])}"


def converged(lab, apis, reflector):
    """Both controllers up with ``reflector`` again and nothing stale any more."""
    def done():
        rows = [peers(api)[reflector.host.ip] for api in apis]
        return all(r["state"] == "up" and r["stale"] == 0 and r["received"] > 0 for r in rows)

    lab.wait_until(done, timeout=120, what=f"the controllers back with {reflector.host.name}, nothing stale")


def test_a_reflector_restart_loses_no_ping(fed):
    """The only reflector crashes and comes back: both controllers keep its routes (stale) until its
    End-of-RIB, so no flow goes and no ping is lost."""
    lab, a, b, _, vms, reflectors, _ = fed
    rr1, rr2 = reflectors["rr1"], reflectors["rr2"]
    rr2.kill()  # rr1 becomes the only path between A and B
    lab.wait_until(lambda: all(peers(api)[rr2.host.ip]["state"] != "up" for api in (a.api, b.api)), timeout=30,
                   what="the controllers to see rr2 down")
    reach(lab, vms["a1"], "10.0.1.21", timeout=30)
    pinger = Pinger(vms["a1"], vms["b1"], "10.0.1.21")
    try:
        pinger.wait_replies(lab, 100)
        rr1.kill()
        lab.wait_until(lambda: all(peers(api)[rr1.host.ip]["state"] != "up" for api in (a.api, b.api)),
                       timeout=30, what="the controllers to see rr1 down")
        assert all(peers(api)[rr1.host.ip]["stale"] > 0 for api in (a.api, b.api))  # kept, not dropped
        rr1.start()
        converged(lab, (a.api, b.api), rr1)
        assert {MACS["b1"], MACS["b2"]} <= received_macs(a.api)
        pinger.wait_replies(lab, 100)
    finally:
        sent, got = pinger.stop()
    pinger.check(sent, got, 200, "across the reflector restart")
    rr2.start()
    converged(lab, (a.api, b.api), rr2)


def test_two_reflectors_losing_one_changes_nothing(fed):
    lab, a, b, (hva, hvb), vms, reflectors, _ = fed
    rr1, rr2 = reflectors["rr1"], reflectors["rr2"]
    pinger, killed = Pinger(vms["b1"], vms["a1"], "10.0.1.11"), False
    try:
        pinger.wait_replies(lab, 100)
        rr2.kill()
        killed = True
        lab.wait_until(lambda: all(peers(api)[rr2.host.ip]["state"] != "up" for api in (a.api, b.api)),
                       timeout=30, what="the controllers to see rr2 down")
        vms["a2"] = lab.add_vm(hva, "a2", mac=MACS["a2"], vnic_id="a2")  # back, announced through rr1 only
        pinger.excuse(vms["a2"].plugged)  # a1's switch adds a port: see Pinger
        assert dhcp(lab, vms["a2"]).get("ip") == "10.0.2.11"
        lab.wait_until(lambda: MACS["a2"] in received_macs(b.api), timeout=30, what="a2's route at B through rr1")
        reach(lab, vms["b2"], "10.0.2.11", timeout=30)
        pinger.wait_replies(lab, 100)
    finally:
        try:
            sent, got = pinger.stop()
        finally:  # rr2 back whatever happened: the next tests of the module share the fabric
            if killed:
                rr2.start()
    pinger.check(sent, got, 200, "when a reflector went")
    converged(lab, (a.api, b.api), rr2)


def test_a_route_with_an_ipv4_mapped_ipv6_next_hop_leaves_the_sessions_up_and_traffic_flowing(fed):
    """A type 5 route whose MP_REACH_NLRI next hop is 16 bytes, ::ffff:<hvb's VTEP> (as FRR sends for its
    own type 5 routes), and one with a plain IPv6 next hop: ExaBGP 5.0.15 alone resets the session with
    NOTIFICATION 3/9 for each. Now the first is imported at the IPv4 VTEP, the second is treated as
    withdrawn (counted), and no session goes down."""
    from bgp import exabgp_codec
    from bgp.routes import IpPrefixRoute
    from tests.harness.bgpraw import with_next_hop

    lab, a, b, (_, hvb), vms, reflectors, (raw, raw_updates, _) = fed
    lab.wait_until(lambda: peers(a.api)[raw.ip]["state"] == "up", timeout=60, what="A's session with the raw peer")
    router_mac = next(r["router_mac"] for r in received(a.api, 2) if r["mac"] == MACS["b1"])
    common = dict(rd=f"{raw.ip}:5", l3_vni=L3_VNI, next_hop=hvb.vtep_ip, route_targets=(f"65000:{L3_VNI}",),
                  router_mac=router_mac)
    mapped = bytes(10) + b"\xff\xff" + ipaddress.IPv4Address(hvb.vtep_ip).packed
    ipv6 = ipaddress.IPv6Address("2001:db8::1").packed
    updates = [with_next_hop(exabgp_codec.encode_update(IpPrefixRoute(prefix=prefix, **common), "announce",
                                                      local_as=RAW_ASN, peer_as=ASN), hop)
               for prefix, hop in (("172.16.50.0/24", mapped), ("172.16.51.0/24", ipv6))]
    rr_uptimes = {ip: peers(a.api)[ip]["uptime"] for ip in (reflectors["rr1"].host.ip, reflectors["rr2"].host.ip)}
    pinger = Pinger(vms["a1"], vms["b1"], "10.0.1.21")
    try:
        pinger.wait_replies(lab, 100)
        raw_updates.write_text("".join(update.hex() + "\n" for update in updates))
        lab.wait_until(lambda: {(r["prefix"], r["next_hop"]) for r in received(a.api, 5) if r["peer"] == raw.ip}
                       == {("172.16.50.0/24", hvb.vtep_ip)}, timeout=30, what="the mapped next hop's route at A")
        lab.wait_until(lambda: peers(a.api)[raw.ip]["refused"] == {"next_hop": 1}, timeout=30,
                       what="the IPv6 next hop's route refused at A")
        pinger.wait_replies(lab, 400)  # a few keepalive intervals of the raw session after its updates
    finally:
        sent, got = pinger.stop()
    pinger.check(sent, got, 500, "while the raw peer's routes came")
    log = (lab.workdir / "bgpraw.log").read_text()
    assert log.count("established") == 1 and "NOTIFICATION" not in log, log
    assert "sent update 2" in log and peers(a.api)[raw.ip]["state"] == "up"
    assert all(peers(a.api)[ip]["uptime"] > before for ip, before in rr_uptimes.items())
    fib = a.api.get("/v1/domains").json["items"][0]["id"]
    assert "172.16.50.0/24" in str(a.api.get(f"/v1/domains/{fib}/fib").json)
