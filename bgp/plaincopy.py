"""Shallow copies made cheaply of objects that keep all their state in their ``__dict__``: what ``copy.copy`` makes of
them, without its generic protocol (ExaBGP's EVPN NLRIs: a withdrawal's NLRI is its announcement's copied with
another action, bgp/exabgp_ext.py; the copy was most of what a withdrawal cost ExaBGP once its announcement's NLRI
existed, beyond ExaBGP's own RIB). Plain Python: nothing of ExaBGP here (STYLE rule 7)."""

from __future__ import annotations

import copy
import copyreg
from collections import deque
from itertools import repeat
from operator import attrgetter

_PLAIN: dict = {}  # class -> its objects keep all their state in their __dict__ (no slots, no copy protocol)
_COPY_PROTOCOL = ("__slots__", "__getstate__", "__setstate__", "__getnewargs__", "__getnewargs_ex__", "__copy__",
                  "__reduce_ex__", "__reduce__")  # what copy.copy would call or read instead of the object's __dict__
_DICT = attrgetter("__dict__")


def copied(obj):
    """A shallow copy of ``obj``: what ``copy.copy`` makes of it, by its ``__dict__`` where its class is ``plain``."""
    cls = type(obj)
    if not plain(cls):
        return copy.copy(obj)
    twin = cls.__new__(cls)
    twin.__dict__.update(obj.__dict__)
    return twin


def copies_with(objects: list, name: str, value) -> list | None:
    """``copied`` of each of ``objects`` with its attribute ``name`` set to ``value``, in C loops; None (nothing
    made) unless every one's class is ``plain`` and made by ``object.__new__``."""
    classes = set(map(type, objects))
    if not all(plain(cls) and cls.__new__ is object.__new__ for cls in classes):
        return None
    twins = list(map(object.__new__, map(type, objects)))
    deque(map(dict.update, map(_DICT, twins), map(_DICT, objects)), maxlen=0)
    deque(map(setattr, twins, repeat(name), repeat(value)), maxlen=0)
    return twins


def plain(cls) -> bool:
    """Whether objects of ``cls`` keep all their state in their ``__dict__`` (no slots, no copy protocol)."""
    found = _PLAIN.get(cls)
    if found is None:
        found = _PLAIN[cls] = cls not in copyreg.dispatch_table and not any(
            name in klass.__dict__ for klass in cls.__mro__[:-1] for name in _COPY_PROTOCOL)
    return found
