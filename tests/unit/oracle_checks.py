"""The incremental oracle's comparisons (tests/unit/test_incremental_oracle.py): after a programming pass, what the
incremental path keeps (vport locations, desired flows and groups per owner, VTEP rows, FIBs, LiveView and State
indexes) equals what a from-scratch resolve, derive and compile of the same State gives."""

from __future__ import annotations

from dataclasses import replace

from controller import binding
from controller.derive import View, derive, vtep_desired
from controller.extnet import ExternalView
from controller.state import State
from controller.viewdelta import LiveView
from controller.viewroutes import LazyFib
from openflow import acl
from openflow.compiler import compile_switch
from openflow.floodlimits import FloodWatch
from tests.unit.oracle_world import World


def by_owner(desired):
    """owner -> flows with their cookies, and owner -> groups (an owner without flows is no owner)."""
    flows = {o: frozenset((f, f.cookie) for f in fs) for o, fs in desired.flows.items() if fs}
    groups = {o: gs for o, gs in desired.groups.items() if gs}
    return flows, groups


def check(world: World, where: str, read_fib: bool = True):
    """The incremental state equals one derived and compiled from scratch; ``read_fib``: False leaves the FIBs and
    the LiveView's indexes unread (a host route that went is taken out of a domain's FIB only when it is read:
    controller/viewroutes.py ``OrderedFib``), so that removals pile up over passes until a later check reads them."""
    state, prog = world.state, world.prog
    seen = state._seen
    found = binding.resolve(state.policy, state.vrs, state.flavour_of,
                            lambda session, port, vlan: seen.get((session, port, vlan), 0), state.activated)
    bound, mismatched = binding.partition(state.policy, found)
    assert state.locations == bound, where
    assert state.mismatched == mismatched, where
    standby = binding.standby_ports(state.policy, state.vrs, state.flavour_of, bound)
    assert state.standby == standby, f"{where}: {state.standby!r:.600} != {standby!r:.600}"  # a live migration's other ports (controller/state_activation.py)
    at = {session: {entry[0]: name for name, entry in ports.items()} for session, ports in standby.items()}
    assert state.standby_at == at, f"{where}: {state.standby_at!r:.600} != {at!r:.600}"  # the packet-in's index of them
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps, state.remote,
                  state.gateway_macs, standby)
    assert set(prog.desired) == set(view.switches), where
    floods = FloodWatch()  # (openflow/floodlimits.py: the subnets past a flood limit, from the full compile)
    for session in view.switches:
        whole = compile_switch(view, session)
        for owner in [o for o in whole.groups if o.kind == "subnet"]:
            floods.check(session, owner.id, whole.groups[owner])
        full, inc = by_owner(whole), by_owner(prog.desired[session])
        for part, name in ((0, "flows"), (1, "groups")):
            if inc[part] != full[part]:
                wrong = {o for o in set(inc[part]) | set(full[part]) if inc[part].get(o) != full[part].get(o)}
                raise AssertionError(f"{where}: {session}: {name} of {sorted(wrong, key=str)} differ")
    assert prog.floods.over == floods.over, f"{where}: {prog.floods.over} != {floods.over}"
    assert (prog.floods.sessions_of, prog.floods.subnets_on) == (floods.sessions_of, floods.subnets_on), where  # (REST's)
    check_vteps(state, prog, view, where)
    stale = {place for place, out in prog.live.places.items() if out != prog.live._where_of(place)}
    assert not stale, f"{where}: places kept by the pass that a presence change made untrue: {sorted(stale, key=str)[:3]}"
    if read_fib:
        assert prog.view.fib == view.fib, where
    assert prog.view.bm_gateways == view.bm_gateways, where
    assert prog.view.local == view.local == {eid: ep for eid, ep in view.endpoints.items() if ep.kind != "evpn"}, \
        where
    assert prog.view.external == view.external, where
    assert prog.view.security == view.security, where
    if read_fib:
        check_indexes(state, prog.live, where)
    stale = {o for o in prog.shared.flows if o.id not in (view.subnets if o.kind == "subnet" else view.domains
                                                        if o.kind == "domain" else view.endpoints)}
    assert not stale, f"{where}: flows kept for owners that went: {sorted(stale, key=str)[:5]}"
    check_state_indexes(state, where)
    for spec in view.security.acls.values():  # an ACL's flows are cached and patched rule by rule: build them anew
        fresh, _ = acl._build(spec, frozenset(), {})
        assert acl.acl_flows(spec) == fresh and {f.cookie for f in acl.acl_flows(spec)} == {f.cookie for f in fresh}, \
            f"{where}: ACL {spec.id}"


# per-pass notes of a LiveView (reset by every pass, bounded by what one pass reached) and its links to State
PASS_NOTES = {"state", "pacer", "live", "view", "r", "listing", "changed", "changed_sids", "presence", "on_before",
              "holders_changed", "tunnels", "local_changed", "switches_changed", "redo", "was_at", "tails", "bound_changed",
              "hw_vtep_subnets", "vtep_names", "acl_reach", "touched", "touched_ips", "_build", "_keys_changed",
              "recheck", "places"}


def indexes(obj):
    """Everything a LiveView keeps between passes (its indexes, its helpers' and its View's), as plain values: a
    Counter's zero counts and a defaultdict's empty entries stay visible (a Counter compares them as absent)."""
    if isinstance(obj, LazyFib):
        return {k: indexes(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {k: indexes(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [indexes(x) for x in obj]
    if type(obj).__module__.startswith("controller.") and hasattr(obj, "__dict__") and \
            not getattr(type(obj), "__dataclass_params__", None) or isinstance(obj, (View, ExternalView)):
        return {k: indexes(v) for k, v in vars(obj).items() if k not in PASS_NOTES}
    return obj


def differences(a, b, path=""):
    """Paths where two ``indexes`` differ (the first few)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=repr):
            if k not in a or k not in b:
                out.append(f"{path}[{k!r}] only in the {'incremental' if k in a else 'fresh'} one")
            elif a[k] != b[k]:
                out += differences(a[k], b[k], f"{path}[{k!r}]")
        return out[:8]
    return [f"{path}: {a!r} != {b!r}"]


def check_indexes(state, live, where: str):
    """The LiveView's indexes after any sequence of deltas equal those of one built from scratch on the same State:
    nothing is kept for a subnet, domain, vport or switch that went (a controller running for months with tenants
    coming and going does not grow)."""
    fresh = LiveView(state)
    fresh.build()
    fresh.view.fib.items()  # (read: a stale FIB is built)
    wrong = differences(indexes(live), indexes(fresh))
    assert not wrong, f"{where}: LiveView indexes differ from a fresh build: {wrong}"
    # the policed vports, their ACLs, keys and zones per switch (controller/zones.py ``Local``, kept by every pass;
    # ``view`` is a pass note above): equal to a fresh build's, nothing kept for a switch whose policed vports went
    wrong = differences(indexes(live.sec.view.local), indexes(fresh.sec.view.local))
    assert not wrong, f"{where}: policed vports per switch (Local) differ from a fresh build: {wrong}"


# (not ``ofport_hints``: ports the switch numbered before OVSDB, ended by the switch's port deletion, which a fresh
# State is not given)
STATE_INDEXES = ("index", "_seen", "_seen_ports", "tunnel_ports", "agent_ports", "_dpid_session", "_rank", "vrs_since",
                 "gateway_macs", "remote_index")


def keys_of(obj):
    """The keys a State index holds, nested (values aside: a fresh State numbers sightings and switches anew)."""
    if isinstance(obj, dict):
        return {k: keys_of(v) for k, v in obj.items()}
    if type(obj).__module__.startswith("controller.") and hasattr(obj, "__dict__") and \
            not getattr(type(obj), "__dataclass_params__", None):
        return {k: keys_of(v) for k, v in vars(obj).items() if not k.startswith("_table")}
    return True


def check_state_indexes(state, where: str):
    """State's own indexes (binding index, ports seen per switch, tunnel and agent ports, EVPN routes) hold what a
    State given the same inputs from scratch holds: nothing stays for a switch, port or vport that went."""
    fresh = State(state.policy, default_flavour=state.default_flavour, hosts=state.hosts)
    for snap in state.vrs.values():
        fresh.vrs_update(replace(snap, changed=None, changed_ports=None))
    for snap in state.vteps.values():
        fresh.vtep_update(replace(snap, changed=None))
    for (session, net_id), mac in state.gateway_macs.items():
        fresh.gateway_learned(session, net_id, mac)
    fresh.remote = state.remote
    wrong = differences(keys_of({n: getattr(state, n) for n in STATE_INDEXES}),
                        keys_of({n: getattr(fresh, n) for n in STATE_INDEXES}))
    assert not wrong, f"{where}: State's indexes differ from a fresh State's: {wrong}"


def check_vteps(state, prog, view, where: str):
    """Every hardware VTEP's rows (kept by delta: controller/viewvteps.py) equal ``vtep_desired`` over ``view``, derived
    from scratch; every VTEP bound or connected has rows."""
    names = {b["switch"] for b in state.policy.all("vtep_binding")} | {v.name for v in view.vteps.values()}
    assert names == set(prog.vteps.desired), f"{where}: VTEPs kept: {sorted(set(prog.vteps.desired) ^ names)}"
    for name, rows in prog.vteps.desired.items():
        assert rows == vtep_desired(view, state.policy, name), f"{where}: VTEP {name}'s rows differ"
