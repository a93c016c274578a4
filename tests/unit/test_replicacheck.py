"""controller/replicacheck.py's refusal of an id that two kinds' objects share judges the state a batch leads to,
not each change on its way: an id freed by a delete may be another kind's in the same batch (in either order) or a
later one; only an id two objects hold once the batch is in is refused, naming the object, the field and why."""

import pytest

from controller.policy import Policy
from controller.replicacheck import InvalidReplica, checked_changes
from controller.store import Change

TENANT = {"id": "t1", "source": None, "name": "acme"}
DOMAIN = {"id": "x", "source": None, "name": "prod", "tenant_id": "t1"}
SUBNET = {"id": "x", "source": None, "name": "l2", "tenant_id": "t1"}  # an L2-only subnet: a "scope" as a domain


def with_domain() -> Policy:
    _, policy = checked_changes([Change("tenant", "t1", "put", TENANT, 1, 1, 1.0),
                                 Change("domain", "x", "put", DOMAIN, 2, 2, 2.0)], Policy())
    return policy


def delete_domain(seq):
    return Change("domain", "x", "delete", None, seq, seq, float(seq))


def put_subnet(seq):
    return Change("subnet", "x", "put", dict(SUBNET), seq, seq, float(seq))


@pytest.mark.parametrize("order", ["delete-first", "put-first"])
def test_an_id_a_batch_frees_may_be_another_kinds_in_the_same_batch(order):
    batch = [delete_domain(3), put_subnet(4)] if order == "delete-first" else [put_subnet(3), delete_domain(4)]
    _, policy = checked_changes(batch, with_domain())
    assert policy.get("domain", "x") is None and policy.get("subnet", "x")["name"] == "l2"


def test_an_id_a_batch_freed_may_be_another_kinds_in_a_later_batch():
    _, policy = checked_changes([delete_domain(3)], with_domain())
    _, policy = checked_changes([put_subnet(4)], policy)
    assert policy.get("subnet", "x")["name"] == "l2"


def test_an_id_held_by_two_kinds_once_the_batch_is_in_is_refused_and_the_policy_given_is_untouched():
    policy = with_domain()
    with pytest.raises(InvalidReplica, match=r"^subnet 'x': id: also the id of a domain \(an id names one object\)$"):
        checked_changes([put_subnet(3)], policy)
    assert policy.get("domain", "x") and policy.get("subnet", "x") is None
