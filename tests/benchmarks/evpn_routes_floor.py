"""The withdraw phase's floor in the EVPN route benchmark (tests/benchmarks/evpn_routes.py): what deleting N ports
and withdrawing their N routes at A costs this lab with a controller that costs nothing (docs/benchmarks.md,
"wdfloor38, stop 38").

Two pieces, each measured on its own with nothing else of the benchmark running, added:

(a) **OVSDB**: the same delete as the withdraw phase's (the N ports gone from br-int in one transaction, the clock
    started just before it is sent), on a hypervisor of its own in the same lab (``kvmf``: ovsdb-server and
    ovs-vswitchd as kvm1's, not connected to the controller), until a bare monitoring client has the whole update:
    a plain JSON-RPC ``monitor_cond_since`` of Canopy's VRS columns (``ovsdb.vrs.COLUMNS``, the method Canopy's IDL
    uses), in this process, doing nothing else; stamped when the last byte of the update arrived (its decoding is
    not in the figure). Over TCP (a ``ptcp`` Manager remote on the namespace's loopback), as Canopy's session is a
    TCP Manager remote: ovsdb-server sends each remote's sessions their updates in turn, and a client on the unix
    socket ovs-vswitchd uses had its update 1-2 s later at load 13-15 (docs/benchmarks.md, stop 38).
(b) **A's intake of Canopy's withdrawals**: A holding Canopy's N routes (fed packed by the feeder), the feeder
    writes their withdrawals at once, packed as Canopy's ExaBGP packs them (``encode_rib_updates`` per command line
    of ``bgp.routes.BATCH_ROUTES`` routes: MP_UNREACH_NLRI filling each UPDATE of 4,096 bytes), until A holds none.

floor = (a) + (b): the withdraw phase, were the controller, its ExaBGP and kvm1's ovs-vswitchd's port removal free
and the withdrawals sent the moment the update arrived. (b) carries one cost the phase has not: A sends the feeder's
withdrawals on to Canopy's ExaBGP (held, as in the baseline), which takes them in. Not collected by pytest.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from tests.harness import netns

FLOOR_HV = "kvmf"
SETTLE_TIMEOUT = 300.0  # seconds for the floor hypervisor's ovs-vswitchd to take in N new ports
QUIET_CPU = 0.03  # CPU seconds in QUIET_WINDOW below which the floor hypervisor's OVS counts as settled
QUIET_WINDOW = 0.5
OVSDB_REPEATS = 3  # deletes timed for (a), their median taken: a shared machine's noise is ~0.5 s
MONITOR_PORT = 6640  # on 127.0.0.1 in the floor hypervisor's namespace
MESSAGE_SIZE = 4096  # BGP's without RFC 8654's extended messages, which GoBGP does not offer: ExaBGP's to A


def packed_withdrawals(routes, local_as: int, peer_as: int) -> bytes:
    """The withdrawals of ``routes`` as Canopy's ExaBGP sends them: one batch command of BATCH_ROUTES at most at a
    time, each put on the wire as ExaBGP's outgoing RIB (with bgp.exabgp_ext's grouping) packs it."""
    from bgp.exabgp_codec import encode_rib_updates
    from bgp.routes import BATCH_ROUTES

    return b"".join(message for k in range(0, len(routes), BATCH_ROUTES) for message in
                    encode_rib_updates(routes[k:k + BATCH_ROUTES], "withdraw", local_as, peer_as, MESSAGE_SIZE))


def intake(b, routes) -> dict:
    """(b): A holds ``routes`` (the feeder's, packed) on entry; the feeder writes their packed withdrawals at once.
    The step's marks (``gobgp``: seconds until A held none; ``filling``: first fewer, a quarter, half, three quarters
    gone; ``cpu``; ``updates``/``bytes``: what was sent). Leaves A with the routes it held before them."""
    from tests.benchmarks import evpn_routes as er

    data = packed_withdrawals(routes, er.FEED_ASN, er.A_ASN)
    draining = er.Filling(b.a, b.base + len(routes), len(routes), b.base)
    marks = b.timed("floor: A's intake of the withdrawals, packed", b.feed(data), {"gobgp": draining}, ("gobgp",),
                    A=b.a.count)
    marks["filling"] = draining.shares(marks["started"])
    marks["updates"], marks["bytes"] = updates_in(data), len(data)
    return marks


def updates_in(data: bytes) -> int:
    count, at = 0, 0
    while at < len(data):
        at += int.from_bytes(data[at + 16:at + 18], "big")
        count += 1
    return count


class Monitor:
    """A bare OVSDB client on a unix socket: one ``monitor_cond_since`` of Canopy's VRS columns, its first copy read;
    ``wait_deletes`` then reads until an update deleting ``n`` Port rows has arrived whole. A message is decoded
    once its braces balance (counted in C per read; these rows' strings hold none), so the reads are not slowed by
    decoding a part of it."""

    def __init__(self, sock: socket.socket, timeout: float):
        from ovsdb.vrs import COLUMNS

        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf, self.depth = b"", 0
        tables = {table: [{"columns": list(columns)}] for table, columns in COLUMNS.items()}
        self._send({"method": "monitor_cond_since", "id": 1,
                    "params": ["Open_vSwitch", "floor", tables, "00000000-0000-0000-0000-000000000000"]})
        while True:
            message = self._next([])
            if message.get("id") == 1:
                if message.get("error"):
                    raise SystemExit(f"floor monitor refused: {message['error']}")
                self.first = message["result"][2]
                return

    def _send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode())

    def _next(self, reads: list) -> dict:
        """The next whole message (echo requests answered); ``reads`` gets (monotonic time, bytes) of each read."""
        while True:
            if self.buf and self.depth <= 0:
                text = self.buf.decode()
                try:
                    message, end = json.JSONDecoder().raw_decode(text)
                except ValueError:
                    pass
                else:
                    self.buf = text[end:].lstrip().encode()
                    self.depth = self.buf.count(b"{") - self.buf.count(b"}")
                    if message.get("method") == "echo":
                        self._send({"result": message["params"], "error": None, "id": message["id"]})
                        continue
                    return message
            chunk = self.sock.recv(1 << 20)
            reads.append((time.monotonic(), len(chunk)))
            if not chunk:
                raise SystemExit("ovsdb-server closed the floor monitor's connection")
            self.buf += chunk
            self.depth += chunk.count(b"{") - chunk.count(b"}")

    def wait_deletes(self, n: int) -> dict:
        """Reads until an update with ``n`` Port deletes: {first, last: monotonic times of the first and last read
        that brought it, bytes: what those reads brought}."""
        while True:
            reads: list[tuple[float, int]] = []
            message = self._next(reads)
            if message.get("method") not in ("update3", "update2", "update") or not reads:
                continue
            ports = message["params"][-1].get("Port", {})
            if sum(1 for row in ports.values() if "delete" in row or not row) >= n:
                return {"first": reads[0][0], "last": reads[-1][0], "bytes": sum(size for _, size in reads)}

    def close(self) -> None:
        self.sock.close()


def settle(b, hv, n: int) -> float:
    """Wait until ovs-vswitchd has taken in the N new ports (each Interface with an ofport, -1 for these) and the
    hypervisor's OVS is quiet; seconds taken."""
    from tests.benchmarks.evpn_routes import cpu_seconds, transact

    t = time.monotonic()
    pids = [child.pid for child in hv.ovs.processes]

    def taken() -> bool:
        rows = transact(hv, [{"op": "select", "table": "Interface", "where": [["ofport", "==", -1]],
                              "columns": ["name"]}])[0]["rows"]
        return len(rows) >= n

    def quiet() -> bool:
        before = cpu_seconds(pids)
        time.sleep(QUIET_WINDOW)
        return cpu_seconds(pids) - before < QUIET_CPU

    b.lab.wait_until(taken, SETTLE_TIMEOUT, 0.5, f"{FLOOR_HV}'s ovs-vswitchd taking in {n} ports")
    b.lab.wait_until(quiet, SETTLE_TIMEOUT, 0.0, f"{FLOOR_HV}'s OVS quiet")
    return time.monotonic() - t


def ovsdb(b) -> dict:
    """(a), OVSDB_REPEATS times: a hypervisor of its own with evpn_routes' N ports on br-int (added again each time,
    its OVS left to settle), the bare monitor holding them; the N ports deleted in one transaction as the withdraw
    phase deletes them. Each delete's seconds from just before the transaction to its answer and to the update's
    first and last bytes at the monitor, ovsdb-server's and ovs-vswitchd's CPU meanwhile (``runs``); ``update``:
    their median."""
    t = time.monotonic()
    hv = b.lab.add_hypervisor(FLOOR_HV, "kvm")
    hv.vsctl("set-manager", f"ptcp:{MONITOR_PORT}:127.0.0.1")  # the monitor's remote: TCP, as Canopy's (see above)
    b.setup[f"floor: {FLOOR_HV}"] = time.monotonic() - t
    runs = [delete_once(b, hv) for _ in range(OVSDB_REPEATS)]
    median = sorted(runs, key=lambda run: run["update"])[len(runs) // 2]
    return dict(median, runs=runs)


def delete_once(b, hv) -> dict:
    from tests.benchmarks import evpn_routes as er

    t, n, vports = time.monotonic(), b.n, [er.out_vport(i) for i in range(b.n)]
    er.transact(hv, er.add_ports_ops(vports))
    settled = settle(b, hv, n)
    b.setup["floor: its ports added, settled"] = b.setup.get("floor: its ports added, settled", 0.0) + (
        time.monotonic() - t)
    monitor = Monitor(netns.connect_tcp(hv.ns, "127.0.0.1", MONITOR_PORT), er.PHASE_TIMEOUT)
    try:
        held = len(monitor.first.get("Port", {}))
        if held < n:
            raise SystemExit(f"the floor monitor's first copy holds {held} ports, not {n}")
        ops = er.delete_ports_ops(hv, {v["name"] for v in vports})
        pids = {"ovsdb-server": [hv.ovs.processes[0].pid], "ovs-vswitchd": [hv.ovs.processes[1].pid]}
        before = {name: er.cpu_seconds(p) for name, p in pids.items()}
        answer: dict = {}
        b.progress("floor: the OVSDB delete ...")
        load, started = os.getloadavg()[0], time.monotonic()

        def send() -> None:
            er.transact(hv, ops)
            answer["at"] = time.monotonic() - started

        sender = threading.Thread(target=send, name="floor-delete", daemon=True)
        sender.start()
        update = monitor.wait_deletes(n)
        sender.join(er.PHASE_TIMEOUT)
    finally:
        monitor.close()
    time.sleep(QUIET_WINDOW)  # ovs-vswitchd's removal of the ports, counted in its CPU below (not in the clock)
    marks = {"answer": answer.get("at"), "first_bytes": update["first"] - started,
             "update": update["last"] - started, "bytes": update["bytes"], "load": load, "settled": settled,
             "cpu": {name: round(er.cpu_seconds(p) - before[name], 2) for name, p in pids.items()}}
    b.progress(f"floor: the OVSDB delete: {marks}")
    return marks


def floor(withdraw: dict, baseline_seconds: float, seconds: float) -> dict:
    """The floor's sum from the withdraw phase's marks (``floor_ovsdb``, ``floor_intake``), its rate over the
    baseline's and Canopy's over it, and where Canopy's phase is behind it: before A's first withdrawal (Canopy's
    first-fewer stamp against (a)) and in A's intake (Canopy's first-fewer-to-none against (b)); SystemExit when a
    piece was not measured."""
    a, b = withdraw["floor_ovsdb"]["update"], withdraw["floor_intake"]["gobgp"]
    if not a or not b or a <= 0 or b <= 0:
        raise SystemExit(f"the withdraw floor's pieces were not both measured: OVSDB {a}, intake {b}")
    total, first = a + b, withdraw["filling"][0.0]
    return {"ovsdb": a, "intake": b, "seconds": total, "floor_ratio": baseline_seconds / total,
            "canopy_over_floor": total / seconds,
            "behind_before_first": None if first is None else first - a,
            "behind_in_intake": None if first is None else seconds - first - b}
