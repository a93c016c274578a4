"""Representative flows and groups covering Canopy's whole OpenFlow vocabulary (shapes the compiler makes).

Every flow is valid against the pipeline declaration; the encoder tests (unit) and the reconciler
tests (integration, real OVS) both use them.
"""

from openflow import pipeline as p
from openflow.flows import OFPVID_PRESENT, Group, Owner, flow

VM = Owner("vport", "vm-1")
ESXI_VM = Owner("vport", "vm-esxi")
SUBNET = Owner("subnet", "subnet-web")
DOMAIN = Owner("domain", "domain-prod")
SWITCH = Owner("switch", "hv1")
ACL, ACL_PORT = Owner("acl", "acl-db"), Owner("acl_port", "vm-1")
UPLINK, FIP, PAT = Owner("uplink", "hv1|net-public"), Owner("fip", "fip-1"), Owner("pat", "hv1|net-public")
UPLINK_PORT = 6
MAC, GW_MAC, REMOTE_MAC = "02:00:00:00:00:01", "02:aa:00:00:00:01", "02:00:00:00:00:09"
VNI, L3_VNI, VM_PORT, ESXI_PORT, TUNNEL_PORT = 5001, 7001, 3, 4, 1
FLOOD_GROUP = VNI << 1  # as compiler.group_ids numbers them
ESXI_KEY = ESXI_PORT << 12 | 10

FLOWS = (
    flow(p.CLASSIFY, 100, {"in_port": VM_PORT}, [("set", "reg6", VM_PORT), ("set", "reg5", VNI),
                                                  ("set", "reg4", L3_VNI), ("goto", p.PORT_SECURITY)], VM),
    flow(p.CLASSIFY, 100, {"in_port": ESXI_PORT, "vlan_vid": 10 | OFPVID_PRESENT},
         [("pop_vlan",), ("set", "reg6", ESXI_KEY), ("set", "reg5", VNI), ("goto", p.PORT_SECURITY)], ESXI_VM),
    flow(p.CLASSIFY, 100, {"in_port": TUNNEL_PORT, "tunnel_id": VNI},
         [("set", "reg5", VNI), ("set", "reg0", 2), ("goto", p.L2_LOOKUP)], SUBNET),
    flow(p.PORT_SECURITY, 100, {"reg6": VM_PORT, "eth_src": MAC, "eth_type": 0x800, "ipv4_src": "10.0.1.5"},
         [("goto", p.INGRESS_ACL)], VM),
    flow(p.PORT_SECURITY, 90, {"reg6": VM_PORT, "eth_src": MAC, "eth_type": 0x800, "ip_proto": 17,
                               "udp_src": 68, "udp_dst": 67}, [("goto", p.INGRESS_ACL)], VM),
    flow(p.PORT_SECURITY, 0, {}, [], SWITCH),
    flow(p.INGRESS_ACL, 0, {}, [("goto", p.SERVICES)], SWITCH),
    flow(p.SERVICES, 200, {"reg5": VNI, "eth_type": 0x806, "arp_op": 1, "arp_tpa": "10.0.1.1"},
         [("move", "eth_src", "eth_dst"), ("set", "eth_src", GW_MAC), ("set", "arp_op", 2),
          ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"), ("set", "arp_sha", GW_MAC),
          ("set", "arp_spa", "10.0.1.1"), ("output", "in_port")], SUBNET),
    flow(p.SERVICES, 150, {"reg6": VM_PORT, "eth_type": 0x800, "ip_proto": 17, "udp_dst": 67},
         [("meter", 0xCA000002), ("output", "controller")], VM),  # through the DHCP meter (openflow/meters.py)
    flow(p.SERVICES, 140, {"reg5": VNI, "eth_type": 0x800, "ip_proto": 1, "ipv4_dst": "10.0.1.1",
                           "icmpv4_type": 8},
         [("move", "eth_src", "eth_dst"), ("set", "eth_src", GW_MAC), ("move", "ipv4_src", "ipv4_dst"),
          ("set", "ipv4_src", "10.0.1.1"), ("set", "icmpv4_type", 0), ("set", "reg0", 1),
          ("move", "reg6", "reg7"), ("goto", p.EGRESS)], SUBNET),
    flow(p.SERVICES, 0, {}, [("goto", p.L2_LOOKUP)], SWITCH),
    flow(p.L2_LOOKUP, 100, {"reg5": VNI, "eth_dst": MAC}, [("set", "reg7", VM_PORT), ("goto", p.EGRESS_ACL)], VM),
    flow(p.L2_LOOKUP, 100, {"reg5": VNI, "eth_dst": REMOTE_MAC},
         [("set", "tunnel_id", VNI), ("set", "tun_ipv4_dst", "10.251.0.2"), ("output", TUNNEL_PORT)], VM),
    flow(p.L2_LOOKUP, 90, {"reg5": VNI, "eth_dst": "02:00:00:00:00:07"},
         [("set", "reg7", ESXI_KEY), ("resubmit", p.EGRESS_ACL)], ESXI_VM),
    flow(p.L2_LOOKUP, 40, {"reg5": VNI, "eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
         [("group", FLOOD_GROUP)], SUBNET),
    flow(p.L2_LOOKUP, 5, {"reg5": VNI}, [("group", FLOOD_GROUP)], SUBNET),
    # bare metal behind a hardware VTEP: answered back into the tunnel; routed out of the tunnel it came by
    flow(p.SERVICES, 115, {"reg0": (2, 2), "reg5": VNI, "eth_type": 0x806, "arp_op": 1, "arp_tpa": "10.0.1.1"},
         [("move", "eth_src", "eth_dst"), ("set", "eth_src", GW_MAC), ("set", "arp_op", 2),
          ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"), ("set", "arp_sha", GW_MAC),
          ("set", "arp_spa", "10.0.1.1"), ("move", "tun_ipv4_src", "tun_ipv4_dst"), ("output", "in_port")], SUBNET),
    flow(p.L2_LOOKUP, 101, {"reg0": (2, 2), "reg5": VNI, "eth_dst": GW_MAC},
         [("set", "reg0", 0), ("set", "in_port_nxm", 0), ("goto", p.L3_ROUTING)], SUBNET),
    flow(p.L3_ROUTING, 24, {"reg4": L3_VNI, "eth_type": 0x800, "ipv4_dst": ("10.0.2.0", "255.255.255.0")},
         [("set", "eth_src", GW_MAC), ("set", "eth_dst", REMOTE_MAC), ("dec_ttl",), ("set", "reg5", 5002),
          ("set", "reg7", 6), ("goto", p.EGRESS_ACL)], DOMAIN),
    flow(p.EGRESS_ACL, 0, {}, [("goto", p.EGRESS)], SWITCH),
    flow(p.EGRESS, 110, {"reg0": (1, 1), "reg7": VM_PORT, "in_port": VM_PORT}, [("output", "in_port")], VM),
    flow(p.EGRESS, 100, {"reg7": VM_PORT}, [("output", VM_PORT)], VM),
    flow(p.EGRESS, 100, {"reg7": ESXI_KEY},
         [("push_vlan",), ("set", "vlan_vid", 10 | OFPVID_PRESENT), ("output", ESXI_PORT)], ESXI_VM),
    # security policies (openflow/acl.py): conntrack in a zone from reg1, an ACL chain, a conjunctive rule,
    # a return-traffic check on ct_state and ct_mark, and the commit with the rule's mark
    flow(p.INGRESS_ACL, 100, {"reg6": VM_PORT, "eth_type": 0x800},
         [("set", "reg1", VM_PORT), ("set", "reg2", 0), ("ct", "reg1", p.INGRESS_ACL_CT, False, None)], ACL_PORT),
    flow(p.INGRESS_ACL_CT, 100, {"reg6": VM_PORT},
         [("set", "reg3", 7), ("resubmit", p.INGRESS_ACL_RULES), ("goto", p.INGRESS_ACL_VERDICT)], ACL_PORT),
    flow(p.EGRESS_ACL_RULES, 50000, {"reg3": 7, "reg2": (0, 0xC0000000), "eth_type": 0x800, "ip_proto": 6,
                                     "ipv4_src": "10.0.1.5"}, [("conjunction", 28673, 1, 2)], ACL),
    flow(p.EGRESS_ACL_RULES, 50000, {"reg3": 7, "reg2": (0, 0xC0000000), "eth_type": 0x800, "ip_proto": 6,
                                     "tcp_dst": (1024, 0xFC00)}, [("conjunction", 28673, 2, 2)], ACL),
    flow(p.EGRESS_ACL_RULES, 50000, {"conj_id": 28673}, [("set", "reg2", 0x80000123)], ACL),
    flow(p.INGRESS_ACL_RULES, 60000, {"reg3": 7, "reg2": (0, 0xC0000000), "ct_state": (0x2A, 0x2A),
                                      "ct_mark": 0x80000123}, [("set", "reg2", 0x40000123)], ACL),
    flow(p.INGRESS_ACL_VERDICT, 50, {"reg2": (0x80000000, 0xC0000000), "eth_type": 0x800},
         [("ct", "reg1", None, True, "reg2"), ("goto", p.SERVICES)], SWITCH),
    flow(p.EGRESS_ACL_CT, 200, {"ct_state": (0x30, 0x30)}, [("set", "reg2", 0xC0000000),
                                                             ("goto", p.EGRESS_ACL_VERDICT)], SWITCH),
    flow(p.EGRESS_ACL_RULES, 49999, {"reg3": 7, "reg2": (0, 0xC0000000), "eth_type": 0x800, "ip_proto": 1,
                                     "icmpv4_type": 3, "icmpv4_code": 1}, [("set", "reg2", 0xC0000124)], ACL),
    # external networks (openflow/external.py): an uplink on VLAN 30, a floating IP, port address translation
    flow(p.CLASSIFY, 100, {"in_port": UPLINK_PORT, "vlan_vid": 30 | OFPVID_PRESENT},
         [("pop_vlan",), ("goto", p.EXTERNAL_IN)], UPLINK),
    flow(p.EXTERNAL_IN, 100, {"in_port": UPLINK_PORT, "eth_type": 0x800, "ipv4_dst": "203.0.113.10"},
         [("set", "reg4", L3_VNI), ("goto", p.L3_ROUTING)], FIP),
    flow(p.L3_ROUTING, 132, {"reg4": L3_VNI, "eth_type": 0x800, "ipv4_dst": "203.0.113.10"},
         [("ct_nat", 0xFF01, p.EXTERNAL_DNAT, False, None)], FIP),
    flow(p.EXTERNAL_DNAT, 110, {"reg4": L3_VNI, "ct_state": (0x21, 0x21), "eth_type": 0x800,
                                "ipv4_dst": "203.0.113.10"},
         [("ct_nat", 0xFF01, None, True, ("dst", "10.0.1.5")), ("set", "ipv4_dst", "10.0.1.5"),
          ("set", "reg7", VM_PORT), ("goto", p.EGRESS_ACL)], FIP),
    flow(p.L3_ROUTING, 50, {"reg4": L3_VNI, "eth_type": 0x800, "ipv4_src": "10.0.1.5"},
         [("set", "ipv4_src", "203.0.113.10"), ("set", "eth_src", "02:cf:cb:00:71:0a"),
          ("set", "eth_dst", "02:00:00:ee:00:01"), ("dec_ttl",), ("push_vlan",),
          ("set", "vlan_vid", 30 | OFPVID_PRESENT), ("output", UPLINK_PORT)], FIP),
    flow(p.EXTERNAL_IN, 90, {"in_port": UPLINK_PORT, "eth_type": 0x800, "ipv4_dst": "203.0.113.2"},
         [("ct_nat", 0xFF01, p.EXTERNAL_NAT, False, None)], PAT),
    flow(p.EXTERNAL_NAT, 100, {"reg4": 0, "ct_state": (0x22, 0x22), "eth_type": 0x800, "ipv4_dst": ("10.0.1.0", "255.255.255.0")},
         [("set", "reg4", L3_VNI), ("goto", p.L3_ROUTING)], PAT),
    flow(p.L3_ROUTING, 40, {"reg4": L3_VNI, "eth_type": 0x800},
         [("ct_nat", 0xFF01, None, True, "203.0.113.2"), ("set", "eth_src", "02:ce:cb:00:71:02"),
          ("set", "eth_dst", "02:00:00:ee:00:01"), ("dec_ttl",), ("output", UPLINK_PORT)], PAT),
)

GROUPS = (
    Group(FLOOD_GROUP, ((("set", "reg7", VM_PORT), ("resubmit", p.EGRESS_ACL)),
                        (("set", "reg7", ESXI_KEY), ("resubmit", p.EGRESS_ACL)),
                        (("set", "tunnel_id", VNI), ("set", "tun_ipv4_dst", "10.251.0.2"),
                         ("output", TUNNEL_PORT))), SUBNET),
)
