"""TLS on OpenFlow, OVSDB and REST (issue 12, item 7; docs/security.md), with real Open vSwitch.

Hypervisors configured as an operator would (``ovs-vsctl set-ssl KEY CERT CACERT``, ``ssl:`` controller
and manager targets) are programmed over TLS and their VMs ping each other; a hypervisor holding a
certificate of another CA, a client without a certificate, and a plain TCP client are refused on both
ports; REST answers over HTTPS only (checked with curl and Python), and its access log never shows a
query string.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.pki import Pki
from tests.harness.wait import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

POLICY = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
    {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
        {"name": "vm1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
        {"name": "vm2", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"], "binding": {"flavour": "kvm"}},
    ]}]}]}]}


@pytest.fixture(scope="module")
def fabric(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        pki, rogue = Pki(lab.workdir, "canopy-ca"), Pki(lab.workdir, "rogue-ca")
        ctl = lab.add_controller_host("ctl1")
        own = pki.issue("controller", ips=(ctl.ip, "127.0.0.1"))
        canopy = lab.start_controller(ctl, {"tls": {"key": str(own.key), "cert": str(own.cert),
                                                    "ca_cert": str(pki.ca_cert)},
                                            "rest": {"access_log": True}})
        assert canopy.api.post("/v1/apply", {"document": POLICY, "source": "tls"}).status == 200
        hvs = [lab.add_hypervisor(name) for name in ("hv1", "hv2")]
        for hv in hvs:
            mine = pki.issue(hv.name)
            hv.set_ssl(mine.key, mine.cert, pki.ca_cert)
            hv.connect(ctl, scheme="ssl")
        vms = [lab.add_vm(hv, f"vm{i}", mac=f"02:00:00:00:01:0{i}", ip=f"10.0.1.1{i}/24", vnic_id=f"vm{i}")
               for i, hv in enumerate(hvs, start=1)]
        yield lab, ctl, canopy, pki, rogue, hvs, vms


def controller_connected(hv) -> bool:
    return hv.vsctl("get", "Controller", hv.vsctl("get", "Bridge", "br-int", "controller").strip("[]"),
                    "is_connected") == "true"


def manager_connected(hv) -> bool:
    return hv.vsctl("get", "Manager", hv.vsctl("get", "Open_vSwitch", ".", "manager_options").strip("[]"),
                    "is_connected") == "true"


def test_hypervisors_over_tls_are_programmed_and_their_vms_ping(fabric):
    lab, _, canopy, _, _, hvs, vms = fabric
    lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 2, timeout=30,
                   what="both vports bound (OVSDB over TLS)")
    lab.wait_until(lambda: all(controller_connected(hv) and manager_connected(hv) for hv in hvs), timeout=30,
                   what="OVS says its ssl: controller and manager are connected")
    lab.wait_until(lambda: vms[0].ping("10.0.1.12"), timeout=30, interval=0.2, what="vm1 pings vm2 over TLS-"
                   "programmed flows")
    assert vms[1].ping("10.0.1.11")
    sessions = canopy.api.get("/v1/ovsdb/sessions").json["items"]
    assert sorted(s["chassis"] for s in sessions) == ["hv1", "hv2"]


def test_a_hypervisor_with_a_certificate_of_another_ca_is_refused(fabric):
    lab, ctl, canopy, pki, rogue, _, _ = fabric
    hv = lab.add_hypervisor("hv3")
    theirs = rogue.issue("hv3")
    hv.set_ssl(theirs.key, theirs.cert, pki.ca_cert)  # it trusts Canopy; Canopy does not trust it
    hv.connect(ctl, scheme="ssl")

    def refused(kind):
        return any(f"{kind} {hv.mgmt_ip}:" in line and "TLS handshake failed" in line
                   for line in canopy.log_path.read_text().splitlines())
    wait_until(lambda: refused("ovsdb") and refused("openflow"), timeout=30, what="both refusals logged")
    assert not controller_connected(hv) and not manager_connected(hv)
    switches = canopy.api.get("/v1/switches").json["items"]
    assert "hv3" not in str(switches)
    assert all(s["chassis"] != "hv3" for s in canopy.api.get("/v1/ovsdb/sessions").json["items"])


def session(ctl, port: int, context: ssl.SSLContext) -> str:
    """What a TLS client with ``context`` gets from 127.0.0.1:``port`` in the controller's namespace: "ok" when
    the controller speaks to it after the handshake (OpenFlow's HELLO; the answer to an OVSDB list_dbs), else
    why not. (With TLS 1.3 a refused client certificate shows on the first read, not in the handshake.)"""
    def attempt():
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                if port == 6640:
                    tls.sendall(b'{"method":"list_dbs","params":[],"id":1}')
                return "ok" if tls.recv(4096) else "closed by the controller"
        except (OSError, ssl.SSLError) as exc:
            return f"refused: {exc}"
    return netns.call_in(ctl.ns, attempt, timeout=30)


@pytest.mark.parametrize("port", [6653, 6640])
def test_clients_without_a_certificate_of_the_ca_are_refused(fabric, port):
    _, ctl, _, pki, rogue, _, _ = fabric
    trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert session(ctl, port, trusting) != "ok", "no client certificate"
    wrong = ssl.create_default_context(cafile=str(pki.ca_cert))
    other = rogue.issue(f"intruder{port}")
    wrong.load_cert_chain(str(other.cert), str(other.key))
    assert session(ctl, port, wrong) != "ok", "a certificate of another CA"
    right = ssl.create_default_context(cafile=str(pki.ca_cert))
    good = pki.issue(f"probe{port}")
    right.load_cert_chain(str(good.cert), str(good.key))
    assert session(ctl, port, right) == "ok"  # the same client with the CA's certificate gets through


def test_a_hardware_vtep_over_tls_is_served_and_one_of_another_ca_is_not(fabric):
    lab, ctl, canopy, pki, rogue, _, _ = fabric
    for name, ca in (("tor1", pki), ("tor2", rogue)):
        vtep = lab.add_hardware_vtep(name)
        mine = ca.issue(name)
        vtep.set_ssl(mine.key, mine.cert, pki.ca_cert)
        vtep.connect(ctl, scheme="ssl")
    lab.wait_until(lambda: canopy.api.get("/v1/vteps/tor1").json.get("connected"), timeout=30,
                   what="tor1 connected over TLS")
    lab.wait_until(lambda: "TLS handshake failed" in "".join(
        line for line in canopy.log_path.read_text().splitlines() if f"ovsdb {vtep.mgmt_ip}:" in line),
        timeout=30, what="tor2 (a certificate of another CA) refused")
    assert canopy.api.get("/v1/vteps/tor2").status == 404


def test_plain_tcp_gets_nothing(fabric):
    _, ctl, _, _, _, _, _ = fabric

    def plain_list_dbs():
        with socket.create_connection(("127.0.0.1", 6640), timeout=10) as sock:
            sock.sendall(b'{"method":"list_dbs","params":[],"id":1}')
            sock.settimeout(10)
            try:
                return sock.recv(4096)
            except OSError:
                return b""
    assert b"result" not in netns.call_in(ctl.ns, plain_list_dbs, timeout=30)


def test_a_client_that_never_starts_tls_is_dropped(fabric):
    """The TLS handshake counts against each listener's handshake (REST: header) timeout."""
    _, ctl, _, _, _, _, _ = fabric

    def idle_until_closed():
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for port in (6653, 6640, 8080)]
        for sock in socks:
            sock.settimeout(60)
        try:
            return [sock.recv(1) for sock in socks]  # b"" once the controller closes it
        except OSError as exc:
            return [f"{exc}"]
        finally:
            for sock in socks:
                sock.close()
    assert netns.call_in(ctl.ns, idle_until_closed, timeout=120) == [b"", b"", b""]


def test_rest_is_served_over_https_only(fabric):
    lab, ctl, canopy, pki, _, _, _ = fabric
    assert canopy.api.tls is not None  # the harness itself talks HTTPS to this controller
    assert canopy.api.get("/v1/status").status == 200
    done = ctl.exec("curl", "-sS", "--cacert", str(pki.ca_cert), "-H", "Authorization: Bearer test-token",
                    "https://127.0.0.1:8080/v1/status", timeout=20)
    assert done.returncode == 0 and '"vports_bound"' in done.stdout, done.stderr
    plain = ctl.exec("curl", "-sS", "--max-time", "10", "http://127.0.0.1:8080/v1/status", timeout=20)
    assert plain.returncode != 0 or '"vports_bound"' not in plain.stdout
    untrusted = ctl.exec("curl", "-sS", "--max-time", "10", "https://127.0.0.1:8080/v1/status", timeout=20)
    assert untrusted.returncode != 0  # the system CAs do not vouch for Canopy's certificate


def test_the_canopy_command_checks_the_controller_against_its_ca_file(fabric):
    """canopy status --ca-file (docs/security.md): Canopy's CA is trusted, another CA's refused (exit code 3)."""
    _, ctl, _, pki, rogue, _, _ = fabric
    env = {k: v for k, v in os.environ.items() if k not in ("CANOPY_CA_FILE", "SSL_CERT_FILE", "CANOPY_URL")}

    def status(*args):
        return subprocess.run(["ip", "netns", "exec", ctl.ns, sys.executable, "-m", "controller.cli", "status",
                               "--json", "--url", "https://127.0.0.1:8080", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)

    trusted = status("--ca-file", str(pki.ca_cert))
    assert trusted.returncode == 0 and json.loads(trusted.stdout)["version"], trusted.stderr
    for args in (("--ca-file", str(rogue.ca_cert)), ()):
        refused = status(*args)
        assert refused.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr


def test_the_access_log_never_records_a_query_string(fabric):
    _, _, canopy, _, _, _, _ = fabric
    canopy.api.get("/v1/switches?token=s3cr3t-in-a-query", token="test-token")
    canopy.api.get("/v1/status", token="test-token")  # a later line: the first one has been written
    wait_until(lambda: "GET /v1/status" in canopy.log_path.read_text(), timeout=10, what="the access log line")
    log = canopy.log_path.read_text()
    assert "GET /v1/switches" in log
    assert "s3cr3t-in-a-query" not in log


def test_the_ovs_pki_steps_of_the_security_guide_work(lab):
    """docs/security.md, step by step: ovs-pki's two CAs, the controller's certificate from controllerca and the
    hypervisor's from switchca; the hypervisor's OpenFlow and OVSDB connect over TLS."""
    pki = lab.workdir / "pki"

    def ovs_pki(*args):
        done = subprocess.run(["ovs-pki", f"--dir={pki}", f"--log={lab.workdir / 'ovs-pki.log'}", *args],
                              cwd=lab.workdir, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    ovs_pki("init")
    for prefix, kind in (("ctl", "controller"), ("hv1", "switch")):
        ovs_pki("req+sign", prefix, kind)  # in the current directory: PREFIX-privkey.pem, PREFIX-cert.pem
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"tls": {"key": str(lab.workdir / "ctl-privkey.pem"),
                                                "cert": str(lab.workdir / "ctl-cert.pem"),
                                                "ca_cert": str(pki / "switchca" / "cacert.pem")},
                                        "rest": {"tls": False}})
    hv = lab.add_hypervisor("hv1")
    hv.set_ssl(lab.workdir / "hv1-privkey.pem", lab.workdir / "hv1-cert.pem", pki / "controllerca" / "cacert.pem")
    hv.connect(ctl, scheme="ssl")
    lab.wait_until(lambda: controller_connected(hv) and manager_connected(hv), timeout=30,
                   what="hv1's ssl: controller and manager connected")
    lab.wait_until(lambda: [s["chassis"] for s in canopy.api.get("/v1/ovsdb/sessions").json["items"]] == ["hv1"],
                   timeout=30, what="hv1's OVSDB session synced")
    assert any("hv1" in str(sw) for sw in canopy.api.get("/v1/switches").json["items"])
