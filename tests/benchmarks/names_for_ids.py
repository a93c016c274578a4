"""The CPU of one refused PATCH giving names where ids belong (`{"acls": ["a0", "a1", ...]}`), in-process (docs/
benchmarks.md "review40a").

    .venv/bin/python -m tests.benchmarks.names_for_ids [--code DIR] [--names N] [--acls K]

Applies one tenant with ``--acls`` ACLs (a0, a1, ...) and one vport with the ``--code`` checkout (before/after in
the same session), then PATCHes the vport's ``acls`` with ``--names`` of those names: refused 422, the first 20
entries naming the ACL that has that name and its id (then "and N more"). Prints the PATCH's CPU (this thread's ``time.thread_time()``: the
load matters little) and the problems it reported. The check runs in one stretch of the hub: what it costs is lag.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time


def controller_of(code):
    """(call(method, path, body) -> (status, reply), close) of a controller core of ``code`` (its modules only, not
    this checkout's tests/unit/helpers.py), on a temporary data directory."""
    import json

    from controller import settings as settings_mod
    from controller.core import build_core
    from controller.rest.api import Api, Request
    from controller.yamldoc import Doc

    assert code is None or sys.modules["controller"].__file__.startswith(str(pathlib.Path(code).resolve()))
    data_dir = tempfile.mkdtemp(prefix="names-for-ids-")
    settings = settings_mod.from_doc(Doc("<bench>", {"data_dir": data_dir, "rest": {"token": "bench-token"}}))
    store, state, service = build_core(settings)
    api = Api(service, state, settings)

    def call(method, path, body=None):
        headers = {"content-type": "application/json", "authorization": "Bearer bench-token"}
        resp = api.handle(Request(method, path, {}, headers, json.dumps(body).encode() if body else b"", "127.0.0.1"))
        return resp.status, json.loads(resp.encoded() or b"null")

    return call, store.close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", help="a checkout of Canopy to measure (default: this one)")
    parser.add_argument("--names", type=int, default=4_000)  # (a list holds at most 4,096: 10,000, the default until
    # stop 41, is now refused by its count, before any name is looked up: 1 problem, nothing of this measured)
    parser.add_argument("--acls", type=int, default=2_000)
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    call, close = controller_of(args.code)

    acls = [{"name": f"a{i}", "default_action": "deny", "rules": []} for i in range(args.acls)]
    vport = {"name": "v", "mac": "02:00:00:00:00:01", "binding": {"flavour": "kvm"}}
    doc = {"tenants": [{"name": "acme", "acls": acls, "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.0.0/16", "gateway": "10.0.0.1", "vports": [vport]}]}]}]}
    status, reply = call("POST", "/v1/apply", {"document": doc, "source": "bench"})
    assert status == 200, reply
    vid = call("GET", "/v1/vports")[1]["items"][0]["id"]
    body = {"acls": [f"a{i % args.acls}" for i in range(args.names)]}
    start = time.thread_time()
    status, reply = call("PATCH", f"/v1/vports/{vid}", body)
    cpu = time.thread_time() - start
    assert status == 422, reply
    print(f"{args.code or '.'}: {args.names} names, {args.acls} ACLs: PATCH {cpu * 1000:.0f} ms CPU, "
          f"{len(reply['error']['errors'])} problems")
    close()


if __name__ == "__main__":
    main()
