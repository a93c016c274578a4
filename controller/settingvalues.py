"""Checkers of single settings values (controller/settings.py): each returns the value or raises
``fields.Invalid`` with the reason, which the settings loader reports with file, line and key."""

from __future__ import annotations

from controller import fields as f
from controller import secretfile

MIN_SECRET = 16


def listen(value):
    """An address to listen on (openflow, ovsdb, rest, bgp, ha), IPv4 or IPv6 without a zone (fields.ip_address)."""
    return str(f.ip_address(f.text(value, 64)))


def secret(value):
    """ha.secret given inline: one line (``one_line``) of at least MIN_SECRET characters."""
    value = one_line(f.text(value, 4096))
    if len(value) < MIN_SECRET:
        raise f.Invalid(f"must be at least {MIN_SECRET} characters")
    return value


def password(limit, instead):
    """A checker for a password given inline (bgp.neighbors[].md5_password): one line (``one_line``), then 1 to
    ``limit`` characters (``filled``: its error names ``limit``, the line end of a block scalar not counted)."""
    fill = filled(limit, instead)
    return lambda value: fill(one_line(f.text(value, 4096)))


def one_line(value: str) -> str:
    """A secret given inline, as one line: without the one line end a YAML block scalar (``secret: |``) ends with,
    as a secret file may end with one; any other line break is refused (LF, CR or any other ``str.splitlines``
    counts), as in a secret file (controller/secretfile.py ``read_secret``): kept, it was part of the secret, and
    the HA nodes (or the BGP peer) disagreed on it with no word why."""
    if value.endswith("\n"):
        value = value[:-1]
    lines = len((value + ".").splitlines())  # a line break at its end starts a line too
    if lines > 1:
        raise f.Invalid(f"holds {lines} lines: a secret is one line (a line break inside is no part of a secret; "
                        "the one line end of a block scalar, key: |, is dropped, as a secret file's is)")
    return value


def token(instead):
    """A checker for a REST token (rest.token, rest.read_token): sent in an HTTP header, so printable ASCII without
    spaces (secretfile.token_problem); an empty rest.token silently meant a generated token. ``instead`` tells the
    operator what leaving the key out means."""
    def check(value):
        value = f.text(value, 4096)
        if not value:
            raise f.Invalid(f"must not be empty ({instead})")
        problem = secretfile.token_problem(value)
        if problem:
            raise f.Invalid(problem)
        return value
    return check


def filled(limit, instead):
    """A checker for text of 1 to ``limit`` characters: an empty md5_password would silently mean none, and an
    empty chassis matches no hypervisor. ``instead`` tells the operator what to write (a deployed file may hold
    the empty value)."""
    def check(value):
        value = f.text(value, limit)
        if not value:
            raise f.Invalid(f"must not be empty ({instead})")
        return value
    return check


def path(instead):
    """A checker for a file or directory path: an empty one silently meant the working directory (data_dir) or
    no file at all (rest.token_file, ha.secret_file), and a NUL byte stops every file call with a ValueError, not
    an error naming the setting. ``instead`` tells the operator what to write."""
    def check(value):
        value = f.text(value, 4096)
        if not value:
            raise f.Invalid(f"must be a path, not empty ({instead})")
        if "\0" in value:
            raise f.Invalid("must not contain a NUL character")
        return value
    return check


def port(value):
    return f.integer(value, 1, 65535)


def asn(value):
    return f.integer(value, 1, 4294967295)


def hold_time(value):
    value = f.integer(value, 0, 65535)
    if value in (1, 2):
        raise f.Invalid("must be 0 or at least 3 seconds (RFC 4271)")
    return value


def dead_after_ms(value):
    value = f.integer(value, 0, 3600000)
    if 0 < value < 2000:
        raise f.Invalid("must be 0 (never) or at least 2000: TCP keepalive counts whole seconds, and a shorter bound "
                        "on unacknowledged data would drop switches on a busy network")
    return value


def stall_report_ms(value):
    value = f.integer(value, 0, 60000)
    if 0 < value < 20:
        raise f.Invalid("must be 0 (off) or at least 20: the stall watch looks every quarter of it")
    return value


# vrs.punt_meters' defaults (openflow/meters.py): kind -> (packets per second, burst), each port's meter of that kind
# (dhcp, activation) or the switch's (other; dhcp of a bare-metal gateway VRS). A DHCP client sends a few packets per
# lease (discover, request, their retries seconds apart); a migrating VM's first frame activates its port. ``switch``:
# the controller meter, every packet a VRS sends to the controller: five ports' DHCP rates, half of Open vSwitch's
# controller queue (100 packets a connection) at once.
PUNT_METER_DEFAULTS = {"activation": (30, 30), "dhcp": (10, 20), "other": (10, 10), "switch": (50, 50)}
