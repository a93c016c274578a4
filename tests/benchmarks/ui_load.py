"""Canopy Architect with many vports: load time, browser memory and live-update delay in headless Chromium.

    .venv/bin/python -m tests.benchmarks.ui_load [--vports 1000] [--subnets 10] [--runs 3]

Setup (tests.harness.lab): one controller in its namespace, policy of one tenant with ``--vports`` vports
spread over ``--subnets`` subnets of one domain (POST /v1/apply), and Debian's Chromium driven inside the
same namespace (tests.harness.browser). No switch is connected: the page's cost is the policy's size.

Per run, a fresh page load is timed from navigation start to the end of the first full draw (the page
records ``performance.now()`` then): every vport in the list and the diagram. Then: the JS heap in use
(``performance.memory``, Chromium's precise mode), DOM element count, and the delay from an API write (a new
vport) until the page shows it without a reload (the page polls /v1/status every 500 ms).

Baseline, in the same run: the same page with a tenant of 10 vports (so the figures separate the page's
fixed cost from what grows with vports), and the time the test process itself takes to read the ten REST
collections the page reads (what any client pays before drawing). Needs root, like the integration tests.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import time

from tests.benchmarks import health
from tests.harness.browser import Browser, browser_unavailable
from tests.harness.lab import Lab

COLLECTIONS = ("/v1/status", "/v1/tenants", "/v1/domains", "/v1/subnets", "/v1/vports", "/v1/acls",
               "/v1/switches", "/v1/vteps", "/v1/bgp/peers", "/v1/ha")
MEASURE = """({firstDraw: window.canopyArchitect.firstDrawMs, timing: window.canopyArchitect.timing,
  heap: performance.memory ? performance.memory.usedJSHeapSize : null,
  elements: document.getElementsByTagName('*').length,
  rows: document.querySelectorAll('#tree li').length,
  nodes: window.canopyArchitect.cy ? window.canopyArchitect.cy.nodes('.endpoint').length : 0})"""


def policy(tenant: str, vports: int, subnets: int, first_octet: int) -> dict:
    per = -(-vports // subnets)
    subs = []
    for s in range(subnets):
        net = ipaddress.IPv4Network(f"{first_octet}.{s}.0.0/20")
        hosts = net.hosts()
        next(hosts)  # the gateway
        count = min(per, vports - s * per)
        if count <= 0:
            break
        subs.append({"name": f"net{s}", "cidr": str(net), "gateway": str(net.network_address + 1), "vports": [
            {"name": f"{tenant}{s}-{i}", "mac": f"02:{first_octet:02x}:00:{s:02x}:{i >> 8:02x}:{i & 255:02x}",
             "ips": [str(next(hosts))], "binding": {"flavour": "kvm"}} for i in range(count)]})
    return {"tenants": [{"name": tenant, "domains": [{"name": "main", "subnets": subs}]}]}


def load_once(lab, ctl, api, tenant: str, expected: int) -> dict:
    with Browser(ctl.ns, lab.workdir / "browser.log", lab.record) as browser:
        browser.call("open", url=f"http://127.0.0.1:8080/ui/#tenant={tenant}", timeout=120)
        browser.call("wait_js", timeout=120, expr=f"document.querySelectorAll('#tree li').length >= {expected}"
                                                  " && window.canopyArchitect.firstDrawMs")
        figures = browser.call("js", expr=MEASURE)
        figures["live_ms"] = live_update_ms(browser, api, tenant)
        figures["after"] = browser.call("js", expr="window.canopyArchitect.timing")
    return figures


def live_update_ms(browser, api, tenant: str) -> float:
    tenant_id = api.get(f"/v1/tenants?name={tenant}").json["items"][0]["id"]
    subnet = api.get(f"/v1/subnets?name=net0&tenant_id={tenant_id}").json["items"][0]
    started = time.monotonic()
    created = api.post("/v1/vports", {"name": "probe", "subnet_id": subnet["id"], "mac": "02:ff:00:00:00:01",
                                      "binding": {"flavour": "kvm"}})
    assert created.status == 201, created.text
    browser.call("wait_js", timeout=30, expr="document.querySelector('#tree li[data-name=\"probe\"]') !== null")
    elapsed = (time.monotonic() - started) * 1000
    api.delete(f"/v1/vports/{created.json['id']}")
    return elapsed


def rest_read_ms(api) -> float:
    started = time.monotonic()
    for path in COLLECTIONS:
        assert api.get(path).status == 200, path
    return (time.monotonic() - started) * 1000


def main(argv=None) -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args.add_argument("--vports", type=int, default=1000)
    args.add_argument("--subnets", type=int, default=10)
    args.add_argument("--runs", type=int, default=3)
    opts = args.parse_args(argv)
    reason = browser_unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        for tenant, count, subnets, octet in (("small", 10, 1, 10), ("large", opts.vports, opts.subnets, 11)):
            reply = canopy.api.post("/v1/apply", {"document": policy(tenant, count, subnets, octet), "source": tenant})
            assert reply.status == 200, reply.text
        results = {"small": [], "large": []}
        rest = []
        for _ in range(opts.runs):
            rest.append(rest_read_ms(canopy.api))
            results["small"].append(load_once(lab, ctl, canopy.api, "small", 10))
            results["large"].append(load_once(lab, ctl, canopy.api, "large", opts.vports))
        print(f"Canopy Architect, {opts.runs} runs, median (min-max)")
        print(f"  REST read of the page's 10 collections ({opts.vports + 10} vports stored): "
              f"{_fmt(rest)} ms")
        for name, count in (("small", 10), ("large", opts.vports)):
            runs = results[name]
            assert all(r["rows"] == count and r["nodes"] == count for r in runs), runs
            print(f"  tenant with {count} vports: first draw {_fmt([r['firstDraw'] for r in runs])} ms, "
                  f"JS heap {_fmt([r['heap'] / 2**20 for r in runs], 1)} MiB, "
                  f"{runs[0]['elements']} DOM elements, live update {_fmt([r['live_ms'] for r in runs])} ms")
            print(f"    of a refresh: REST reads {_fmt([r['after']['readMs'] for r in runs])} ms, "
                  f"drawing {_fmt([r['after']['drawMs'] for r in runs])} ms")
        print("  " + health.lag_line(health.lag_from_status(canopy.api.get("/v1/status").json)))
    return 0


def _fmt(values, digits=0) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    sys.exit(main())
