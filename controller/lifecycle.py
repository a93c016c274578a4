"""The life of a ``canopy run`` process: checks before starting, signals, live reload (docs/operations.md).

- ``preflight``: what the host must allow before anything starts (the data directory and its store can be
  opened, every listener can bind); a refusal is one ``StartError`` line naming the setting.
- ``install_signals``: SIGTERM and SIGINT stop the controller in order (also as PID 1, where signals without
  a handler are ignored); a second one exits at once. SIGHUP re-reads the settings file and applies what can
  change live (``reload``); the rest is named in the log as waiting for a restart (BGP changes neighbor by
  neighbor, with the reason: ``BGP_RESTART``), except the bgp section while the BGP speaker has no ExaBGP up (its
  start failed, or it exited: a rejected exabgp.conf): then it starts one at once with the new section
  (``_apply_bgp``), bgp.asn apart (it also derives route distinguishers and targets); and bgp.duplicate_mac, which
  only Canopy uses, always (``_apply_duplicate_mac``): changed alone, it goes to MAC mobility only (the speaker, its
  ExaBGP down or not, is left as it is: no start at once, its back-off kept).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import signal
import socket
import sqlite3

from controller import logs, resttoken, runtime
from controller import settings as settings_mod
from controller import yamldoc

log = logging.getLogger("canopy.lifecycle")
LIVE = ("log_level", "log_format", "rest_token", "rest_token_file", "rest_read_token", "rest_read_token_file",
        "access_log")  # applied by reload
LIVE_KEYS = ("log_level", "log_format", "rest.token", "rest.token_file", "rest.read_token", "rest.read_token_file",
             "rest.access_log")  # the same, as keys
DUPLICATE_MAC_CHANGED = "bgp.duplicate_mac changed"  # what bgp_changes says of it
BGP_RESTART = ("exabgp is up, and the BGP speaker gives ExaBGP its neighbors only when it starts it, with no live "
               "reconfiguration; restarting the speaker alone would reset every session, unchanged ones included")


class StartError(Exception):
    """The host refuses a setting; the message starts with the setting's name."""


# ------------------------------------------------------------------------------------------ preflight

def preflight(settings) -> None:
    """Raise StartError for the first thing that would stop the controller from starting."""
    check_data_dir(settings.data_dir)
    check_listeners(listeners(settings))


def listeners(settings) -> list[tuple[str, str, int]]:
    """(setting, address, port) of every TCP listener these settings open."""
    out = [("openflow", settings.openflow_listen, settings.openflow_port),
           ("ovsdb", settings.ovsdb_listen, settings.ovsdb_port),
           ("rest", settings.rest_listen, settings.rest_port)]
    if settings.ha is not None and settings.ha.enabled:
        out.append(("ha", settings.ha.listen, settings.ha.port))
    if settings.bgp is not None and settings.bgp.enabled and settings.bgp.listen:
        out.append(("bgp", settings.bgp.listen, settings.bgp.port))
    return out


def check_listeners(items) -> None:
    """Bind each (setting, address, port) as the controller will (all held at once, so two settings on one
    port clash too), then release them."""
    held = []
    try:
        for setting, host, port in items:
            held.append(_bind(setting, host, port))
    finally:
        for sock in held:
            sock.close()


def _bind(setting, host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1)  # two bound sockets clash only once one listens
        return sock
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartError(f"{setting}.port: {host}:{port} is already in use") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise StartError(f"{setting}.listen: {host} is not an address of this host") from None
        if exc.errno == errno.EACCES:
            raise StartError(f"{setting}.port: listening on port {port} is not permitted to this user") from None
        raise StartError(f"{setting}: cannot listen on {host}:{port}: {exc.strerror}") from None


def check_data_dir(path: str) -> None:
    """The data directory exists (or can be made) and its store opens."""
    from controller.store import Store, StoreError

    usable_data_dir(path)
    try:
        Store(path).close()
    except (OSError, sqlite3.Error, StoreError) as exc:  # StoreError: refused by controller/storeguard.py
        raise StartError(f"data_dir: cannot open the store in {path}: {exc}") from None


def usable_data_dir(path: str) -> None:
    """The data directory exists (or can be made), readable and writable by this user."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise StartError(f"data_dir: {path} is not a directory")
    try:
        os.makedirs(path, mode=0o750, exist_ok=True)
    except OSError as exc:
        raise StartError(f"data_dir: cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StartError(f"data_dir: {path} is not readable and writable by this user")


# -------------------------------------------------------------------------------------------- signals

def exit_on_stop_signals() -> None:
    """Until ``install_signals``: SIGTERM/SIGINT end the process at once (as PID 1 they would be ignored)."""
    def on_stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)


def install_signals(config_path: str | None) -> None:
    """Handle SIGTERM, SIGINT and SIGHUP in this (the main) greenlet's process (module docstring)."""
    import eventlet.hubs
    import greenlet

    main = greenlet.getcurrent()
    stopping = []

    def on_stop(signum, frame):
        name = signal.Signals(signum).name
        if stopping:
            os.write(2, f"canopy: second {name} while stopping: exiting now\n".encode())
            os._exit(128 + signum)
        stopping.append(name)
        eventlet.hubs.get_hub().schedule_call_global(0, _interrupt, main, name)

    def on_hup(signum, frame):
        eventlet.hubs.get_hub().schedule_call_global(0, _spawn_reload, config_path)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def _interrupt(main, name):
    log.info("received %s: stopping", name)
    if not main.dead:
        main.throw(KeyboardInterrupt(name))


def _spawn_reload(config_path):
    import eventlet

    eventlet.spawn_n(reload, config_path)


# --------------------------------------------------------------------------------------------- reload

def reload(config_path: str | None) -> list[str]:
    """Re-read the settings file and apply what can change live; returns what was done (also logged)."""
    running = runtime.SETTINGS
    where = config_path or "the built-in defaults"
    try:
        new = resttoken.resolved(settings_mod.load(config_path))
    except (settings_mod.SettingsError, yamldoc.DocError, OSError) as exc:
        log.error("SIGHUP: %s not reloaded; the running settings stay: %s", where, " / ".join(str(exc).splitlines()))
        return []
    bgp = bgp_changes(running.bgp, new.bgp)
    try:
        # duplicate_mac alone is no change of the speaker's: it does not start ExaBGP or reset its back-off
        bgp_applied = bool(set(bgp) - {DUPLICATE_MAC_CHANGED}) and _apply_bgp(running, new)
    except StartError as exc:  # a new bgp.listen or bgp.port this host refuses, as at start
        log.error("SIGHUP: %s not reloaded; the running settings stay: %s", where, exc)
        return []
    done = []
    dup = None if bgp_applied else _apply_duplicate_mac(running, new)
    if dup:
        bgp.remove(DUPLICATE_MAC_CHANGED)
        done.append(dup)
    level = logs.current_level()
    if new.log_format != running.log_format:
        logs.setup(new.log_level, new.log_format)
        done.append(f"log_format {running.log_format} -> {new.log_format}")
    logs.set_level(new.log_level)
    done.append(f"log_level {level} -> {new.log_level}" if level != new.log_level else f"log_level {level} (same)")
    token = "REST token replaced" if new.rest_token != running.rest_token else "REST token unchanged"
    done.append(f"{token} ({'inline' if new.rest_token and not _token_from_file(new) else new.rest_token_file})")
    read = _read_token_change(running, new)
    if read:
        done.append(read)
    if new.access_log != running.access_log:
        done.append(f"rest.access_log {running.access_log} -> {new.access_log}")
    live = dataclasses.replace(running, **{name: getattr(new, name) for name in LIVE})
    if bgp_applied:
        live = dataclasses.replace(live, bgp=new.bgp)
    elif dup:
        live = dataclasses.replace(live, bgp=dataclasses.replace(live.bgp, duplicate_mac=new.bgp.duplicate_mac))
    runtime.SETTINGS = live
    if runtime.API is not None:
        runtime.API.settings = dataclasses.replace(runtime.API.settings, **{n: getattr(new, n) for n in LIVE})
    waiting = restart_changes(running, new)
    logs.announce(log, "SIGHUP: reloaded %s: %s", where, "; ".join(done))
    if waiting:
        log.warning("SIGHUP: %s changed in %s; these apply only after a restart", ", ".join(waiting), where)
    if bgp_applied:
        log.warning("SIGHUP: bgp changed in %s (%s); applied: the BGP speaker had no exabgp up (%s), it starts one "
                    "at once with them", where, "; ".join(bgp), runtime.FEDERATION.speaker.status()["last_error"])
    elif bgp:
        log.warning("SIGHUP: bgp changed in %s (%s); not applied: BGP settings apply only after a restart (%s)",
                    where, "; ".join(bgp), _bgp_kept(running, new))
    return done


def _apply_bgp(running, new) -> bool:
    """Hand the new bgp section to a BGP speaker that has no ExaBGP up (Federation.reconfigure): no session to reset,
    no route to lose. Not when BGP is turned on or off (the federation exists or not from the start), nor when
    bgp.asn changes (policy's route distinguishers and targets derive from it: Settings.asn). A new bgp.listen or
    bgp.port is bound first as at start (``preflight``): StartError naming the key, nothing changed."""
    federation = runtime.FEDERATION
    if federation is None or not new.bgp.enabled or new.bgp.asn != running.bgp.asn:
        return False
    return federation.reconfigure(new.bgp, running.data_dir, lambda: _check_bgp_listener(running.bgp, new.bgp))


def _apply_duplicate_mac(running, new) -> str | None:
    """Hand a changed bgp.duplicate_mac to MAC mobility, also while ExaBGP is up: only Canopy uses it (it is not
    in exabgp.conf: bgp.federation.speaker_config); what was done, for the log, or None."""
    was, now = running.bgp.duplicate_mac, new.bgp.duplicate_mac
    if runtime.FEDERATION is None or was == now:
        return None
    runtime.FEDERATION.set_duplicate_mac(now)
    changed = [f"{f.name} {getattr(was, f.name)} -> {getattr(now, f.name)}" for f in dataclasses.fields(now)
               if getattr(was, f.name) != getattr(now, f.name)]
    return f"bgp.duplicate_mac applied ({', '.join(changed)})"


def _check_bgp_listener(old, new) -> None:
    """StartError if ExaBGP could not listen where the new bgp section says (only when that changed: the old one
    passed at start)."""
    if new.listen and (new.listen, new.port) != (old.listen, old.port):
        check_listeners([("bgp", new.listen, new.port)])


def _bgp_kept(running, new) -> str:
    """Why a changed bgp section waits for a restart (the end of the SIGHUP warning)."""
    if running.bgp.enabled != new.bgp.enabled:
        return "BGP is turned on or off only at start"
    if new.bgp.asn != running.bgp.asn:
        return "bgp.asn also derives the policy's route distinguishers and targets"
    return BGP_RESTART


# ha settings a file may leave out, whose value Canopy then derives at each load (settings._ha): (the keys whose change
# explains a change of the value, where the value comes from); settings._ha_secret reads ha.secret_file
HA_DERIVED = {"listen": (("ha.listen", "ha.peer"), "this node's address towards ha.peer"),
              "node_id": (("ha.node_id",), "the host name")}


def restart_changes(running, new) -> list[str]:
    """The settings keys, as the file writes them, whose value differs and that apply only after a restart (BGP's
    are named apart); a secret file rotated under the same path is named as the content of that key, and an ha value
    Canopy derives (HA_DERIVED) that differs while the keys it comes from do not (the route to ha.peer, the host name)
    is named with where it comes from and both values."""
    before, after = dict(running.keys), dict(new.keys)
    out = [key for key in sorted(before.keys() | after.keys())
           if key not in LIVE_KEYS and not key.startswith("bgp.") and before.get(key) != after.get(key)]
    if running.ha and new.ha and running.ha.secret != new.ha.secret and not {"ha.secret", "ha.secret_file"} & set(out):
        out.append("the content of ha.secret_file")
    if running.ha and new.ha:
        for name, (keys, source) in HA_DERIVED.items():
            was, now = getattr(running.ha, name), getattr(new.ha, name)
            if was != now and not set(keys) & set(out):
                out.append(f"ha.{name} (not set: {source}, now {now}; running with {was})")
    return out


def bgp_changes(old, new) -> list[str]:
    """What differs between two BgpSettings, neighbor by neighbor (address) and setting by setting."""
    before = {n.address: n for n in old.neighbors}
    after = {n.address: n for n in new.neighbors}
    out = [f"neighbor {a} added" for a in sorted(after.keys() - before.keys())]
    out += [f"neighbor {a} removed" for a in sorted(before.keys() - after.keys())]
    for address in sorted(before.keys() & after.keys()):
        fields = [f.name for f in dataclasses.fields(after[address])
                  if getattr(after[address], f.name) != getattr(before[address], f.name)]
        if fields:
            out.append(f"neighbor {address}: {', '.join(fields)} changed")
    out += [f"bgp.{f.name} changed" for f in dataclasses.fields(new)
            if f.name != "neighbors" and getattr(new, f.name) != getattr(old, f.name)]
    return out


def _read_token_change(running, new) -> str | None:
    """What a reload did to the read-only REST token (added, replaced, unchanged, removed), or None without one."""
    before, after = running.rest_read_token, new.rest_read_token
    if before is None and after is None:
        return None
    if after is None:
        return "read-only REST token removed"
    change = "added" if before is None else "replaced" if before != after else "unchanged"
    return f"read-only REST token {change} ({new.rest_read_token_file or 'inline'})"


def _token_from_file(settings) -> bool:
    # read as every token file is (controller/secretfile.py): on the event loop, a FIFO's open waited for a writer
    return resttoken.peek(settings.rest_token_file) == settings.rest_token
