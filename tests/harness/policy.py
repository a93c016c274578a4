"""Policy written over REST by integration tests (the controller's own API, as an operator would)."""

from __future__ import annotations


def create(api, collection: str, body: dict) -> dict:
    """POST ``body`` to /v1/``collection``; the created object (anything but 201 fails the test)."""
    resp = api.post(f"/v1/{collection}", body)
    assert resp.status == 201, resp.text
    return resp.json


def acme_web(api, **fields) -> tuple[dict, dict, dict]:
    """Tenant acme, its domain prod and the subnet web (10.0.1.0/24, gateway 10.0.1.1; ``fields``: more of the
    subnet's, such as ``dhcp``): (tenant, domain, subnet)."""
    tenant = create(api, "tenants", {"name": "acme"})
    domain = create(api, "domains", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = create(api, "subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                     "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", **fields})
    return tenant, domain, subnet
