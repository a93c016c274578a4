"""``controller.remote.RemoteIndex`` dropping a removed MAC: found by identity first (the import's delta hands back the
object it added), but a removed MAC equal to the one held and another object (a delta rebuilt, an HA replica's copy)
is dropped all the same, with or without a second location for its (subnet, MAC); one that only shares the key is not.
"""

from __future__ import annotations

import dataclasses

from controller.remote import RemoteDelta, RemoteIndex, RemoteMac, RemoteTable

A = RemoteMac("s1", "02:aa:00:00:00:01", ("10.0.1.5",), "10.99.0.1", "02:dd:00:00:00:01", 5001, 3, "p1")
B = RemoteMac("s1", "02:aa:00:00:00:01", (), "10.99.0.2")  # A's MAC at a second VTEP (a table given whole)
C = RemoteMac("s1", "02:aa:00:00:00:02", (), "10.99.0.1")


def _removed(index: RemoteIndex, mac: RemoteMac) -> RemoteIndex:
    index.apply(RemoteDelta(removed=frozenset({mac})))
    return index


def test_a_removed_mac_equal_to_the_held_one_but_another_object_is_dropped():
    twin = dataclasses.replace(A)
    assert twin == A and twin is not A
    assert _removed(RemoteIndex(RemoteTable(macs=(A, C))), twin).subnet_macs("s1") == (C,)
    assert _removed(RemoteIndex(RemoteTable(macs=(A,))), twin).subnets() == set()


def test_with_two_locations_a_removed_mac_equal_to_the_held_one_gives_its_place_to_the_other():
    for removed in (A, dataclasses.replace(A)):  # the very object, and an equal copy
        index = RemoteIndex(RemoteTable(macs=(A, B, C)))
        assert index.several() and index.macs_at("s1", A.mac) == (A, B)
        _removed(index, removed)
        assert index.macs_at("s1", A.mac) == (B,) and not index.several(), removed is A
        assert index.mac("s1", C.mac) is C


def test_a_removed_mac_that_only_shares_the_key_leaves_the_held_one():
    other = dataclasses.replace(A, seq=4)  # the same (subnet, MAC), another location: not the one held
    assert _removed(RemoteIndex(RemoteTable(macs=(A, C))), other).mac("s1", A.mac) is A
    index = _removed(RemoteIndex(RemoteTable(macs=(A, B, C))), other)
    assert index.macs_at("s1", A.mac) == (A, B)
