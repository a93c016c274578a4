"""The ``canopy`` command.

    canopy run [--config FILE] [--accept-store]  start the controller (ryu-manager with Canopy's apps and REST)
    canopy check FILE...                      validate policy documents offline; errors name file and line
    canopy apply FILE [--prune] [--dry-run]   apply a policy document to a running controller over REST
    canopy status                             what a running controller says about itself
    canopy backup FILE [--config FILE]        copy the store (consistent while the controller runs)
    canopy restore FILE [--config FILE]       make a backup the store (the controller must be stopped)

``run`` refuses a store that is missing, empty, damaged, another one or older than the last change this data
directory held (controller/storeguard.py), with one line and exit status EXIT_STORE; ``--accept-store``
takes it as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request

from controller import __version__, policydoc, storeguard, yamldoc
from controller import policy as pol
from controller import settings as settings_mod
from controller.model import PolicyError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_STORE = 0, 1, 2, 3, 4


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return args.func(args)


def _parser():
    p = argparse.ArgumentParser(prog="canopy", description="Canopy SDN controller")
    p.add_argument("--version", action="version", version=f"canopy {__version__}")
    sub = p.add_subparsers()

    run = sub.add_parser("run", help="start the controller")
    run.add_argument("--config", help="settings YAML (default: built-in defaults, see config/canopy.yaml)")
    run.add_argument("--accept-store", action="store_true",
                     help="start with the store as it is even if it looks empty, damaged or older than the last "
                     "change this data directory held (docs/store.md)")
    run.set_defaults(func=cmd_run)

    for name, func, doc in (("backup", cmd_backup, "copy the store to a new file (safe while running)"),
                            ("restore", cmd_restore, "make a backup the store (stop the controller first)")):
        cmd = sub.add_parser(name, help=doc)
        cmd.add_argument("file")
        cmd.add_argument("--config", help="controller settings, to find the data directory")
        cmd.set_defaults(func=func)

    check = sub.add_parser("check", help="validate policy documents offline")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_check)

    for name, func, doc in (("apply", cmd_apply, "apply a policy document through the REST API"),
                            ("status", cmd_status, "show a running controller's status")):
        cmd = sub.add_parser(name, help=doc)
        if name == "apply":
            cmd.add_argument("file")
            cmd.add_argument("--prune", action="store_true",
                             help="delete objects an earlier apply of this source created that the file no longer has")
            cmd.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
            cmd.add_argument("--source", help="name of the managed set (default: the document's 'source' key, "
                             "else the file name)")
        cmd.add_argument("--url", default=os.environ.get("CANOPY_URL", "http://127.0.0.1:8080"),
                         help="controller REST base URL (env CANOPY_URL)")
        cmd.add_argument("--token", default=os.environ.get("CANOPY_TOKEN"),
                         help="bearer token (env CANOPY_TOKEN; default: read from the data directory)")
        cmd.add_argument("--config", help="controller settings, to find the data directory's token file")
        cmd.set_defaults(func=func)
    return p


# ---------------------------------------------------------------------------------------------- run

def cmd_run(args) -> int:
    from controller import logs, runtime

    try:
        settings = settings_mod.with_token(settings_mod.load(args.config))
    except (settings_mod.SettingsError, yamldoc.DocError) as exc:
        print(f"canopy: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        held = storeguard.lock(settings.data_dir)  # kept open (held) while this process runs
        accepted = storeguard.verify(settings.data_dir, accept=args.accept_store)
    except (storeguard.StoreRefused, OSError) as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_STORE
    logs.setup(settings.log_level)
    if accepted:
        import logging

        logging.getLogger("canopy.store").warning("%s", accepted)
    runtime.SETTINGS = settings
    runtime.DATA_LOCK = held
    from controller.ryu_compat import run_manager

    argv = ["--ofp-listen-host", settings.openflow_listen, "--ofp-tcp-listen-port", str(settings.openflow_port),
            "--wsapi-host", settings.rest_listen, "--wsapi-port", str(settings.rest_port),
            "--config-file", os.devnull, "controller.app"]
    if settings.log_level == "debug":
        argv.insert(0, "--verbose")
    return run_manager(argv) or EXIT_OK


# ------------------------------------------------------------------------------------- backup/restore

def _data_dir(args):
    return settings_mod.load(args.config).data_dir


def cmd_backup(args) -> int:
    try:
        facts = storeguard.backup(_data_dir(args), args.file)
    except (settings_mod.SettingsError, yamldoc.DocError, storeguard.StoreRefused, OSError) as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_STORE
    print(f"{args.file}: backup of the store up to change {facts.seq}")
    return EXIT_OK


def cmd_restore(args) -> int:
    try:
        facts, kept = storeguard.restore(_data_dir(args), args.file)
    except (settings_mod.SettingsError, yamldoc.DocError, storeguard.StoreRefused, OSError) as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_STORE
    print(f"restored the store up to change {facts.seq} from {args.file}"
          + (f"; the store it replaced is kept as {kept}" if kept else ""))
    return EXIT_OK


# -------------------------------------------------------------------------------------------- check

def cmd_check(args) -> int:
    """Validate the files together, as if applied in order to an empty controller."""
    candidate = pol.Policy()
    defaults = settings_mod.defaults()
    failed = False
    total = []
    for path in args.files:
        try:
            doc = yamldoc.load_file(path)
            result = policydoc.plan(candidate, doc.data, os.path.basename(path),
                                    pol.Allocator({}, defaults.asn, defaults.vni_range))
        except yamldoc.DocError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        except PolicyError as exc:
            _print_problems(doc, exc.problems)
            failed = True
            continue
        candidate = result.policy
        total.append(f"{path}: ok")
    if failed:
        return EXIT_INVALID
    counts = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in candidate.counts().items() if n)
    print("\n".join(total) + f"\n{counts or 'nothing'} in {len(args.files)} file(s)")
    return EXIT_OK


def _print_problems(doc, problems):
    for p in problems:
        place = doc.where(p.field) if doc else ""
        what = p.field if p.kind == "document" else f"{p.kind} {p.ref!r}: {_leaf(p.field)}"
        print(f"{place}: {what}: {p.reason}", file=sys.stderr)


def _leaf(path):
    """The field name inside its object: "tenants[0].domains[1].cidr" -> "cidr"."""
    for marker in ("vports[", "subnets[", "domains[", "acls[", "tenants[", "vtep_bindings["):
        i = path.rfind(marker)
        if i >= 0:
            rest = path[path.index("]", i) + 1:]
            return rest.lstrip(".") or "(object)"
    return path


# -------------------------------------------------------------------------------------- apply/status

def cmd_apply(args) -> int:
    try:
        doc = yamldoc.load_file(args.file)
    except yamldoc.DocError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    source = args.source or (doc.data.get("source") if isinstance(doc.data, dict) else None) \
        or os.path.basename(args.file)
    body = {"document": doc.data, "source": source, "prune": args.prune, "dry_run": args.dry_run}
    status, reply = _request(args, "POST", "/v1/apply", body)
    if status is None:
        return EXIT_UNREACHABLE
    if status != 200:
        err = (reply or {}).get("error", {})
        problems = err.get("errors")
        if problems:
            from controller.model import Problem

            _print_problems(doc, [Problem(p["kind"], p["ref"], p["field"] or "", p["reason"], p["code"])
                                  for p in problems])
        else:
            print(f"canopy: {status}: {err.get('message', reply)}", file=sys.stderr)
        return EXIT_INVALID
    changes = reply["changes"]
    verb = "would" if reply["dry_run"] else ""
    for c in changes:
        print(f"{verb + ' ' if verb else ''}{c['op']} {c['kind']} {c['ref']}")
    print(f"{args.file}: {len(changes)} change(s){' (dry run)' if reply['dry_run'] else ''}, "
          f"source {reply['source']!r}, seq {reply['seq']}")
    return EXIT_OK


def cmd_status(args) -> int:
    status, reply = _request(args, "GET", "/v1/status", None)
    if status is None:
        return EXIT_UNREACHABLE
    print(json.dumps(reply, indent=2, sort_keys=True))
    return EXIT_OK if status == 200 else EXIT_INVALID


def _token(args):
    if args.token:
        return args.token
    try:
        settings = settings_mod.load(args.config)
        if settings.rest_token:
            return settings.rest_token
        with open(settings.rest_token_file, encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, settings_mod.SettingsError, yamldoc.DocError):
        return None


def _request(args, method, path, body):
    """(status, json) from the controller, or (None, None) after printing why it could not be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(args.url.rstrip("/") + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    token = _token(args)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, OSError) as exc:
        print(f"canopy: cannot reach the controller at {args.url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return None, None


if __name__ == "__main__":
    sys.exit(main())
