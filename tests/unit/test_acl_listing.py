"""GET /v1/acls says where each ACL applies (controller/security.py ``applied``). It walked and sorted every vport
once per ACL, a ref made for each, all in the listing's first stretch (LIST_CHUNK ACL views between two ticks: 100
ACLs over 10,000 vports, seconds); now the vports are walked once for the whole listing (``Reach``), only the vports
an ACL reaches are sorted, and the answer is what each ACL's own ``applied`` says. Counted: the vport refs made."""

from __future__ import annotations

from controller import security

from .helpers import Controller

ACLS, VPORTS = 10, 40


def controller_with_acls(tmp_path):
    """ACLS ACLs and VPORTS vports: vport i has ACL i % ACLS directly and is in group i % 3; ACL 0 also applies
    to group 0 and ACL 1 to groups 1 and 2 (a vport reached both ways is listed once)."""
    ports = [{"name": f"v{i}", "mac": "02:00:00:00:%02x:%02x" % (i // 256, i % 256), "ips": [f"10.0.1.{i + 2}"],
              "binding": {"flavour": "kvm"}, "acls": [f"a{i % ACLS}"], "policy_groups": [f"g{i % 3}"]}
             for i in range(VPORTS)]
    acls = [{"name": f"a{i}", "policy_groups": {0: ["g0"], 1: ["g1", "g2"]}.get(i, [])} for i in range(ACLS)]
    doc = {"tenants": [{"name": "acme", "policy_groups": [{"name": f"g{i}"} for i in range(3)], "acls": acls,
                        "domains": [{"name": "prod", "subnets": [
                            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": ports}]}]}]}
    ctl = Controller(tmp_path)
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    return ctl


def test_an_acl_listing_walks_the_vports_once_not_once_per_acl(tmp_path, monkeypatch):
    ctl = controller_with_acls(tmp_path)
    try:
        policy = ctl.state.policy
        alone = {a["id"]: security.applied(policy, a, ctl.state.locations) for a in policy.all("acl")}
        made = []
        ref = type(policy).ref
        monkeypatch.setattr(type(policy), "ref", lambda self, kind, obj: (made.append(kind), ref(self, kind, obj))[1])
        status, listing = ctl.call("GET", "/v1/acls")
        assert status == 200 and listing["count"] == ACLS
        for view in listing["items"]:
            assert view["applied"] == alone[view["id"]]  # the same as the ACL's own answer
        reached = sum(view["applied"]["count"] for view in listing["items"])
        assert reached == sum(a["count"] for a in alone.values()) > VPORTS  # some through groups
        assert made.count("vport") == reached  # each vport an ACL reaches, once: not every vport for every ACL
    finally:
        ctl.close()
