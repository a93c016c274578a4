"""The punt meters' open ends of stop 46 (openflow/meters.py, docs/vrs.md "Packets to the controller"): OpenFlow's
controller meter caps what all of a switch's punts send to the controller together (its rate from
``vrs.punt_meters.switch``), kept by the reconciler like any meter but named by no flow, so a switch refusing it keeps
its ports' meters; and a trunk's VLAN vports (ESXi vNICs) each have a DHCP meter of their own."""

from __future__ import annotations

import logging
import struct

from controller import settings
from openflow import meters
from openflow.compiler import compile_switch
from tests.unit.pipeline_case import build_view
from tests.unit.test_punt_meters import DHCP3, OFPT_METER_MOD, PLAIN, PUNT, MeterSwitch, held_for, synced

CAP = meters.CONTROLLER


def test_the_controller_meter_is_added_once_with_the_settings_rate_and_modified_when_it_differs(tmp_path):
    switch = MeterSwitch(5)
    rec = synced(switch, [PUNT, PLAIN])
    assert switch.cap == meters.DEFAULT_RATES["switch"] == (50, 50) and switch.cap_log == ["meter_add"]
    assert switch.meters == {DHCP3: meters.DEFAULT_RATES["dhcp"]} and switch.violations == []
    assert rec.status()["meters"] == {"supported": True, "desired": 2, "installed": 2, "rejected": 0, "warning": None}

    again = MeterSwitch(5, held=held_for([PUNT]))  # a restart: read back equal, nothing sent
    again.cap, again.flows = (50, 50), {PUNT.cookie: DHCP3}
    synced(again, [PUNT])
    assert again.cap_log == [] and again.log == [("flow_add", PUNT.cookie)]  # (the flows: none of Canopy's read back)

    path = tmp_path / "canopy.yaml"
    path.write_text("vrs:\n  punt_meters:\n    switch: {rate: 25, burst: 40}\n")
    rates = dict(settings.load(str(path)).punt_meters)
    assert rates["switch"] == (25, 40) and rates["dhcp"] == (10, 20)
    synced(again, [PUNT], meter_rates=rates)
    assert again.cap == (25, 40) and again.cap_log == ["meter_modify"]


class CapRefusingSwitch(MeterSwitch):
    """A switch with meters that refuses OpenFlow's controller meter (Open vSwitch before 2.8 knew no such id)."""

    def _apply(self, message: bytes):
        refused = message[1] == OFPT_METER_MOD and struct.unpack_from("!I", message, 12)[0] == CAP
        self.refuse_meters = refused
        try:
            super()._apply(message)
        finally:
            self.refuse_meters = False


def test_a_switch_refusing_the_controller_meter_keeps_its_ports_meters_and_is_not_asked_again(caplog):
    switch = CapRefusingSwitch(4)
    with caplog.at_level(logging.WARNING, logger="test.punt_meters"):
        rec = synced(switch, [PUNT, PLAIN])
        rec.set_desired([PUNT])
        while rec._sync():
            pass
    assert switch.cap is None and rec.meter_support is True and switch.flows == {PUNT.cookie: DHCP3}
    assert switch.meters == {DHCP3: meters.DEFAULT_RATES["dhcp"]} and switch.violations == []
    assert rec.status()["meters"]["rejected"] == 1 and rec.status()["meters"]["warning"] is None
    refused = [r for r in caplog.records if "rejected meter add" in r.getMessage()]
    assert len(refused) == 1 and "meter=4294967294" in refused[0].getMessage()  # once: not sent again


def test_each_vlan_vport_of_a_trunk_has_a_dhcp_meter_of_its_own():
    """hv1's trunk0 (ofport 4) carries esx1 (VLAN 101) and esx2 (102): each one's DHCP punt (it matches the vport's
    key, ofport << 12 | VLAN) goes through a meter of its own, so one vNIC's flood leaves the other's DHCP alone."""
    policy, view = build_view()
    names = {vport["id"]: vport["name"] for vport in policy.all("vport")}
    flows = compile_switch(view, "s1").all_flows()
    punts = {names[f.owner.id]: f.actions[0][1] for f in flows if ("output", "controller") in f.actions
             and f.owner.kind == "vport"}
    assert punts["esx1"] == meters.VLAN_DHCP + (4 << 12 | 101) and punts["esx2"] == meters.VLAN_DHCP + (4 << 12 | 102)
    assert punts["web1"] == meters.PORT_DHCP + 1 and len(set(punts.values())) == len(punts)
    for mid in (punts["esx1"], punts["esx2"]):
        assert mid in meters.METER_IDS and meters.kind_of(mid) == "dhcp" and meters.port_of(mid) == 4
    assert meters.meter_id("dhcp", 0xFEFF, 0xFFF) == 0xDFEFFFFF and meters.kind_of(0xDFEFFFFF + 1) == "?"
    assert meters.meter_id("activation", 4, 101) == meters.PORT_ACTIVATION + 4  # a standby port: the port's
    assert CAP in meters.METER_IDS and meters.kind_of(CAP) == "switch" and meters.port_of(CAP) is None
    assert meters.VLAN_DHCP not in meters.METER_IDS and meters.VLAN_DHCP + 1 in meters.METER_IDS
