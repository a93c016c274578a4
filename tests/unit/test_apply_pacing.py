"""A commit of many vports gives the event loop turns (issue 15 item 1): State reads what it reaches pausing every so many
changes before it takes it; and pausing changes nothing it produces. Counted, never timed."""

from controller.journal import Journal
from controller.pacer import Pacer
from controller.state import State
from controller.store import Change
from tests.unit.test_compiler import base_state, snapshot

HV1 = ("hv1", "10.251.0.1")


# ---------------------------------------------------------------------------------------------- the commit

def with_vports(state: State, names, iface=lambda name: name):
    """State's policy with a vport per name added to acme/web (bound where a port shows iface-id ``iface(name)``),
    and the change list of that commit."""
    policy = state.policy.copy()
    subnet = policy.find("subnet", "acme/web")
    for name in names:
        policy.put("vport", {"id": name, "source": None, "subnet_id": subnet["id"], "name": name, "description": "",
                             "mac": "02:00:00:00:0b:01", "ips": [], "port_security": True, "acls": [],
                             "binding": {"flavour": "kvm", "iface_id": iface(name), "port_name": None,
                                         "vnic_id": None, "host": None, "trunk_port": None, "vlan": None}})
    seq = state.last_seq
    return policy, [Change("vport", name, "put", None, seq=seq + 1 + i) for i, name in enumerate(names)]


NAMES = [f"n{i}" for i in range(600)]


def ported_state() -> tuple[State, Journal]:
    """The 600 vports' ports on hv1 before the vports exist (an apply burst binds them all)."""
    state = base_state()
    journal = state.journal()
    state.vrs_update(snapshot(*HV1, [(name, 10 + i) for i, name in enumerate(NAMES)]))
    journal.take()
    return state, journal


def what(state: State, journal: Journal):
    index = state.index
    return (state.policy, state.last_seq, dict(index.key_of), dict(index.vport_at), dict(state.locations),
            {name: getattr(journal, name) for name in journal.__dataclass_fields__})


def test_a_commit_is_read_with_pauses_before_state_takes_it_and_ends_the_same():
    plain, plain_journal = ported_state()
    policy, changes = with_vports(plain, NAMES)
    plain.policy_committed(policy, changes)

    state, journal = ported_state()
    old = state.policy
    seen = []
    state.pacer = Pacer(lambda: seen.append((state.policy is old, any(n in state.index.key_of for n in NAMES),
                                             len(state.locations))), every=50)
    state.policy_committed(policy, changes)
    reading = [s for s in seen if s[0]]
    assert len(reading) == len(NAMES) // 50  # a pause every 50 changes read, State untouched meanwhile
    assert all(not indexed and located == 0 for _, indexed, located in reading)
    assert what(state, journal) == what(plain, plain_journal)
    assert len(state.locations) == len(NAMES)


def test_a_commit_landing_while_another_is_read_is_taken_as_if_it_came_first():
    """Commits are one at a time in the service, but State does not rely on it: a commit landing in the pauses of
    another's reads is taken first, and the one read is read again against the policy it left."""
    def other(state):  # n0 bound to another port, committed on its own
        return with_vports(state, ["n0"], iface=lambda name: "elsewhere")

    first, first_journal = ported_state()
    policy, changes = with_vports(first, NAMES)
    first.policy_committed(*other(first))
    first.policy_committed(policy, changes)

    state, journal = ported_state()
    pending = [lambda: state.policy_committed(*other(state))]
    state.pacer = Pacer(lambda: pending and pending.pop()(), every=50)
    state.policy_committed(policy, changes)
    assert not pending  # it did land in a pause
    assert what(state, journal) == what(first, first_journal)
    assert ("kvm", "elsewhere") not in state.index.vport_at
