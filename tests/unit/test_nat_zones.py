"""NAT zones per domain and switch (controller/extnet.py ``nat_zones``): never two domains of a switch in one,
the same whatever order the domains came in (a restarted or standby controller computes the same), never a
vport's security zone; and the compiled flows of floating IPs of two domains on one switch translate in two
zones, port address translation in its own."""

import random
import zlib
from types import SimpleNamespace

from controller import extnet
from controller.zones import ZONE_LIMIT, allocate_zones
from openflow import external
from openflow.flows import Owner


def test_domains_of_a_switch_never_share_a_zone_and_the_zones_are_a_function_of_the_set():
    rng = random.Random(16)
    vnis = rng.sample(range(1, 1 << 24), 254)
    zones = extnet.nat_zones(vnis)
    assert len(set(zones.values())) == 254  # the range is full, no collision
    assert all(extnet.NAT_ZONE_FIRST <= z <= 0xFFFF for z in zones.values())
    shuffled = list(vnis)
    rng.shuffle(shuffled)
    assert extnet.nat_zones(shuffled) == zones  # stable: restart, HA takeover
    assert extnet.nat_zones(vnis[:1]) == extnet.nat_zones(vnis[:1])


def test_two_domains_whose_hashes_collide_get_two_zones():
    first = 5000
    target = extnet.nat_zones([first])[first]
    other = next(v for v in range(first + 1, first + 100000) if extnet.nat_zones([v])[v] == target)
    both = extnet.nat_zones([first, other])
    assert both[first] == target and both[other] != target


def test_beyond_the_range_domains_share_the_translation_zone_and_nothing_raises():
    zones = extnet.nat_zones(range(1, 301))
    assert len({z for z in zones.values() if z != extnet.SHARED_NAT_ZONE}) == 254
    assert sum(z == extnet.SHARED_NAT_ZONE for z in zones.values()) == 300 - 254


def test_nat_zones_are_disjoint_from_security_zones():
    assert extnet.SHARED_NAT_ZONE >= ZONE_LIMIT and extnet.NAT_ZONE_FIRST > extnet.SHARED_NAT_ZONE
    keys = list(range(1, 0xFF00, 7)) + [(ofport << 12) | vlan for ofport in range(16, 400, 13) for vlan in (5, 77)]
    security = set(allocate_zones(keys).values())
    assert max(security) < ZONE_LIMIT
    assert not security & (set(extnet.nat_zones(range(1, 400)).values()) | {external.PAT_ZONE})


def test_security_zones_are_what_they_were():
    """allocate_zones now shares its probing with NAT zones: trunk vports keep the zones the former code gave
    them (an upgraded controller cuts no connection)."""
    rng = random.Random(7)
    for _ in range(20):
        keys = rng.sample(range(1, 300), 30) + [(rng.randrange(16, 4096) << 12) | rng.randrange(1, 4095)
                                                for _ in range(30)]
        assert allocate_zones(keys) == _former_allocate_zones(keys)


def _former_allocate_zones(keys):
    zones = {k: k for k in keys if 0 < k < ZONE_LIMIT}
    taken, span = set(zones.values()), ZONE_LIMIT - 1
    for key in sorted(k for k in keys if not 0 < k < ZONE_LIMIT):
        zone = 1 + zlib.crc32(key.to_bytes(8, "big")) % span
        while zone in taken:
            zone = 1 + zone % span
        zones[key] = zone
        taken.add(zone)
    return zones


def info(fid, vni, address):
    return extnet.FloatingInfo(fid, address, extnet.floating_mac(address), "10.0.1.5", "hv1", vni, "n1", 50, None,
                               "02:00:00:ee:00:01", ("10.0.1.0/24",), f"d{vni}", "02:00:00:00:00:05", vni + 1, 10,
                               "02:00:00:00:aa:01")


def ext_with(*infos):
    ext = extnet.ExternalView()
    for f in infos:
        ext.set_floating(f.id, f)
    return ext


def zones_in(flows):
    return {a[1] for f in flows for a in f.actions if a[0] == "ct_nat"}


def test_floating_ips_of_two_domains_on_one_switch_translate_in_their_domains_zones():
    a, b = info("fa", 1001, "203.0.113.21"), info("fb", 2002, "203.0.113.22")
    ext = ext_with(a, b)
    view, sw = SimpleNamespace(external=ext), SimpleNamespace(session="hv1")
    za = zones_in(external.COMPILERS["fip"](view, sw, Owner("fip", "fa"))[0])
    zb = zones_in(external.COMPILERS["fip"](view, sw, Owner("fip", "fb"))[0])
    assert za == {ext.zones["hv1"][1001]} and zb == {ext.zones["hv1"][2002]} and za != zb
    assert not (za | zb) & {external.PAT_ZONE}
    commits = [f for f in external.COMPILERS["fip"](view, sw, Owner("fip", "fa"))[0]
               if any(x[0] == "ct_nat" and x[3] for x in f.actions)]
    assert len(commits) == 2  # inbound and outbound: the connection counters' flows, in the domain's zone


def test_a_floating_ip_whose_zone_moves_is_compiled_again():
    """Another domain arriving on the switch may take a floating IP's zone: that floating IP's flows are
    reached although nothing of its own changed."""
    first = 5000
    target = extnet.nat_zones([first])[first]
    low = next(v for v in range(1, first) if extnet.nat_zones([v])[v] == target)  # takes it: lower VNI
    a = info("fa", first, "203.0.113.21")
    old = ext_with(a)
    new = ext_with(a, info("fb", low, "203.0.113.22"))
    assert new.zone_of(a) != old.zone_of(a)
    reached = external.reached(old, new)
    assert reached[Owner("fip", "fa")] == {"hv1"} and Owner("fip", "fb") in reached


def test_the_zones_follow_the_floating_ips_of_the_switch():
    a, b = info("fa", 1001, "203.0.113.21"), info("fb", 2002, "203.0.113.22")
    ext = ext_with(a, b)
    ext.set_floating("fb", None)
    assert ext.zones == {"hv1": extnet.nat_zones([1001])}
    ext.set_floating("fa", None)
    assert ext.zones == {}
