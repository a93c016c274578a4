"""Fuzz the REST API of a real controller with schemathesis; the pass condition is 0 server errors (5xx).

    .venv/bin/python -m tests.fuzz.rest [--max-examples N] [--seed N] [--phases ...] [--keep DIR]

Starts ``canopy run`` on loopback with its own data directory and free ports (no root, no switches),
points ``st run`` at its ``/v1/openapi.json`` with the write token (every phase: examples, coverage,
fuzzing and the stateful phase, which chains create -> get/patch/delete through the links in the
document), then counts what the server answered from schemathesis' HAR report. Exit status 0 only when
schemathesis found nothing, at least MIN_REQUESTS requests were made, no answer was a 5xx and the
controller is still alive and never logged an internal error. Needs the ``fuzz`` extra
(``pip install -e .[fuzz]``, done by .ci/setup).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from tests.harness import process
from tests.harness.ports import reserved_port
from tests.harness.wait import wait_until

TOKEN = "fuzz-token"
MIN_REQUESTS = 2000
CHECKS = "not_a_server_error"


def free_port() -> int:
    """A port kept for the controller's listener until it binds it (tests/harness/ports.py)."""
    return reserved_port()


def settings(data_dir: Path) -> dict:
    return {"data_dir": str(data_dir), "log_level": "info",
            "openflow": {"listen": "127.0.0.1", "port": free_port()},
            "ovsdb": {"listen": "127.0.0.1", "port": free_port()},
            "rest": {"listen": "127.0.0.1", "port": free_port(), "token": TOKEN}}


def start_controller(workdir: Path) -> tuple[process.Child, str]:
    conf = settings(workdir / "data")
    config = workdir / "canopy.yaml"
    config.write_text(json.dumps(conf))  # JSON is YAML
    canopy = str(Path(sys.executable).with_name("canopy"))
    child = process.spawn("canopy", [canopy, "run", "--config", str(config)], workdir / "canopy.log")
    base = f"http://127.0.0.1:{conf['rest']['port']}"

    def ready():
        if not child.alive():
            raise RuntimeError(f"the controller exited:\n{process.log_tail(child.log_path)}")
        try:
            with urllib.request.urlopen(base + "/v1/status", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_until(ready, 30, 0.2, "the controller's /v1/status")
    return child, base


def run_schemathesis(base: str, workdir: Path, args) -> int:
    st = str(Path(sys.executable).with_name("st"))
    argv = [st, "run", base + "/v1/openapi.json", "--checks", CHECKS, "--phases", args.phases,
            "--max-examples", str(args.max_examples), "--header", f"Authorization: Bearer {TOKEN}",
            "--workers", "1", "--request-timeout", "30", "--suppress-health-check", "all",
            "--report", "har", "--report-dir", str(workdir / "report"), "--output-truncate", "true"]
    if args.max_time:
        argv += ["--max-time", str(args.max_time)]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, check=False, cwd=workdir, env={**os.environ, "NO_COLOR": "1"}).returncode


def answers(workdir: Path) -> list[tuple[str, str, int]]:
    """(method, url, status) of every request in the HAR report."""
    out = []
    for har in (workdir / "report").glob("har-*.json"):
        for entry in json.loads(har.read_text())["log"]["entries"]:
            out.append((entry["request"]["method"], entry["request"]["url"], entry["response"]["status"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.rest", description=__doc__.split("\n")[0])
    parser.add_argument("--max-examples", type=int, default=60, help="test cases per operation and phase")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--max-time", type=int, help="seconds for the whole run; fuzzing and stateful repeat "
                        "until it is spent")
    parser.add_argument("--seed", type=int, help="schemathesis seed (default: random, printed in its output)")
    parser.add_argument("--min-requests", type=int, default=MIN_REQUESTS)
    parser.add_argument("--keep", help="leave the data directory, log and report in this directory")
    args = parser.parse_args(argv)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="canopy-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    child, base = start_controller(workdir)
    try:
        code = run_schemathesis(base, workdir, args)
        alive = child.alive()
    finally:
        process.stop([child], 10)
    seen = answers(workdir)
    errors = [a for a in seen if a[2] >= 500]
    internal = [line for line in (workdir / "canopy.log").read_text(errors="replace").splitlines()
                if "internal error" in line or "Traceback" in line]
    print(f"fuzz: {len(seen)} requests, {len(errors)} server errors, schemathesis exit {code}, "
          f"controller {'alive' if alive else 'DEAD'}, {len(internal)} internal-error log lines")
    for method, url, status in errors[:20]:
        print(f"  {status} {method} {url}")
    for line in internal[:20]:
        print("  log:", line)
    ok = code == 0 and not errors and alive and not internal and len(seen) >= args.min_requests
    if not args.keep:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"fuzz: kept {workdir} (data, canopy.log, report/)")
    print("fuzz: PASS" if ok else "fuzz: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
