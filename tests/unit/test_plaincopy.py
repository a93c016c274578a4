"""Shallow copies of plain objects (bgp/plaincopy.py, ExaBGP's NLRIs copied for a withdrawal in bgp/exabgp_ext.py):
what copy.copy makes, by the object's __dict__ only where copy.copy would do no more."""

from __future__ import annotations

import copy
import copyreg

from bgp import plaincopy


class Plain:
    def __init__(self, field):
        self.field, self.action = field, "announce"


class Restoring:
    def __setstate__(self, state):
        self.__dict__.update(state, restored=True)


class WithArgs:
    def __new__(cls, *args):
        self = object.__new__(cls)
        self.args = args
        return self

    def __getnewargs__(self):
        return ("kept",)


class Registered:
    pass


class OwnNew(Plain):
    def __new__(cls, *args):
        return object.__new__(cls)


def test_a_class_with_its_own_copy_protocol_is_copied_by_copy_copy(monkeypatch):
    """``copied`` copies an object's __dict__ only where copy.copy would do no more: a class with __setstate__,
    __getnewargs__ or a copyreg reducer is copied by copy.copy (review44w: __setstate__ and copyreg were missed)."""
    monkeypatch.setitem(copyreg.dispatch_table, Registered, lambda obj: (Registered, (), {"via": "copyreg"}))
    for cls in (Restoring, WithArgs, Registered):
        original = cls() if cls is not WithArgs else cls("kept")
        original.field = 1
        assert plaincopy.copied(original).__dict__ == copy.copy(original).__dict__, cls.__name__
        assert not plaincopy.plain(cls)
    original = Plain(1)
    twin = plaincopy.copied(original)
    assert plaincopy.plain(Plain) and twin is not original and type(twin) is Plain
    assert twin.__dict__ == copy.copy(original).__dict__


def test_a_batch_is_copied_with_an_attribute_set_only_when_every_class_is_plain():
    """``copies_with``: each object's copy, as ``copied`` makes it, with the attribute set, the originals unchanged;
    nothing (None) when one class is not plain or not made by ``object.__new__``."""
    originals = [Plain(n) for n in range(5)]
    twins = plaincopy.copies_with(originals, "action", "withdraw")
    assert [t.__dict__ for t in twins] == [{"field": n, "action": "withdraw"} for n in range(5)]
    assert all(type(t) is Plain and t is not o for t, o in zip(twins, originals))
    assert {o.action for o in originals} == {"announce"}
    assert plaincopy.copies_with([*originals, Restoring()], "action", "withdraw") is None
    assert plaincopy.copies_with([*originals, WithArgs("kept")], "action", "withdraw") is None
    assert plaincopy.plain(OwnNew) and plaincopy.copies_with([*originals, OwnNew(5)], "action", "withdraw") is None
    assert plaincopy.copies_with([], "action", "withdraw") == []
