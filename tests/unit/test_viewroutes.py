"""The live View's per-domain route state (controller/viewroutes.py) holds the domains there are, not every domain
ever seen: a domain's ordered FIB, host routes, static-route targets and what its flows were compiled from go when
its last route goes (or the domain)."""

from controller import policy as pol
from controller import policydoc
from controller.derive import derive
from controller.programmer import Programmer
from controller.state import State
from controller.store import Change
from tests.unit.helpers import vrs_snapshot

ALLOCATOR = pol.Allocator({}, 65000, (10000, 20000))


def document(domains):
    """Tenant acme with ``domains`` (names), each with one routed subnet, a vport on it and a static route to it."""
    doms = []
    for n, name in enumerate(domains):
        net = f"10.{n}.1"
        doms.append({"name": name, "static_routes": [{"prefix": f"192.168.{n}.0/24", "next_hop": f"{net}.11"}],
                     "subnets": [{"name": f"{name}-net", "cidr": f"{net}.0/24", "gateway": f"{net}.1",
                                  "vports": [{"name": f"vm-{name}", "mac": f"02:00:00:00:{n:02x}:01",
                                              "ips": [f"{net}.11"], "binding": {"flavour": "kvm"}}]}]})
    return {"tenants": [{"name": "acme", "domains": doms}]}


def commit(state, domains):
    plan = policydoc.plan(state.policy, document(domains), "t", ALLOCATOR, prune=True)
    seq = state.last_seq
    state.policy_committed(plan.policy, [Change(c.kind, c.id, c.op, c.body, seq + n)
                                         for n, c in enumerate(plan.changes, 1)])


def test_domains_that_go_leave_no_route_state_behind():
    state = State(pol.Policy())
    programmer = Programmer(state)
    state.vrs_update(vrs_snapshot("hv1", "10.251.0.1", ["vm-keep"] + [f"vm-d{n}" for n in range(5)]))
    commit(state, ["keep"])
    programmer.refresh(full=True)
    routes = programmer.live.routes
    for n in range(5):  # domains come (their vport bound on hv1) and go
        commit(state, ["keep", f"d{n}"])
        programmer.refresh()
        assert len(routes.ordered) == 2 and len(routes.host_eps) == 2 and len(routes.static_of) == 2
        commit(state, ["keep"])
        programmer.refresh()
        keep = state.policy.find("domain", "acme/keep")["id"]
        assert set(routes.ordered) == set(routes.host_eps) == set(routes.static_of) == set(routes.dom_keys) == {keep}, n
        assert set(routes.targets) == {state.policy.find("vport", "acme/keep-net/vm-keep")["id"]}
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps)
    assert programmer.view.fib == view.fib and list(programmer.view.fib) == [keep]


def test_a_domains_flows_are_compiled_without_reading_its_host_routes():
    """A domain's own flows come from its connected, static and EVPN routes: the live View hands those
    (``own_routes``) without building the whole FIB, whose host routes (20,000 at 10,000 vports) were copied and
    filtered in one stretch for them; the flows are those compiled from a fresh View."""
    from openflow.compiler import compile_owners
    from openflow.flows import Owner

    state = State(pol.Policy())
    programmer = Programmer(state)
    state.vrs_update(vrs_snapshot("hv1", "10.251.0.1", ["vm-a", "vm-b"]))
    commit(state, ["a", "b"])
    programmer.refresh(full=True)
    fib = programmer.view.fib
    built = []
    build = fib._build
    fib._build = lambda did: built.append(did) or build(did)
    for did in list(fib):
        fib.stale(did)  # as after a vport of the domain came or went
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps)
    for did in view.domains:
        owner = Owner("domain", did)
        assert compile_owners(programmer.view, "hv1", {owner}).flows.get(owner) == \
            compile_owners(view, "hv1", {owner}).flows.get(owner)
    assert built == []  # no FIB built for it
    assert programmer.view.fib == view.fib and built  # read for a listing, it is built (and equal)


def test_host_routes_that_come_are_put_in_order_together_when_read():
    """Host routes that come wait apart (``added``) and go into the ordered table together when it is read, in the
    FIB's order; one that goes before that leaves nothing (was: a SortedDict search and insert per route as it came,
    10,000 for 10,000 ports bound)."""
    from types import SimpleNamespace

    from controller.viewroutes import OrderedFib

    fib = OrderedFib()
    fib.set_own((), (), ())
    for n in (30, 10, 20, 40):
        fib.add_host(f"10.0.0.{n}", SimpleNamespace(vport_id=f"v{n}", subnet_id="s"))
    assert len(fib.routes) == 0 and len(fib.added) == 4  # nothing sorted in yet
    fib.remove_host("10.0.0.40", "v40")  # came and went before a read
    assert [r.prefix for r in fib.ordered()] == ["10.0.0.10/32", "10.0.0.20/32", "10.0.0.30/32"]
    assert not fib.added and not fib.local[(-32, 0x0A000028)] and fib.ties == 0
    fib.remove_host("10.0.0.20", "v20")
    fib.add_host("10.0.0.20", SimpleNamespace(vport_id="v20", subnet_id="s"))  # back before it was taken out
    assert [r.prefix for r in fib.ordered()] == ["10.0.0.10/32", "10.0.0.20/32", "10.0.0.30/32"]
    for n in (10, 20, 30):
        fib.remove_host(f"10.0.0.{n}", f"v{n}")
    assert fib.empty()


def test_a_host_routes_order_is_read_without_ipaddress(monkeypatch):
    """derive._ip_order (a host route's place in the FIB) reads a dotted quad in C, as ``ipaddress`` reads it; what
    that refuses still goes to ``ipaddress`` and is refused as before."""
    import ipaddress

    import pytest

    from controller import derive

    cases = ["10.0.0.1", "0.0.0.0", "255.255.255.255", "192.168.7.33"]
    expected = [int(ipaddress.IPv4Address(ip)) for ip in cases]
    derive._ip_order.cache_clear()

    def refuse(_ip):
        raise AssertionError("ipaddress used")
    with monkeypatch.context() as patched:
        patched.setattr(derive.ipaddress, "IPv4Address", refuse)
        assert [derive._ip_order(ip) for ip in cases] == expected
    for bad in ("010.0.0.1", "1.2.3", "1.2.3.4 ", "::1", "1.2.3.4\x00", "1.2.3.\udc80"):  # (the last two: inet_pton's
        with pytest.raises(ipaddress.AddressValueError):  # own ValueError before C, a NUL or a lone surrogate)
            derive._ip_order(bad)


def test_host_routes_coming_and_going_in_any_order_read_as_a_sorted_table():
    """Random host routes come and go (also twice, and back before a read) between reads and own-route updates: each
    read is the table sorted afresh, and the counts of routes per address are those of the routes held once settled."""
    import random
    from collections import Counter
    from types import SimpleNamespace

    from controller import derive as d
    from controller.viewroutes import OrderedFib

    rng = random.Random(36)
    for _ in range(200):
        fib, held, own = OrderedFib(), {}, []
        fib.set_own((), (), ())
        for _step in range(rng.randint(1, 40)):
            ip, vid = f"10.0.0.{rng.randint(1, 6)}", f"v{rng.randint(1, 3)}"
            key = (-32, d._ip_order(ip), 0, vid)
            roll = rng.random()
            if roll < 0.45 and key not in held:
                fib.add_host(ip, SimpleNamespace(vport_id=vid, subnet_id="s"))
                held[key] = f"{ip}/32"
            elif roll < 0.8 and key in held:
                fib.remove_host(ip, vid)
                del held[key]
            elif roll < 0.9:
                own = [d.Route(f"10.0.{rng.randint(0, 1)}.0/24", "connected", None, None, "s")][:rng.randint(0, 1)]
                fib.set_own(own, (), ())
            else:
                fib.settle()
            assert fib.empty() == (not held and not own)
        keys = sorted(held) + [(*d._route_order(r.prefix), 0, "") for r in own]
        wanted = Counter(key[:2] for key in keys)
        fib.settle()  # (a route that went is counted until taken out)
        assert fib.local == wanted and fib.ties == sum(1 for n in wanted.values() if n > 1)
        if not fib.ties:
            routes = {**{k: p for k, p in held.items()}, **{(*d._route_order(r.prefix), 0, ""): r.prefix for r in own}}
            assert [r.prefix for r in fib.ordered()] == [routes[k] for k in sorted(routes)]


def test_host_routes_removed_together_leave_what_removed_one_by_one_leaves():
    """``OrderedFib.remove_hosts`` of random pairs (an IP twice among them, routes settled, still ``added`` or both)
    leaves the table, its notes and counts as ``remove_host`` of each pair does."""
    import random
    from types import SimpleNamespace

    from controller.viewroutes import OrderedFib

    rng = random.Random(49)
    for _ in range(300):
        together, one_by_one = OrderedFib(), OrderedFib()
        for fib in (together, one_by_one):
            fib.set_own((), (), ())
        pairs = [(f"10.0.0.{rng.randint(1, 8)}", f"v{rng.randint(1, 3)}") for _ in range(rng.randint(1, 12))]
        settle = rng.random() < 0.5
        distinct = list(dict.fromkeys(pairs))
        later = rng.randint(0, len(distinct))  # (those after it come after the settle: some settled, some ``added``)
        for fib in (together, one_by_one):
            for ip, vid in distinct[:later]:
                fib.add_host(ip, SimpleNamespace(vport_id=vid, subnet_id="s"))
            if settle:
                fib.settle()
            for ip, vid in distinct[later:]:
                fib.add_host(ip, SimpleNamespace(vport_id=vid, subnet_id="s"))
        gone = rng.sample(pairs, rng.randint(1, len(pairs)))
        gone += rng.sample(gone, rng.randint(0, len(gone)))  # (some twice)
        together.remove_hosts([ip for ip, _ in gone], [vid for _, vid in gone])
        for ip, vid in gone:
            one_by_one.remove_host(ip, vid)
        for fib in (together, one_by_one):
            fib.state = (dict(fib.routes), set(fib.gone), dict(fib.added), dict(fib.local), fib.ties)
        assert together.state == one_by_one.state
