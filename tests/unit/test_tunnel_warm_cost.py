"""What ``TunnelWarmer.tunnel_ips`` costs per switch (openflow/tunnel_warm.py): after the start-up hold every switch's
whole desired state is read for its probes, the owners' flow sets shared by the switches (openflow/compiler.py
Shared). It walked every owner of every switch in Python (vrs_scale's restart: 5,000 owners x 50 switches, ~0.4 s,
docs/benchmarks.md "restart CPU, stop 37"); a flow set read for one switch now costs the next nothing in Python."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from controller.pacer import Pacer
from openflow.compiler import Desired
from openflow.tunnel_warm import TUNNEL_DST, TunnelWarmer
from tests.bytecodes import Bytecodes


@dataclass(frozen=True)
class Flow:
    actions: tuple


def hosts(switches: int, owners: int) -> list[Desired]:
    """``switches`` switches' desired state, each the same ``owners`` owners' flow sets (shared objects), owner k
    tunnelling to host k % switches."""
    shared = {f"vport{k}": frozenset({Flow((("set", TUNNEL_DST, f"10.0.0.{k % switches}"), ("output", 1)))})
              for k in range(owners)}
    return [Desired(flows=dict(shared)) for _ in range(switches)]


def test_a_round_over_switches_sharing_flow_sets_reads_each_flow_set_once_and_walks_no_owner_in_python():
    switches, owners = 50, 500
    everyone = {f"10.0.0.{k}" for k in range(switches)}
    warmer, desired, connection = TunnelWarmer(), hosts(switches, owners), object()
    sws = [SimpleNamespace(session=f"ovsdb:hv{k}", tunnel_ofport=1, vtep_ip=f"10.0.0.{k}") for k in range(switches)]
    with warmer.reading(), Bytecodes() as counted:
        for sw, d in zip(sws, desired):  # each switch's first connection: every owner looked at
            warmer.due(sw, connection, d, {"vport0"})
    assert [warmer.probed[sw.session][1] for sw in sws] == [everyone - {sw.vtep_ip} for sw in sws]
    # per owner once (its flow set read), per switch its 49 probes made: 1,267,449 before (~50 a switch's owner),
    # 124,849 after
    assert counted.count <= 80 * owners + 60 * switches * switches, counted.count


def test_a_refresh_round_over_switches_sharing_flow_sets_pauses_between_switches_not_once_after_the_first():
    """The refresh round (``again``): each switch's flow sets read before are united in C loops, and those loops tick
    the pacer as the flow sets they walk: between two pauses at most ``every`` flow sets and one switch's are walked
    (they were all 49 switches after the first's reads, 24,500 here: 50 x 5,000, ~70 ms of the event loop)."""
    switches, owners, every = 50, 500, 200
    desired = hosts(switches, owners)
    view = SimpleNamespace(switches={f"ovsdb:hv{k}": SimpleNamespace(session=f"ovsdb:hv{k}", tunnel_ofport=1,
                                                                      vtep_ip=f"10.0.0.{k}", datapath_id=k)
                                     for k in range(switches)})
    warmer, rec, walked, most = TunnelWarmer(), SimpleNamespace(datapath=object()), [0], [0]
    due = warmer.due

    def counted(sw, connection, d, *args, **kwargs):
        walked[0] += len(d.flows)  # (every owner of the switch: a refresh round looks at all of them)
        return due(sw, connection, d, *args, **kwargs)

    def pause():
        most[0], walked[0] = max(most[0], walked[0]), 0

    warmer.due = counted
    rounds = list(warmer.again(view, {f"ovsdb:hv{k}": d for k, d in enumerate(desired)}, lambda dp: rec,
                               Pacer(pause, every)))
    assert len(rounds) == switches and all(len(probes) == switches - 1 for _rec, _port, probes in rounds)
    assert 0 < max(most[0], walked[0]) <= every + owners, (most, walked)
