"""The topology page's data (controller/ui/architect.js ``tenantModel``), computed by the page's own code in a real
headless Chromium (Debian's, as the browser tests use) from REST-shaped data: a declared bare-metal server whose MAC
two hardware VTEPs report is shown on both, marked as a conflict (it was shown on the last VTEP only)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).resolve().parents[2] / "controller" / "ui" / "architect.js"
MAC = "02:00:00:00:0b:02"


def page_model(tmp_path, data: dict, tenant: str) -> dict:
    """``tenantModel(data, tenant)`` run by architect.js in headless Chromium: per subnet id, its endpoints (name,
    host, status, conflict, classes)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing (Debian package chromium, .ci/setup installs it)")
    probe = tmp_path / "model.html"
    probe.write_text(f"""<!doctype html><html><body><pre id="out">none</pre>
<script src="{PAGE.as_uri()}"></script>
<script>
const model = tenantModel({json.dumps(data)}, {json.dumps(tenant)});
const out = {{}};
for (const [sub, eps] of model.endpoints) out[sub] = eps.map((ep) => ({{name: ep.name, host: ep.host || null,
  status: ep.status, conflict: ep.conflict || null, classes: endpointClasses(ep)}}));
document.getElementById("out").textContent = JSON.stringify(out);
</script></body></html>""")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
    assert found and found.group(1) != "none", (done.stdout[-2000:], done.stderr[-2000:])
    return json.loads(html.unescape(found.group(1)))


def vtep(name: str, macs) -> dict:
    return {"name": name, "connected": True, "tunnel_ips": ["192.0.2.1"], "bindings": [],
            "local_macs": [{"mac": mac, "vni": 5001, "subnet": "acme/web", "ip": None, "locator": "192.0.2.1"}
                           for mac in macs]}


def data(vteps) -> dict:
    vport = {"id": "v-db9", "name": "db9", "subnet_id": "s-web", "mac": MAC.upper(), "ips": ["10.0.1.51"],
             "binding": {"flavour": "baremetal"}, "status": "bound", "location": None, "acls": []}
    return {"domains": {"items": [{"id": "d1", "tenant_id": "t1", "name": "prod", "l3_vni": 9001}]},
            "subnets": {"items": [{"id": "s-web", "tenant_id": "t1", "domain_id": "d1", "name": "web",
                                   "cidr": "10.0.1.0/24", "vni": 5001}]},
            "switches": {"items": []}, "vports": {"items": [vport]}, "vteps": {"items": vteps}}


def test_a_declared_server_two_vteps_report_is_shown_on_both_as_a_conflict(tmp_path):
    got = page_model(tmp_path, data([vtep("tor0", [MAC]), vtep("tor1", ["02:00:00:00:0b:01", MAC])]), "t1")
    endpoints = {ep["name"]: ep for ep in got["s-web"]}
    assert set(endpoints) == {"db9", "02:00:00:00:0b:01"}  # the declared one once, the undeclared MAC on its own
    db9 = endpoints["db9"]
    assert (db9["host"], db9["status"]) == ("tor0, tor1", "conflict")
    assert db9["conflict"] == "CONFLICT: 2 hardware VTEPs report its MAC" and "conflict" in db9["classes"].split()


def test_a_declared_server_one_vtep_reports_is_shown_there(tmp_path):
    got = page_model(tmp_path, data([vtep("tor0", []), vtep("tor1", [MAC, MAC])]), "t1")
    (db9,) = got["s-web"]
    assert (db9["host"], db9["status"], db9["conflict"]) == ("tor1", "learnt", None)
