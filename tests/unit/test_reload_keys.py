"""SIGHUP: the warning about settings that apply only after a restart names keys as the operator wrote them in the
file, never ones Canopy derived (ha.secret read from ha.secret_file, ha.listen from ha.peer, the tls section)."""

from __future__ import annotations

import logging

import pytest

from controller import lifecycle, resttoken, runtime
from controller import settings as settings_mod


@pytest.fixture()
def reload(tmp_path, caplog):
    """reload(text): write the settings file, SIGHUP-reload it over the running settings; the restart warning."""
    config = tmp_path / "canopy.yaml"
    running = []

    def write_and_reload(text):
        config.write_text(f"data_dir: {tmp_path / 'data'}\n" + text)
        if not running:
            runtime.SETTINGS = resttoken.resolved(settings_mod.load(str(config)))
            running.append(True)
            return None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="canopy.lifecycle"):
            lifecycle.reload(str(config))
        found = [r.getMessage() for r in caplog.records if "apply only after a restart" in r.getMessage()]
        return found[0] if found else None

    yield write_and_reload
    runtime.SETTINGS = None


def secret_file(tmp_path, text):
    path = tmp_path / "ha-secret"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_a_rotated_ha_secret_file_is_named_as_its_content_not_as_ha_secret(tmp_path, reload):
    path = secret_file(tmp_path, "a-first-secret-of-16+\n")
    ha = f"ha: {{node_id: a, peer: 127.0.0.2, secret_file: {path}}}\n"
    reload(ha)
    secret_file(tmp_path, "a-second-secret-of-16+\n")
    warning = reload(ha)
    assert warning.startswith("SIGHUP: the content of ha.secret_file changed in ")
    assert "ha.secret," not in warning and runtime.SETTINGS.ha.secret == "a-first-secret-of-16+"  # not applied


def test_a_changed_ha_peer_is_named_without_the_listen_address_derived_from_it(reload, monkeypatch):
    routes = {"192.0.2.1": "192.0.2.10", "198.51.100.1": "198.51.100.10"}  # the source address towards each peer
    monkeypatch.setattr(settings_mod, "source_address", routes.__getitem__)
    reload("ha: {node_id: a, peer: 192.0.2.1, secret: a-secret-of-16-chars+}\n")
    assert runtime.SETTINGS.ha.listen == "192.0.2.10"
    warning = reload("ha: {node_id: a, peer: 198.51.100.1, secret: a-secret-of-16-chars+}\n")
    assert warning.startswith("SIGHUP: ha.peer changed in "), warning  # not "ha.listen, ha.peer"


def test_a_tls_section_added_is_named_by_the_keys_written(tmp_path, reload):
    from tests.harness.pki import Pki

    ca = Pki(tmp_path, "ca")
    own = ca.issue("controller", ips=("127.0.0.1",))
    reload("log_level: info\n")
    warning = reload(f"tls: {{key: {own.key}, cert: {own.cert}, ca_cert: {ca.ca_cert}}}\n")
    assert warning.startswith("SIGHUP: tls.ca_cert, tls.cert, tls.key changed in "), warning  # no bare "tls"


def test_an_ha_listen_address_derived_from_a_route_that_moved_is_named_as_waiting_for_a_restart(reload, monkeypatch):
    """ha.listen left out is this node's address towards ha.peer, found again at each load: when the route moved
    and the file did not change, SIGHUP said nothing, though the HA link keeps listening on the old address until a
    restart (and listens on the new one after it)."""
    ha = "ha: {node_id: a, peer: 192.0.2.1, secret: a-secret-of-16-chars+}\n"
    monkeypatch.setattr(settings_mod, "source_address", lambda peer: "192.0.2.10")
    reload(ha)
    monkeypatch.setattr(settings_mod, "source_address", lambda peer: "203.0.113.10")  # the route to the peer moved
    warning = reload(ha)
    assert warning and warning.startswith("SIGHUP: ha.listen (not set: this node's address towards ha.peer, now "
                                          "203.0.113.10; running with 192.0.2.10) changed in "), warning
    assert runtime.SETTINGS.ha.listen == "192.0.2.10"  # not applied
    assert reload(ha.replace("node_id: a, ", "node_id: a, listen: 192.0.2.10, ")).startswith("SIGHUP: ha.listen "
                                                                                            "changed in ")


def test_an_ha_node_id_derived_from_a_host_name_that_changed_is_named_as_waiting_for_a_restart(reload, monkeypatch):
    monkeypatch.setattr(settings_mod, "source_address", lambda peer: "192.0.2.10")
    monkeypatch.setattr(settings_mod.socket, "gethostname", lambda: "ctl-old")
    ha = "ha: {peer: 192.0.2.1, secret: a-secret-of-16-chars+}\n"
    reload(ha)
    assert reload(ha) is None  # nothing changed: nothing named
    monkeypatch.setattr(settings_mod.socket, "gethostname", lambda: "ctl-new")
    assert reload(ha).startswith("SIGHUP: ha.node_id (not set: the host name, now ctl-new; running with ctl-old) "
                                 "changed in ")
