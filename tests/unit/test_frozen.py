"""controller/frozen.py: a frozen dataclass given a one-step ``__init__`` builds the same instances as its own, with
the same parameters and defaults, and stays frozen; what it would get wrong is refused."""

from __future__ import annotations

import dataclasses
import pickle
from functools import cached_property

import pytest

from controller.binding import Location
from controller.derive import Endpoint, Route
from controller.frozen import one_step_init


@dataclasses.dataclass(frozen=True)
class Plain:
    a: str
    b: int = 7
    c: tuple = ()

    @cached_property
    def twice(self):
        return self.b * 2


@one_step_init
@dataclasses.dataclass(frozen=True)
class Quick:
    a: str
    b: int = 7
    c: tuple = ()

    @cached_property
    def twice(self):
        return self.b * 2


def test_the_same_instances_as_the_dataclass_own_init():
    plain, quick = Plain, Quick
    for args, kwargs in ((("x",), {}), (("x", 3), {}), ((), {"a": "x", "c": (1,)}), (("x",), {"c": (2,), "b": 0})):
        one, other = plain(*args, **kwargs), quick(*args, **kwargs)
        assert vars(one) == vars(other) and repr(one).replace("Plain", "Quick") == repr(other)
        assert hash(dataclasses.astuple(one)) == hash(dataclasses.astuple(other))
    made = quick("x", 4)
    assert made.twice == 8 and made == quick("x", 4) and hash(made) == hash(quick("x", 4))
    assert dataclasses.replace(made, b=5) == quick("x", 5) and pickle.loads(pickle.dumps(made)) == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.a = "y"
    with pytest.raises(TypeError):
        quick()  # a field without a default is needed, as before
    with pytest.raises(TypeError):
        quick("x", d=1)


def test_the_hot_classes_use_it_and_keep_their_fields():
    for cls in (Endpoint, Route, Location):
        assert "one step" in cls.__init__.__doc__
    ep = Endpoint("v", "s", "02:00:00:00:00:01", ("10.0.0.1",), True, "hv1", 5, None)
    assert (ep.kind, ep.router_mac, ep.l3_vni, ep.key) == ("vport", None, 0, 5)


def test_what_it_would_get_wrong_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Factory:
        a: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self):
            pass

    @dataclasses.dataclass(frozen=True)
    class Hidden:
        a: int = dataclasses.field(default=0, init=False)

    @dataclasses.dataclass
    class Thawed:
        a: int

    for cls in (Factory, Post, Hidden, Thawed):
        with pytest.raises(TypeError):
            one_step_init(cls)


def test_a_cached_attribute_is_computed_once_and_kept_on_the_instance():
    from controller.discovery import PortInfo
    from controller.frozen import cached_attribute

    calls = []

    @dataclasses.dataclass(frozen=True)
    class Holder:
        a: int

        @cached_attribute
        def double(self):
            calls.append(self.a)
            return self.a * 2

    one = Holder(3)
    assert (one.double, one.double, Holder(4).double) == (6, 6, 8) and calls == [3, 4]
    assert vars(one)["double"] == 6 and Holder.double.__doc__ is None and one == Holder(3)
    port = PortInfo(name="tap1", external_ids=(("iface-id", "vm1"),))
    assert port.ext("iface-id") == "vm1" and port.ext("vm-uuid") is None and port == PortInfo(
        name="tap1", external_ids=(("iface-id", "vm1"),))
    ep = Endpoint("v", "s", "02:00:00:00:00:01", (), True, "hv1", 5, None)
    assert ep.owner is ep.owner and ep.owner == ("vport", "v")


def test_a_hot_instance_with_its_cached_owner_copies_pickles_and_replaces_as_before():
    """An Endpoint whose owner was read: copied, deep-copied and pickled it is equal, hashes the same and keeps that
    owner; replaced, the new one's owner is its own (not the cached one carried over)."""
    import copy

    ep = Endpoint("v", "s", "02:00:00:00:00:01", ("10.0.0.1",), True, "hv1", 5, None)
    assert ep.owner == ("vport", "v")
    for made in (copy.copy(ep), copy.deepcopy(ep), pickle.loads(pickle.dumps(ep))):
        assert made == ep and hash(made) == hash(ep) and made.owner == ep.owner and vars(made) == vars(ep)
    other = dataclasses.replace(ep, vport_id="w")
    assert "owner" not in vars(other) and other.owner == ("vport", "w") and other != ep
    for cls, made in ((Location, Location("v", "hv1", "c", 1, "tap", 5, None, "kvm", None)),
                      (Route, Route("10.0.0.1/32", "host", None, "v", "s"))):
        assert pickle.loads(pickle.dumps(made)) == made == copy.copy(made) and isinstance(made, cls)
