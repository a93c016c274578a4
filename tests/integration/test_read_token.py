"""The read-only REST token against a real controller: every kind of write with it is refused 403 over HTTP and
changes nothing, reads (the watch endpoint and /metrics included) are answered, and SIGHUP replaces it
(docs/rest.md#authentication). The metadata agent reads with it in tests/integration/test_metadata.py."""

from __future__ import annotations

import signal

import pytest
import yaml

from tests.harness.policy import acme_web
from tests.harness.wait import wait_until

pytestmark = pytest.mark.integration

READ, NEXT = "first-read-token", "second-read-token"


def state(api, token):
    """What a refused write must leave as it was: the change log's end, every tenant and subnet, the log level."""
    return (api.get("/v1/status", token=token).json["seq"], api.get("/v1/tenants", token=token).json,
            api.get("/v1/subnets", token=token).json, api.get("/v1/log-level", token=token).json)


def test_writes_with_the_read_token_are_refused_403_changing_nothing_and_sighup_replaces_it(lab):
    token_file = lab.workdir / "read-token"
    token_file.write_text(READ + "\n")
    token_file.chmod(0o600)
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"rest": {"open_reads": "never", "read_token_file": str(token_file)}})
    api = canopy.api
    tenant, _, subnet = acme_web(api)
    before = state(api, READ)
    writes = [("POST", "/v1/tenants", {"name": "other"}), ("PATCH", f"/v1/tenants/{tenant['id']}", {"name": "x"}),
              ("DELETE", f"/v1/subnets/{subnet['id']}", None), ("PUT", "/v1/log-level", {"level": "debug"}),
              ("POST", "/v1/apply", {"document": {"tenants": []}, "source": "x", "prune": True})]
    for method, path, body in writes:
        refused = api.request(method, path, body, token=READ)
        assert refused.status == 403, (method, path, refused.text)
        error = refused.json["error"]
        assert error["code"] == "read_only_token" and "rest.read_token" in error["reason"], (method, path, error)
    assert state(api, READ) == before
    assert api.get("/v1/tenants").status == 401  # open_reads never: a read needs one of the tokens
    # the token before the path: without one, nothing tells which paths exist or which methods they take
    assert [api.request(m, p, token=t).status for m, p, t in (("GET", "/v1/nothing", None),
            ("DELETE", "/v1/status", None), ("GET", "/v1/nothing", READ), ("DELETE", "/v1/status", READ))] == [
        401, 401, 404, 405]
    assert api.get("/ui/").status == 200  # the page's static files (no data) need no token
    assert api.get("/v1/watch/vports", token=READ).status == 200
    assert api.get("/metrics", token=READ).status == 200
    assert api.request("DELETE", f"/v1/subnets/{subnet['id']}").status == 200  # the write token writes

    token_file.write_text(NEXT + "\n")
    canopy.child.send(signal.SIGHUP)
    wait_until(lambda: "read-only REST token replaced" in canopy.log_path.read_text(), timeout=10,
               what="the reload logged")
    assert api.get("/v1/tenants", token=READ).status == 401
    assert api.get("/v1/tenants", token=NEXT).status == 200
    assert api.post("/v1/tenants", {"name": "other"}, token=NEXT).status == 403

    config = yaml.safe_load(canopy.config_path.read_text())
    del config["rest"]["read_token_file"]
    config["rest"]["read_token"] = config["rest"]["token"]  # the write token as the read-only one: refused
    canopy.config_path.write_text(yaml.safe_dump(config))
    canopy.child.send(signal.SIGHUP)
    wait_until(lambda: "not reloaded" in canopy.log_path.read_text(), timeout=10, what="the reload refused")
    assert "rest.read_token: is the write token" in canopy.log_path.read_text()
    assert api.get("/v1/tenants", token=NEXT).status == 200 and canopy.alive()
