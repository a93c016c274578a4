"""The bursts' longest stretches (issue 15, "Bounded lag"; stop 47's "found, not fixed"), each place counted in
bytecodes at the loop's share of a CPU (tests/benchmarks/burst_places.py, which prints them at 10,000), and each
change checked against the code it replaced (oracles)."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

from controller.binding import BindingIndex
from controller.discovery import PortInfo
from controller.model import binding_key, esxi_static_key
from tests.benchmarks import burst_places
from tests.unit.test_paced_wiring import LOADED_BUDGET

COUNT = 2_000


# ---------------------------------------------------------------------------------------------- State taking a commit

def test_state_takes_a_commit_of_vports_without_a_python_step_per_vport():
    """An apply of 2,000 vports whose ports are shown: ~75 bytecodes a vport updating the binding index in one
    stretch (before: 240,706 at 2,000; 1,016,658 at 10,000), now C loops: the stretch is the relocation's chunk."""
    most, _pauses = burst_places.commit(COUNT)
    assert most < LOADED_BUDGET + 15_000, most


def test_state_takes_an_apply_in_fewer_bytecodes_a_vport():
    """The CPU of the apply path, counted: State taking an apply of 2,000 vports whose ports are shown (the commit read,
    the binding index, the vports located) was 586 bytecodes a vport (stop 47), now ~313 (the read a run of vports
    at a time, the index in C loops)."""
    from tests.bytecodes import opcodes

    state, plan = burst_places._planned(COUNT)
    per_vport = opcodes(lambda: state.policy_committed(plan.policy, plan.changes)) / COUNT
    assert per_vport < 400, per_vport


def _vport(vid: str, flavour: str, name: str, static=None) -> dict:
    binding = {"flavour": flavour, "iface_id": name if flavour == "kvm" else None,
               "port_name": name if flavour == "hyperv" else None, "vnic_id": name if flavour == "esxi" else None,
               "host": None, "trunk_port": None, "vlan": None}
    if static:
        binding.update(host=static[0], trunk_port=static[1], vlan=static[2])
    return {"id": vid, "name": name, "subnet_id": "s", "mac": "02:00:00:00:00:01", "binding": binding}


def _world(rng: random.Random) -> tuple[BindingIndex, dict]:
    """An index of a few vports (KVM, Hyper-V, ESXi, some static) and ports showing them, some Hyper-V ports carrying a
    KVM vport's iface-id (crossed); the vports by id."""
    index, vports = BindingIndex(), {}
    for i in range(12):
        flavour = rng.choice(("kvm", "kvm", "kvm", "hyperv", "esxi"))
        static = ("h1", "trunk", 100 + i) if flavour == "esxi" and rng.random() < 0.3 else None
        vports[f"v{i}"] = _vport(f"v{i}", flavour, f"n{rng.randrange(8)}" if rng.random() < 0.2 else f"n{i}", static)
    for vport in vports.values():
        index.learn_vport(vport)
    for session, flavour in (("s1", "kvm"), ("s2", "hyperv")):
        snap = SimpleNamespace(session=session, chassis=session, datapath_id=1)
        for i in range(10):
            ext = (("iface-id", f"n{rng.randrange(12)}"),) if rng.random() < 0.7 else ()
            index.learn_port(snap, 1, flavour, PortInfo(f"n{i}", ofport=i + 1, external_ids=ext), set())
    return index, vports


def _changes(rng: random.Random, vports: dict) -> list:
    """A commit's vport changes (before, after, after's keys): created, deleted, changed (a new name: another binding
    key), now and then one vport twice or a key two of them share."""
    changes = []
    for _ in range(rng.randrange(1, 8)):
        vid = rng.choice(list(vports) + [f"new{rng.randrange(4)}"])
        before = vports.get(vid)
        after = None if before is not None and rng.random() < 0.4 else _vport(
            vid, rng.choice(("kvm", "kvm", "hyperv", "esxi")), f"n{rng.randrange(14)}",
            ("h1", "trunk", 7) if rng.random() < 0.1 else None)
        changes.append((before, after, None if after is None else (binding_key(after), esxi_static_key(after))))
        if after is None:
            vports.pop(vid, None)
        else:
            vports[vid] = after
    return changes


def _held(index: BindingIndex) -> tuple:
    hyperv = sum(key[0] == "hyperv" for key in index.vport_at)
    assert index.hyperv_keys == hyperv, (index.hyperv_keys, hyperv)
    return (index.vport_at, index.key_of, index.static_of, dict(index.static_at), index.conflicts)


def test_a_commit_taken_at_once_changes_the_index_as_taken_one_change_at_a_time():
    """``BindingIndex.take_vports`` (C loops when the order of the changes cannot matter) against the loop it
    replaced: the same index and the same Hyper-V vports crossed, on random commits (created, deleted, renamed
    vports of every flavour; a vport twice; two on one key; Hyper-V ports with a KVM vport's iface-id)."""
    rng, at_once = random.Random(48), 0
    for _ in range(1500):
        index, vports = _world(rng)
        changes = _changes(rng, dict(vports))
        other = copy.deepcopy(index)
        at_once += index._apart(changes) is not None
        assert index.take_vports(changes) == other._take_one_by_one(copy.deepcopy(changes))
        assert _held(index) == _held(other)
    assert 80 < at_once < 1400, at_once  # (both ways taken)


# ---------------------------------------------------------------------------------------------- the import's table

def test_the_import_from_scratch_sorts_its_table_in_paced_pieces():
    """A policy commit imports 10,000 received MACs again from scratch: the table's ``sorted`` keyed in Python was one
    stretch (90,819 bytecodes beside a sort of 10,000 keys in C; perf47's hunt: 29 ms of CPU), now sorted in pieces
    (openflow/pacedsort.py) with the programming pass's pacer."""
    most, _pauses = burst_places.import_(10_000)
    assert most < LOADED_BUDGET + 8_000, most


def test_the_import_table_sorted_in_pieces_is_the_table_sorted_at_once():
    from bgp.importer import RouteImport
    from bgp.routes import IpPrefixRoute
    from controller.pacer import Pacer
    from controller.remote import prefix_order

    state = burst_places._planned(1)[0]
    received = burst_places._Received(3_000).received
    rng = random.Random(47)
    for i in range(1_500):
        route = IpPrefixRoute(rd="192.0.2.1:5", prefix=f"10.{rng.randrange(256)}.{i % 256}.0/{rng.randrange(16, 29)}",
                              next_hop=f"192.0.2.{1 + i % 7}", l3_vni=burst_places.L3_VNI,
                              router_mac="02:00:00:00:00:07", route_targets=(f"{burst_places.CANOPY_ASN}:{burst_places.L3_VNI}",))
        received[(f"192.0.2.{9 + i % 3}", route.key)] = route
    importer = RouteImport(state.policy)
    importer.apply(dict(rng.sample(list(received.items()), len(received))))
    table = importer.table(Pacer(lambda: None, 50))
    assert len(table.macs) == 3_000 and len(table.prefixes) > 1_000
    assert table.macs == tuple(sorted(importer._macs.values(), key=lambda m: (m.subnet_id, m.mac)))  # (stop 47's)
    assert table.prefixes == tuple(sorted(importer._prefixes, key=prefix_order))


# ---------------------------------------------------------------------------------------------- a domain's routes

def test_a_domain_taking_thousands_of_host_routes_does_not_sort_its_routes_again_in_one_call():
    """The apply binds 2,000 vports into a domain holding 2,000 host routes: ``OrderedFib.settle`` was one
    ``SortedDict.update``, which sorts every key again in C (4,002 here; 20,002 at 10,000: 19-29 ms of CPU in the
    bursts), now each route put in with the pass's pacer."""
    most, _pauses = burst_places.resorted(COUNT)
    assert most == 0, most


def _fib(count: int, rng: random.Random):
    from controller.viewroutes import OrderedFib

    fib = OrderedFib()
    eps = [SimpleNamespace(vport_id=f"v{i}", subnet_id="s", ips=(f"10.{i >> 8 & 255}.{i & 255}.{rng.randrange(1, 9)}",))
           for i in range(count)]
    fib.set_own([], [], [])
    fib.add_hosts([ep.ips[0] for ep in eps[:count // 2]], eps[:count // 2])
    fib.settle()
    fib.add_hosts([ep.ips[0] for ep in eps[count // 2:]], eps[count // 2:])
    for ep in rng.sample(eps, count // 10):
        fib.remove_host(ep.ips[0], ep.vport_id)
    return fib


def test_host_routes_put_in_with_pauses_are_those_put_in_at_once_and_each_is_somewhere_at_every_pause():
    """``OrderedFib.settle(pacer)`` against ``settle()``: the same routes in the same order, the same ties; at every
    pause each route that came is in ``routes`` or in ``added``, not both; a read in one pause (a REST FIB read:
    ``ordered()`` settles the rest) changes neither."""
    from controller.pacer import Pacer

    for seed in range(6):
        fib, at_once = _fib(3_000, random.Random(seed)), _fib(3_000, random.Random(seed))
        came = set(fib.added)
        seen = []

        def pause():
            assert not fib.routes.keys() & fib.added.keys() and came <= set(fib.routes) | set(fib.added)
            seen.append(len(fib.added))
            if seed % 2 and len(seen) == 3:
                fib.ordered()

        fib.settle(Pacer(pause, 100))
        at_once.settle()
        assert len(seen) > 3 and seen == sorted(seen, reverse=True)
        assert list(fib.routes.items()) == list(at_once.routes.items()) and fib.ties == at_once.ties
        assert fib.ordered() == at_once.ordered()


def test_host_routes_put_in_by_a_finishing_pacer_are_those_put_in_at_once():
    """``settle`` reads its pacer's ``pause``: a ``Finishing`` (work never left half done) has one, the pacer's until
    a pause raises (before, an AttributeError); its pauses end there and the rest is put in unpaused."""
    from controller.pacer import Finishing, Pacer

    fib, at_once = _fib(3_000, random.Random(7)), _fib(3_000, random.Random(7))
    seen = []

    def pause():
        seen.append(len(fib.added))
        if len(seen) == 2:
            raise GeneratorExit("killed in a pause")

    finishing = Finishing(Pacer(pause, 100))
    fib.settle(finishing)
    at_once.settle()
    assert len(seen) == 2 and isinstance(finishing.held, GeneratorExit) and finishing.pause is None
    assert list(fib.routes.items()) == list(at_once.routes.items()) and fib.ties == at_once.ties


# ---------------------------------------------------------------------------------------------- a switch's hand-out

def test_a_switchs_hand_out_after_an_apply_pauses_per_vm_and_per_flood_bucket():
    """kvm1 handed its desired state after an apply of 2,000 vports in a new subnet (controller/app.py ``_push``): the
    reconciler's book told of each owner in Python, the new gateway's gratuitous ARP made for each VM, and the
    subnet's flood group of 2,000 buckets read for tunnel probes, in one stretch (main: 178,543 bytecodes; 817,616 at
    10,000); now C loops, and the ARPs and buckets ticked with the programming loop's pacer."""
    most, _pauses = burst_places.push(COUNT)
    assert most < LOADED_BUDGET + 10_000, most


def test_the_vteps_of_a_groups_buckets_read_in_paced_c_runs_are_those_read_a_bucket_at_a_time():
    from controller.pacer import Pacer
    from openflow.tunnel_warm import TUNNEL_DST, _bucket_targets, _targets

    rng = random.Random(5)
    for _ in range(50):
        buckets = tuple(tuple(rng.choice([("set", TUNNEL_DST, f"192.0.2.{rng.randrange(40)}"), ("set", "tunnel_id", 5),
                                          ("output", 3), ("resubmit", 40), ("set", "reg7", 9)])
                              for _ in range(rng.randrange(4))) for _ in range(rng.randrange(300)))
        paced, whole = set(), set()
        pacer = Pacer(lambda: None, 3)
        _bucket_targets(buckets, paced, pacer)
        _bucket_targets(buckets, whole)
        assert paced == whole == {ip for bucket in buckets for ip in _targets(bucket)}
        assert pacer.pauses >= len(buckets) // (32 * 3)


# ---------------------------------------------------------------------------------------------- a commit read

def _read_as_at_stop_47(old, new, changes):
    """controller/commits.py ``read_changes`` as it read vports (a change at a time), for the oracle below; the other
    changes as it reads them now (``_read_change``, the same code)."""
    from controller.commits import CommitRead, _read_change

    read = CommitRead()
    records = read.records
    for change in changes:
        if change.kind != "vport":
            _read_change(read, old, new, change)
            continue
        before, after = old.get(change.kind, change.id), new.get(change.kind, change.id)
        if any(o.get("policy_groups") for o in (before, after) if o is not None):
            read.security = True
        read.vports.append((before, after, None if after is None else (binding_key(after), esxi_static_key(after))))
        read.reached.add(change.id)
        records["vports"].add(change.id)
        records["vport_policies"].add(change.id)
        records["subnets"].update(o["subnet_id"] for o in (before, after)
                                  if o is not None and o["binding"]["flavour"] == "baremetal")
    return read


def test_a_commit_read_a_run_of_vports_at_a_time_reads_what_a_change_at_a_time_read():
    from controller.commits import read_changes
    from controller.pacer import Pacer
    from controller.policy import Policy
    from controller.store import Change

    kinds = ("vport", "vport", "vport", "subnet", "domain", "acl", "policy_group", "vtep_binding", "tenant",
             "floating_ip", "external_network")
    rng = random.Random(9)
    for _ in range(300):
        old, new, changes = Policy(), Policy(), []
        for i in range(rng.randrange(1, 40)):
            kind = rng.choice(kinds)
            oid = f"{kind}{rng.randrange(30)}"
            for policy in rng.sample((old, new), rng.randrange(3)):
                body = {"id": oid, "subnet_id": f"s{rng.randrange(3)}", "policy_groups": rng.random() < 0.1 and ["g"]}
                if kind == "vport":
                    body = {**_vport(oid, rng.choice(("kvm", "esxi", "hyperv")), f"n{i}",
                                     ("h", "t", 3) if rng.random() < 0.2 else None), **body}
                    body["binding"]["flavour"] = rng.choice((body["binding"]["flavour"], "baremetal"))
                policy.objects[kind][oid] = body
            changes.append(Change(kind, oid, "put", None))
        pacer = Pacer(lambda: None, rng.randrange(1, 9))
        read, expected = read_changes(old, new, changes, pacer), _read_as_at_stop_47(old, new, changes)
        assert (read.vports, read.reached, read.records, read.security, read.external) == \
            (expected.vports, expected.reached, expected.records, expected.security, expected.external)
        assert pacer.pauses == len(changes) // pacer.every
