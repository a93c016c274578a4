"""ovsdb/jsonstream.py ``_stays_inside`` (a chunk's brackets counted by taking out their innermost pairs, in C) against
the walk bracket by bracket it stands in for: whenever it answers, every depth the walk passes through is above 0 and
at most MAX_DEPTH, and the depth it ends at is the walk's."""

import itertools
import random

from ovsdb.jsonstream import _STEP, MAX_DEPTH, _stays_inside


def _walk(brackets: str, depth: int) -> list[int]:
    return list(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=depth))


def test_its_answer_is_the_walks_whenever_it_gives_one():
    rng = random.Random(11)
    answered = 0
    for _ in range(20000):
        depth = rng.choice((1, 2, 3, 5, MAX_DEPTH - 3, MAX_DEPTH))
        n = rng.randrange(0, 40)
        brackets = "".join(rng.choice("[]{}" if rng.random() < 0.5 else "[{][}]") for _ in range(n))
        got = _stays_inside(brackets, depth)
        depths = _walk(brackets, depth)
        if got is not None:
            answered += 1
            assert min(depths) > 0 and max(depths) <= MAX_DEPTH and depths[-1] == depth + got, (brackets, depth)
    assert answered > 2000


def test_a_chunk_of_rows_is_counted_without_the_walk():
    """A big update's chunk: rows closed and opened, the table's object going on (the usual case it is for)."""
    brackets = "}}" + "{{}}" * 1000 + "{{"  # a row's ``"uuid":{"delete":null}``, its strings cut out: ``{}``
    assert _stays_inside(brackets, 4) == 0
    assert _stays_inside("]]]]", 4) is None  # the value ends (depth 0): the walk finds where
    assert _stays_inside("[" * 10, MAX_DEPTH - 5) is None  # deeper than MAX_DEPTH: the walk says where
