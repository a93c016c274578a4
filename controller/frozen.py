"""A frozen dataclass built by the ten thousand at once, in one step.

``@dataclass(frozen=True)``'s own ``__init__`` sets each field with ``object.__setattr__`` (its ``__setattr__``
refuses): an Endpoint is 11 calls, and 10,000 ports bound at once build 10,000 locations, 20,000 endpoints and
10,000 host routes. ``one_step_init`` gives such a class an ``__init__`` with the same parameters and defaults that
sets the instance's ``__dict__`` whole in one call; the instances are the same (fields, equality, hash, repr,
``dataclasses.replace``, pickling, a ``cached_property`` filled later). Not the same in memory: the dict set whole is
the instance's own, not CPython's inline values sharing the class's keys (an Endpoint: ~530 bytes, not ~180; 10,000
ports bound: ~14 MB more for their 40,000 endpoints, locations and host routes), and a field read goes through it
(a little slower than an inline one).
"""

from __future__ import annotations

import dataclasses


def one_step_init(cls):
    """Class decorator, above ``@dataclass(frozen=True)``. Refused (TypeError) for what the one-step ``__init__``
    would get wrong: a ``default_factory``, a field left out of ``__init__`` or keyword-only, ``__post_init__``,
    ``__slots__``."""
    fields = dataclasses.fields(cls)
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen or hasattr(cls, "__post_init__") \
            or "__slots__" in vars(cls) or any(not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING
                                               for f in fields):
        raise TypeError(f"{cls.__name__}: one_step_init takes a frozen dataclass of plain fields only")
    names = [f.name for f in fields]
    params = ", ".join(f.name if f.default is dataclasses.MISSING else f"{f.name}=_default_{f.name}" for f in fields)
    namespace = {"_set": object.__setattr__, **{f"_default_{f.name}": f.default for f in fields
                                                if f.default is not dataclasses.MISSING}}
    body = ", ".join(f"{name!r}: {name}" for name in names)
    exec(f"def __init__(self, {params}):\n    _set(self, '__dict__', {{{body}}})\n", namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = f"{cls.__name__}({', '.join(names)}), set in one step (controller/frozen.py)."
    cls.__init__ = init
    return cls


class cached_attribute:  # noqa: N801 (used as a decorator, like functools.cached_property)
    """``functools.cached_property`` without its lock: Python 3.11's takes an RLock on every first read (dropped in
    3.12: it serialised every instance of the class), ~30 Python bytecodes around the function; 10,000 new endpoints'
    owners and 10,000 new ports' external_ids were each read once so. The value is computed from the instance's frozen
    fields, so two threads computing it at once get equal values: no lock is needed."""

    def __init__(self, func):
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)  # read from the instance's dict from now on
        return value
