"""ExaBGP (through bgp.exabgp_ext) against a real GoBGP over loopback: EVPN both ways."""

import os
import pwd
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bgp.received import from_exabgp_json
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute, to_batch_command, to_command
from tests.harness.process import spawn, stop
from tests.harness.wait import wait_until
from tests.integration.gobgp import AVAILABLE, GoBGPNeighbor, start_gobgpd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AVAILABLE, reason="gobgpd/gobgp not installed"),
]
REPO = Path(__file__).resolve().parents[2]
GOBGP_IP, EXABGP_IP = "127.0.0.61", "127.0.0.62"

API_SCRIPT = """
import os, sys, time, select
commands, received = sys.argv[1], sys.argv[2]
done = 0
with open(received, "a") as out:
    while True:
        if select.select([0], [], [], 0.1)[0]:
            data = os.read(0, 65536)  # all that is there: readline() would leave lines in its buffer unseen by select
            if not data:
                break
            out.write(data.decode()); out.flush()
        lines = open(commands).read().splitlines() if os.path.exists(commands) else []
        for line in lines[done:]:
            sys.stdout.write(line + "\\n"); sys.stdout.flush()
        done = len(lines)
"""

TYPE2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
                   next_hop="192.0.2.1", route_targets=("65000:5001",), router_mac="02:00:00:00:00:01")
TYPE3 = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
TYPE5 = IpPrefixRoute(rd="65000:100", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                      route_targets=("65000:9001",), router_mac="02:00:00:00:00:01")


@pytest.fixture
def peers(tmp_path):
    gobgpd = start_gobgpd(tmp_path / "gobgpd", GOBGP_IP, 65001, (GoBGPNeighbor(EXABGP_IP, 65000),))
    (tmp_path / "api.py").write_text(API_SCRIPT)
    commands, received = tmp_path / "commands", tmp_path / "received"
    (tmp_path / "exabgp.conf").write_text(f"""
process canopy {{
    run {sys.executable} {tmp_path / 'api.py'} {commands} {received};
    encoder json;
}}
neighbor {GOBGP_IP} {{
    router-id {EXABGP_IP};
    local-address {EXABGP_IP};
    local-as 65000;
    peer-as 65001;
    connect {gobgpd.port};
    family {{ l2vpn evpn; }}
    api {{ processes [ canopy ]; receive {{ parsed; update; }} }}
}}
""")
    env = dict(exabgp_daemon_user=pwd.getpwuid(os.getuid()).pw_name, exabgp_daemon_drop="false",
               exabgp_tcp_bind="", exabgp_log_destination=str(tmp_path / "exa.log"), PYTHONPATH=str(REPO))
    exabgp = spawn("exabgp", [sys.executable, "-m", "bgp.exabgp_ext", str(tmp_path / "exabgp.conf")],
                   tmp_path / "exabgp.out", env=env)
    try:
        yield gobgpd, commands, received, tmp_path
    finally:
        stop([exabgp])
        gobgpd.stop()


def send(commands, *lines):
    with open(commands, "a") as out:
        out.write("".join(line + "\n" for line in lines))


def test_exabgp_announces_to_gobgp_and_receives_from_it(peers):
    gobgp, commands, received, tmp = peers
    wait_until(lambda: gobgp.established(EXABGP_IP), timeout=30, what="BGP session")
    send(commands, *(to_command(r, "announce") for r in (TYPE2, TYPE3, TYPE5)))
    table = wait_until(lambda: (t := gobgp.rib()) and len(t) == 3 and t, timeout=30, what="3 EVPN routes in GoBGP")
    paths = {path["nlri"]["type"]: path for paths in table.values() for path in paths}
    assert paths[2]["nlri"]["value"]["labels"] == [5001, 9001]
    assert paths[5]["nlri"]["value"]["label"] == 9001
    for kind in (2, 3, 5):
        communities = next(a["value"] for a in paths[kind]["attrs"] if a["type"] == 16)
        assert {"type": 3, "subtype": 12, "tunnel_type": 8} in communities
        assert any(c.get("subtype") == 2 and c.get("value", "").startswith("65000:") for c in communities)
        mp = next(a for a in paths[kind]["attrs"] if a["type"] == 14)
        assert mp["nexthop"] == "192.0.2.1"
        assert not any(a["type"] == 3 for a in paths[kind]["attrs"])
    assert {"type": 6, "subtype": 3, "mac": "02:00:00:00:00:01"} in next(
        a["value"] for a in paths[2]["attrs"] if a["type"] == 16)
    pmsi = next(a for a in paths[3]["attrs"] if a["type"] == 22)
    assert (pmsi["tunnel-type"], pmsi["label"], pmsi["tunnel-id"]) == (6, 5001, "192.0.2.1")

    send(commands, to_command(TYPE3, "withdraw"))
    wait_until(lambda: len(gobgp.rib()) == 2, timeout=30, what="type 3 withdrawn from GoBGP")

    gobgp.add_evpn("macadv", "52:54:00:aa:bb:cc", "10.1.0.9", "etag", "0", "label", "5001", "rd", "65001:100",
                   "rt", "65001:5001", "encap", "vxlan", "nexthop", "192.0.2.2")

    def decoded():
        lines = received.read_text().splitlines() if received.exists() else []
        return [item for line in lines for item in from_exabgp_json(line)]

    [(action, route)] = wait_until(decoded, timeout=30, what="GoBGP route decoded from ExaBGP output")
    assert action == "announce"
    assert (route.mac, route.ip, route.l2_vni, route.rd) == ("52:54:00:aa:bb:cc", "10.1.0.9", 5001, "65001:100")
    assert route.route_targets == ("65001:5001",) and route.next_hop == "192.0.2.2"


def test_every_line_form_reaches_its_command_and_a_bad_line_is_an_error_exabgp_survives(peers):
    """The evpn commands as ExaBGP accepts them with the extension's dispatch by their head (bgp/exabgp_ext_api.py):
    with or without a ``neighbor <ip>`` prefix, with selectors or several neighbours (ExaBGP's own dispatch), and
    malformed or for no known neighbour: each answered once ("done" or "error"), the good ones in GoBGP, ExaBGP
    still there for the next line (review37b)."""
    gobgp, commands, received, tmp = peers
    wait_until(lambda: gobgp.established(EXABGP_IP), timeout=30, what="BGP session")
    other = replace(TYPE2, mac="52:54:00:12:34:57", ip="10.1.0.6")
    good = [to_command(TYPE2, "announce", neighbor=GOBGP_IP),
            f"neighbor {GOBGP_IP} local-ip {EXABGP_IP} " + to_command(TYPE3, "announce"),
            f"neighbor 127.0.0.99, neighbor {GOBGP_IP} " + to_command(TYPE5, "announce"),
            "neighbor * " + to_batch_command([other], "announce"), to_batch_command([other, TYPE3], "withdraw")]
    bad = ["announce evpn {", "withdraw evpn nonsense", "announce evpn", to_command(TYPE2, "announce", "127.0.0.99"),
           to_command(TYPE2, "announce").replace('"65000:100"', '"show neighbor x"', 1)]
    send(commands, *bad[:3], *good, *bad[3:])

    def acks():
        lines = received.read_text().splitlines() if received.exists() else []
        return [line for line in lines if line in ("done", "error")]

    answered = wait_until(lambda: len(a := acks()) >= len(good) + len(bad) and a, timeout=30, what="every answer")
    assert sorted(answered) == sorted(["done"] * len(good) + ["error"] * len(bad))

    def types():
        return sorted(path["nlri"]["type"] for paths in gobgp.rib().values() for path in paths)

    wait_until(lambda: types() == [2, 5], timeout=30, what="the type 2 and 5 announced, in GoBGP, and only them")
    send(commands, to_command(TYPE5, "withdraw", neighbor=GOBGP_IP))
    wait_until(lambda: types() == [2], timeout=30, what="type 5 withdrawn: ExaBGP still takes commands")
