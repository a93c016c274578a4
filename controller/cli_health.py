"""``canopy health``: the container image's HEALTHCHECK (Dockerfile, docs/container.md).

Exit 0 when the controller answers ``GET /v1/status`` with 200 within ``--timeout`` seconds; else exit 1 with one line
on standard error saying why (never a traceback: a container engine shows the check's output as the reason it is
unhealthy, and takes any exit but 0 and 1 as a fault of the check itself).

It asks as ``canopy status`` asks (controller/cli_remote.py ``resolve``: the settings' REST address, scheme and token
(the read-only token when one is configured, else the write token), else CANOPY_URL, CANOPY_READ_TOKEN and
CANOPY_TOKEN, else the default data directory's rest-token; a CA from CANOPY_CA_FILE, else
SSL_CERT_FILE or the system's CA store), with the settings of ``--config``, else those the container's controller
runs with: the ``canopy run --config FILE`` of PID 1's command line (``tini -- canopy run ...``, the image's entry
point, whatever arguments replaced the image's default ``CMD``), else the built-in defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import urllib.error
import urllib.request

from controller import cli_remote

MAIN_CMDLINE = "/proc/1/cmdline"  # the container's main process: tini, running canopy
EXIT_HEALTHY, EXIT_UNHEALTHY = 0, 1


def add_parser(sub) -> None:
    cmd = sub.add_parser("health", help="exit 0 if the controller answers GET /v1/status (the image's HEALTHCHECK)")
    cmd.add_argument("--config", help="the controller's settings (default: those of the 'canopy run' that is the "
                     "container's main process, else the built-in defaults)")
    cmd.add_argument("--timeout", type=cli_remote.seconds, default=3.0, metavar="SECONDS",
                     help="how long to wait for the answer")
    cmd.set_defaults(func=cmd_health)


def cmd_health(args) -> int:
    try:
        problem = _check(args)
    except Exception as exc:  # noqa: BLE001 - a health check reports, in one line, whatever stops it
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return EXIT_HEALTHY
    print(f"canopy health: unhealthy: {' / '.join(str(problem).splitlines())}", file=sys.stderr)
    return EXIT_UNHEALTHY


def _check(args) -> str | None:
    remote = argparse.Namespace(url=None, token=None, read_token=None, ca_file=None,
                                config=args.config or main_settings_file(MAIN_CMDLINE))
    problem = cli_remote.resolve(remote)
    if problem:
        return problem
    token, token_from = cli_remote.token_for(remote, write=False)  # the read-only token when there is one
    if not token:
        return token_from
    url = remote.url.rstrip("/") + "/v1/status"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=remote.tls) as resp:
            return None if resp.status == 200 else f"GET {url} answered {resp.status}"
    except urllib.error.HTTPError as exc:
        told = f"; {token_from} was refused" if exc.code == 401 else ""
        return f"GET {url} answered {exc.code} {exc.reason}{told}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        hint = cli_remote.tls_hint(reason, remote.url, "CANOPY_CA_FILE")  # health takes no --ca-file
        return f"cannot reach the controller at {remote.url}: {reason}{hint}"


def main_settings_file(path: str) -> str | None:
    """The ``--config`` of the ``canopy run`` in the command line stored at ``path`` (NUL-separated, as
    /proc/PID/cmdline), directly or behind tini; None when it is none (or has no --config, or cannot be read). A
    ``canopy run`` canopy would not accept (``--config`` without its value, ``--help``) is one without --config: the
    built-in defaults, and the check's one line says why those fail (a controller cannot have started with it);
    argparse's usage or help is not printed (the check's output stays one line)."""
    from controller import cli

    try:
        with open(path, "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    starts = [i for i, arg in enumerate(argv) if arg == "canopy" or arg.endswith("/canopy")]
    if not starts:
        return None
    rest = [a for a in argv[starts[0] + 1:] if a]
    if not rest or rest[0] != "run":
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parsed, _ = cli._parser().parse_known_args(rest)
    except SystemExit:  # not a command line canopy accepts
        return None
    return parsed.config
