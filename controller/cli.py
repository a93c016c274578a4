"""The ``canopy`` command.

    canopy run [--config FILE] [--accept-store]  start the controller (ryu-manager with Canopy's apps and REST)
    canopy check FILE...                      validate policy documents offline; errors name file and line
    canopy check-settings FILE                validate a controller settings file offline
    canopy apply FILE|- [--prune] [--dry-run] [--adopt] [--wait]
                                              apply a policy document (- reads standard input) over REST
    canopy status [--json]                    what a running controller says about itself
    canopy backup FILE [--config FILE]        copy the store (consistent while the controller runs)
    canopy restore FILE [--config FILE]       make a backup the store (the controller must be stopped)
    canopy show [vport NAME] / canopy trace   what it holds, and a packet through a switch (controller/show.py)
    canopy metadata-agent --config FILE       on a hypervisor: answer its VMs' metadata requests (docs/metadata.md)
    canopy health [--config FILE]             exit 0 if the controller answers (the image's HEALTHCHECK: cli_health)

Exit codes (EXIT_*): 0 done; 1 invalid input, or the controller refused the request (also, quietly, when the
reader of standard output went away: ``canopy show | head``); 2 wrong command line or
invalid settings for ``run``; 3 the controller cannot be reached; 4 ``run`` cannot start (a port in use, an
address not on this host, an unusable data directory, a store that is empty, damaged or older than the last
change this data directory held (controller/storeguard.py): one log line names the setting or the store;
``backup`` and ``restore`` use 4 too); 5 ``apply --wait`` timed out before every switch held the apply's seq (or
they refused its flows: controller/cli_wait.py);
70 an essential part of a running controller stopped (controller.guard).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys

from controller import __version__, cli_health, cli_remote, policydoc, resttoken, show, storedisk, storeguard, yamldoc
from controller import policy as pol
from controller import settings as settings_mod
from controller.cli_remote import rest_url  # noqa: F401 (part of this module's interface: tests, docs)
from controller.model import PolicyError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_START, EXIT_TIMEOUT = 0, 1, 2, 3, 4, 5
EXIT_CODES = """exit codes: 0 done; 1 invalid input or refused by the controller (or the output's reader gone); 2
wrong command line or invalid settings; 3 controller unreachable; 4 run cannot start (port in use, address not on
this host, data_dir unusable, store refused: see docs/store.md), or backup/restore failed; 5 apply --wait timed out;
70 a running controller's essential part stopped"""
PROGRESS_EVERY = 2.0  # seconds between progress lines of a long apply


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "remote", False):
        problem = cli_remote.resolve(args)
        if problem:
            print(f"canopy: {problem}", file=sys.stderr)
            return EXIT_USAGE
    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a reader gone (`canopy show | head`) is found here, not at exit
        return code
    except BrokenPipeError:
        if not _stdout_gone():
            raise  # a pipe or socket other than standard output broke: a real fault, with its traceback
        _discard_stdout()
        return EXIT_INVALID


def _stdout_gone() -> bool:
    """Whether the reader of standard output went away (`canopy show | head`): asked of standard output itself
    (poll: an error or hang-up on it), so that a broken pipe elsewhere (`canopy run`, a socket) is not taken for
    it and hidden."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):  # no file descriptor behind it (captured, closed)
        return False


def _discard_stdout() -> None:
    """Stop quietly, as other command-line tools do when their reader is gone, not with a traceback: what is
    still buffered goes to /dev/null so that the exit does not fail on it again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _parser():
    p = argparse.ArgumentParser(prog="canopy", description="Canopy SDN controller", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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

    agent = sub.add_parser("metadata-agent", help="on a hypervisor: relay its VMs' requests to 169.254.169.254 to "
                           "Nova's metadata API (docs/metadata.md)")
    agent.add_argument("--config", required=True, help="the agent's settings YAML (config/metadata-agent.yaml)")
    agent.set_defaults(func=cmd_metadata_agent)

    check = sub.add_parser("check", help="validate policy documents offline")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_check)

    check_settings = sub.add_parser("check-settings", help="validate a controller settings file offline")
    check_settings.add_argument("file")
    check_settings.set_defaults(func=cmd_check_settings)

    for name, func, doc in (("apply", cmd_apply, "apply a policy document through the REST API"),
                            ("status", cmd_status, "show a running controller's status")):
        cmd = sub.add_parser(name, help=doc)
        if name == "status":
            cmd.add_argument("--json", action="store_true", help="print the controller's raw JSON")
        if name == "apply":
            cmd.add_argument("file", help="the policy document; - reads it from standard input")
            cmd.add_argument("--wait", action="store_true",
                             help="after the commit, wait until every switch holds its seq (programmed)")
            cmd.add_argument("--wait-timeout", type=cli_remote.seconds, default=300.0, metavar="SECONDS",
                             help="give up waiting after this long (exit code 5: the last line names the "
                             "switches behind and why)")
            cmd.add_argument("--prune", action="store_true",
                             help="delete objects an earlier apply of this source created that the file no longer has")
            cmd.add_argument("--dry-run", action="store_true",
                             help="show what would change, field by field; change nothing")
            cmd.add_argument("--adopt", action="store_true",
                             help="take over objects the file lists that another source or a REST create owns "
                             "(refused otherwise)")
            cmd.add_argument("--source", help="name of the managed set (default: the document's 'source' key, "
                             "else the file name)")
        cli_remote.add_arguments(cmd)
        cmd.set_defaults(func=func)
    show.add_parsers(sub, cli_remote.add_arguments)
    cli_health.add_parser(sub)
    return p


# ---------------------------------------------------------------------------------------------- metadata agent

def cmd_metadata_agent(args) -> int:
    from controller import logs, metadata_agent

    try:
        settings = metadata_agent.load_settings(args.config)
        settings.secret(), settings.token(), settings.tls_context()
    except metadata_agent.SettingsError as exc:
        print(f"canopy metadata-agent: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup("info", "text")
    try:
        metadata_agent.serve(settings)
    except (OSError, RuntimeError) as exc:
        print(f"canopy metadata-agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_START
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- run

def cmd_run(args) -> int:
    from controller import lifecycle, logs, runtime

    lifecycle.exit_on_stop_signals()
    try:
        settings = settings_mod.load(args.config)
    except (settings_mod.SettingsError, yamldoc.DocError) as exc:
        print(f"canopy: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    from controller import stretchtrace

    try:
        stretchtrace.from_environment()  # checked here: a bad value stops the start with a clear message
    except stretchtrace.StretchTraceError as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.setup(settings.log_level, settings.log_format)
    log = logging.getLogger("canopy.lifecycle")
    try:
        lifecycle.usable_data_dir(settings.data_dir)
        # held while this process runs; first: no store another Canopy serves is judged, moved aside (--accept-store:
        # before, it was, the lock refused only after) or opened
        held = storeguard.lock(settings.data_dir)
        accepted = storeguard.verify(settings.data_dir, accept=args.accept_store)  # before anything opens it
        lifecycle.check_data_dir(settings.data_dir)
        settings = resttoken.resolved(settings)
        lifecycle.check_listeners(lifecycle.listeners(settings))
    except settings_mod.SettingsError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_USAGE
    except (lifecycle.StartError, storeguard.StoreRefused) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_START
    except OSError as exc:  # writing the generated REST token
        log.error("cannot start: data_dir: cannot write the REST token file: %s", exc)
        return EXIT_START
    if accepted:
        logging.getLogger("canopy.store").warning("%s", accepted)
    if network := storedisk.network_warning(settings.data_dir):
        logging.getLogger("canopy.store").warning("%s", network)
    runtime.SETTINGS = settings
    runtime.DATA_LOCK = held
    runtime.STORE_ACCEPTED = bool(accepted)
    from controller import guard
    from controller.ryu_compat import OpenFlowGuard, run_manager

    guard.raise_nofile()

    argv = ["--ofp-listen-host", settings.openflow_listen, "--ofp-tcp-listen-port", str(settings.openflow_port),
            "--config-file", os.devnull, "--nouse-stderr", "--default-log-level",
            str(logs.LEVELS[settings.log_level]), "controller.app"]
    if settings.openflow_tls:  # Ryu's TLS options: the guarded listener serves TLS on the OpenFlow port
        argv[:0] = ["--ctl-privkey", settings.tls.key, "--ctl-cert", settings.tls.cert,
                    "--ca-certs", settings.tls.ca_cert, "--ofp-ssl-listen-port", str(settings.openflow_port)]
    lifecycle.install_signals(args.config)
    try:
        limits = settings.limits
        code = run_manager(argv, OpenFlowGuard(limits.openflow_handshake_timeout, limits.openflow_per_source,
                                                   limits.openflow_dead_after))
    except KeyboardInterrupt:  # a stop signal while Ryu was still building the applications
        code = EXIT_OK
    log.info("Canopy stopped")
    return code


def cmd_check_settings(args) -> int:
    """Validate a settings file offline (nothing is bound or written)."""
    try:
        settings = settings_mod.load(args.file)
    except (settings_mod.SettingsError, yamldoc.DocError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    problems = resttoken.file_problems(settings)
    for problem in problems:
        print(problem, file=sys.stderr)  # FILE:LINE: KEY: why
    if problems:
        return EXIT_INVALID
    parts = [f"OpenFlow {settings.openflow_listen}:{settings.openflow_port}",
             f"OVSDB {settings.ovsdb_listen}:{settings.ovsdb_port}",
             f"REST {settings.rest_listen}:{settings.rest_port}",
             f"data {settings.data_dir}"]
    if settings.ha.enabled:
        parts.append(f"HA peer {settings.ha.peer}:{settings.ha.peer_port}")
    if settings.bgp.enabled:
        parts.append(f"BGP AS {settings.bgp.asn} with {len(settings.bgp.neighbors)} neighbor(s)")
    print(f"{args.file}: ok ({', '.join(parts)})")
    return EXIT_OK


# ------------------------------------------------------------------------------------- backup/restore

def _data_dir(args):
    return settings_mod.load(args.config).data_dir


def cmd_backup(args) -> int:
    notes: list[str] = []
    try:
        settings = settings_mod.load(args.config)
        facts = storeguard.backup(settings.data_dir, args.file, settings.ha.store_renewal_wait, notes)
    except (settings_mod.SettingsError, yamldoc.DocError, storeguard.StoreRefused, OSError) as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_START
    for note in notes:
        print(f"canopy: note: {note}", file=sys.stderr)
    print(f"{args.file}: backup of the store up to change {facts.seq}")
    return EXIT_OK


def cmd_restore(args) -> int:
    try:
        facts, kept = storeguard.restore(_data_dir(args), args.file)
    except (settings_mod.SettingsError, yamldoc.DocError, storeguard.StoreRefused, OSError) as exc:
        print(f"canopy: {exc}", file=sys.stderr)
        return EXIT_START
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
    defined: dict[tuple[str, str], tuple[str, str]] = {}  # (kind, ref) -> (file, "file:line") defining it
    for path in args.files:
        doc = None
        try:
            doc = yamldoc.load_file(path)
            if _defined_elsewhere(doc, defined):
                failed = True
                continue
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


def _defined_elsewhere(doc, defined) -> bool:
    """Print and return whether the document defines an object an earlier file defines (applied in order,
    the second file would be refused, or would overwrite the first when both have the same source)."""
    _, desired, _ = policydoc.read(doc.data, os.path.basename(doc.filename))
    clash = False
    for d in policydoc.named(desired):
        here = doc.where(policydoc.name_path(d))
        filename, first = defined.setdefault((d.kind, d.ref), (doc.filename, here))
        if filename != doc.filename:
            print(f"{here}: {d.kind} {d.ref!r}: is also defined in another file; each object may appear once "
                  f"(first at {first})", file=sys.stderr)
            clash = True
    return clash


def _print_problems(doc, problems):
    for p in problems:
        place = doc.where(p.field) if doc else ""
        leaf = _leaf(p.field)
        named = p.kind != "document" and p.ref  # no ref: an object without a name, known by its place (field)
        what = f"{p.kind} {p.ref!r}" + (f": {leaf}" if leaf else "") if named else p.field
        also = f" (first at {doc.where(p.also) if doc else p.also})" if p.also else ""
        print(f"{place}: {what + ': ' if what else ''}{p.reason}{also}", file=sys.stderr)


def _leaf(path):
    """The field name inside its object: "tenants[0].domains[1].cidr" -> "cidr"; "" for the object itself."""
    for marker in ("vports[", "subnets[", "domains[", "acls[", "tenants[", "vtep_bindings["):
        i = path.rfind(marker)
        if i >= 0:
            rest = path[path.index("]", i) + 1:]
            return rest.lstrip(".")
    return path


# -------------------------------------------------------------------------------------- apply/status

def cmd_apply(args) -> int:
    try:
        doc = yamldoc.load(sys.stdin.read(), "<stdin>") if args.file == "-" else yamldoc.load_file(args.file)
    except yamldoc.DocError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except UnicodeDecodeError:
        print("<stdin>: is not UTF-8 text", file=sys.stderr)
        return EXIT_INVALID
    source = args.source or (doc.data.get("source") if isinstance(doc.data, dict) else None) \
        or ("stdin" if args.file == "-" else os.path.basename(args.file))
    if args.file == "-" and not args.source and not (isinstance(doc.data, dict) and doc.data.get("source")):
        print("canopy: a document from standard input is applied as source 'stdin' (set --source or a "
              "'source' key to name it)", file=sys.stderr)
    body = {"document": doc.data, "source": source, "prune": args.prune, "dry_run": args.dry_run,
            "adopt": args.adopt}
    with _Progress(f"applying {doc.filename}"):
        status, reply = cli_remote.request(args, "POST", "/v1/apply", body)
    if status is None:
        return EXIT_UNREACHABLE
    if status != 200:
        err = (reply or {}).get("error", {})
        problems = err.get("errors")
        if problems:
            from controller.model import Problem

            _print_problems(doc, [Problem(p["kind"], p["ref"], p["field"] or "", p["reason"], p["code"],
                                          p.get("also", "")) for p in problems])
        else:
            print(f"canopy: {status}: {err.get('message', reply)}", file=sys.stderr)
        cli_remote.refusal_hint(args, status, reply, write=True)
        return EXIT_INVALID
    changes = reply["changes"]
    verb = "would" if reply["dry_run"] else ""
    for c in changes:
        print(f"{verb + ' ' if verb else ''}{c['op']} {c['kind']} {c['ref']}{_taken_from(c)}")
        for d in c.get("diff", ()):
            print(f"    {d['field']}: {_value(d['old'])} -> {_value(d['new'])}")
    print(f"{doc.filename}: {len(changes)} change(s){' (dry run)' if reply['dry_run'] else ''}, "
          f"source {reply['source']!r}, seq {reply['seq']}")
    if args.wait and not reply["dry_run"]:
        from controller.cli_wait import wait_programmed

        return wait_programmed(lambda path: cli_remote.request(args, "GET", path, None),
                               args.wait_timeout, reply["seq"])
    return EXIT_OK


def _taken_from(change) -> str:
    if change["op"] != "adopt":
        return ""
    owner = change.get("from_source")
    return " (from the REST API)" if owner is None else f" (from source {owner!r})"


def _value(value) -> str:
    return json.dumps(value, sort_keys=True)


def cmd_status(args) -> int:
    status, reply = cli_remote.request(args, "GET", "/v1/status", None)
    if status is None:
        return EXIT_UNREACHABLE
    cli_remote.refusal_hint(args, status, reply, write=False)
    if args.json or status != 200 or not isinstance(reply, dict):
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        from controller.cli_status import render_status

        print(render_status(reply))
    return EXIT_OK if status == 200 else EXIT_INVALID


class _Progress:
    """While a request runs longer than PROGRESS_EVERY seconds, say so on standard error every so often."""

    def __init__(self, what: str):
        import threading

        self.what = what
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        import time

        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _run(self):
        import time

        while not self._done.wait(PROGRESS_EVERY):
            print(f"canopy: {self.what}: waiting for the controller ({time.monotonic() - self._started:.0f} s)",
                  file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
