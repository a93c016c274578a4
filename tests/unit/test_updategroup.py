"""EVPN NLRIs gathered for few UPDATEs (bgp/updategroup.py; ExaBGP's side: tests/unit/test_exabgp_ext_commands.py):
a next hop's announcements out ``per_update`` at a time, the rest at a flush, sorted by the Update's key."""

from __future__ import annotations

from bgp.updategroup import UpdateGroup


def test_announcements_leave_per_next_hop_at_the_cap_and_the_rest_at_a_flush_in_order():
    group, attributes = UpdateGroup(3, lambda nlri: nlri), object()
    out = [group.announced(n, attributes, "192.0.2.1" if n % 2 else "192.0.2.2") for n in (9, 8, 7, 6, 5)]
    assert out == [None, None, None, None, [9, 7, 5]]  # the third of 192.0.2.1's
    group.withdrawn(4, attributes)
    group.withdrawn(1, attributes)
    assert group.attributes is attributes
    assert group.flush() == ([1, 4, 6, 8], attributes)  # withdrawals and 192.0.2.2's, sorted by the key
    assert group.flush() is None and group.attributes is None  # emptied
