"""A real Neutron driving Canopy, inside a Lab: MariaDB, Neutron 29 under uWSGI (noauth, fake transport, no
agents, the networking-canopy driver) and a fake Nova, all in the controller's namespace (they reach Canopy
on its loopback). Installed by .ci/setup: the Debian package mariadb-server and the venv .venv-neutron with
neutron 29, uwsgi, PyMySQL and networking_canopy (docs/openstack.md, docs/testing.md).
"""

from __future__ import annotations

import shutil
import signal
import sys
import textwrap
from pathlib import Path

from tests.harness import netns
from tests.harness.fake_nova import read_events
from tests.harness.http import RestClient

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-neutron"
DB_PORT, NEUTRON_PORT, NOVA_PORT = 3306, 9696, 8774
VNI_RANGE = "5000:5999"


def neutron_unavailable() -> str | None:
    """Why the Neutron lab cannot run here (None: it can)."""
    for path in (VENV / "bin" / "uwsgi", VENV / "bin" / "neutron-db-manage"):
        if not path.exists():
            return f"{path} is missing: run .ci/setup"
    for tool in ("mariadbd", "mariadb-install-db", "mariadb"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is missing: apt-get install mariadb-server (.ci/setup does)"
    if not list((VENV / "lib").glob("python3*/site-packages/*networking_canopy*")):
        return "networking_canopy is not installed in .venv-neutron: run .ci/setup"
    return None


class NeutronLab:
    """Start with ``start()``; the Lab stops every process at teardown (they are spawned through it)."""

    def __init__(self, lab, ctl, canopy_port: int = 8080, canopy_token: str = "test-token",
                 sync_interval: int = 5, gateway_macs: dict | None = None):
        self.lab, self.ctl = lab, ctl
        self.gateway_macs = gateway_macs or {}
        self.dir = lab.workdir / "openstack"
        self.canopy_port, self.canopy_token, self.sync_interval = canopy_port, canopy_token, sync_interval
        self.api = RestClient(ctl.ns, "127.0.0.1", NEUTRON_PORT, token=None, timeout=30)
        self.events_file = self.dir / "nova-events.jsonl"
        self.neutron_log = self.dir / "neutron.log"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._start_mariadb()
        self._write_neutron_config()
        netns.run([str(VENV / "bin" / "neutron-db-manage"), "--config-file", str(self.dir / "neutron.conf"),
                   "--config-file", str(self.dir / "ml2_conf.ini"), "upgrade", "head"], ns=self.ctl.ns, timeout=300)
        self.lab.spawn("fake-nova", [sys.executable, "-m", "tests.harness.fake_nova", str(NOVA_PORT),
                                     str(self.events_file)], self.dir / "fake-nova.log", ns=self.ctl.ns,
                       env={"PYTHONPATH": str(REPO)})
        self.start_neutron()

    def start_neutron(self) -> None:
        """Run Neutron's API under uWSGI and wait until it answers."""
        self.neutron = self.lab.spawn("neutron", [str(VENV / "bin" / "uwsgi"), "--ini", str(self.dir / "uwsgi.ini")],
                                      self.neutron_log, ns=self.ctl.ns)
        self.lab.wait_until(self._answers, timeout=120, interval=0.5, what="Neutron's API (log: %s)" % self.neutron_log)

    def stop_neutron(self) -> None:
        """SIGTERM Neutron (uWSGI dies on term) and wait until it has exited."""
        self.neutron.send(signal.SIGTERM)
        self.lab.wait_until(lambda: not self.neutron.alive(), timeout=30, what="Neutron stopped")

    def set_sync_interval(self, seconds: int) -> None:
        """Takes effect at the next start_neutron()."""
        self.sync_interval = seconds
        self._write_neutron_config()

    def _answers(self) -> bool:
        try:
            return self.api.get("/v2.0/networks").status == 200
        except OSError:
            return False

    # ------------------------------------------------------------------ MariaDB
    def _start_mariadb(self) -> None:
        db = self.dir / "db"
        cnf = self.dir / "my.cnf"
        cnf.write_text(textwrap.dedent(f"""\
            [mysqld]
            datadir = {db}
            socket = {self.dir}/mysqld.sock
            pid-file = {self.dir}/mysqld.pid
            port = {DB_PORT}
            bind-address = 127.0.0.1
            user = root
            skip-name-resolve
            innodb_buffer_pool_size = 32M
            innodb_log_file_size = 16M
            max_connections = 100
            [client]
            socket = {self.dir}/mysqld.sock
            user = root
            """))
        netns.run(["mariadb-install-db", f"--defaults-file={cnf}", "--skip-test-db"], timeout=120)
        self.lab.spawn("mariadb", ["mariadbd", f"--defaults-file={cnf}"], self.dir / "mariadb.log", ns=self.ctl.ns)

        def sql(statement):
            return netns.run(["mariadb", f"--defaults-file={cnf}", "-e", statement], check=False, timeout=10)

        self.lab.wait_until(lambda: sql("SELECT 1").returncode == 0, timeout=60, interval=0.3, what="MariaDB")
        sql("CREATE DATABASE neutron CHARACTER SET utf8mb4; CREATE USER 'neutron'@'127.0.0.1' IDENTIFIED BY "
            "'neutron'; GRANT ALL PRIVILEGES ON neutron.* TO 'neutron'@'127.0.0.1';")

    # ------------------------------------------------------------------ Neutron
    def _write_neutron_config(self) -> None:
        d = self.dir
        (d / "state").mkdir(exist_ok=True)
        shutil.copy(VENV / "etc" / "neutron" / "api-paste.ini", d / "api-paste.ini")
        (d / "neutron.conf").write_text(textwrap.dedent(f"""\
            [DEFAULT]
            core_plugin = ml2
            service_plugins = canopy_router
            auth_strategy = noauth
            transport_url = fake:/
            dhcp_agent_notification = false
            notify_nova_on_port_status_changes = true
            notify_nova_on_port_data_changes = false
            api_paste_config = {d}/api-paste.ini
            state_path = {d}/state
            [database]
            connection = mysql+pymysql://neutron:neutron@127.0.0.1:{DB_PORT}/neutron?charset=utf8mb4
            [nova]
            auth_type = none
            endpoint = http://127.0.0.1:{NOVA_PORT}/v2.1
            [oslo_concurrency]
            lock_path = {d}/state
            [securitygroup]
            enable_security_group = true
            [oslo_policy]
            policy_file = {d}/policy.yaml
            """))
        # Nova sets binding:profile as a service user; noauth's admin context plays Nova here
        (d / "policy.yaml").write_text('"create_port:binding:profile": ""\n"update_port:binding:profile": ""\n')
        (d / "ml2_conf.ini").write_text(textwrap.dedent(f"""\
            [ml2]
            type_drivers = vxlan,flat
            tenant_network_types = vxlan
            mechanism_drivers = canopy
            extension_drivers = port_security
            [ml2_type_vxlan]
            vni_ranges = {VNI_RANGE}
            [canopy]
            url = http://127.0.0.1:{self.canopy_port}
            token = {self.canopy_token}
            sync_interval = {self.sync_interval}
            watch_wait = 10
            external_gateway_macs = {",".join(f"{k}:{v}" for k, v in self.gateway_macs.items())}
            """))
        (d / "uwsgi.ini").write_text(textwrap.dedent(f"""\
            [uwsgi]
            http-socket = 127.0.0.1:{NEUTRON_PORT}
            module = neutron.wsgi.api:application
            virtualenv = {VENV}
            master = true
            processes = 1
            enable-threads = true
            lazy-apps = true
            die-on-term = true
            need-app = true
            env = OS_NEUTRON_CONFIG_DIR={d}
            env = OS_NEUTRON_CONFIG_FILES=neutron.conf;ml2_conf.ini
            """))

    # ------------------------------------------------------------------ the OpenStack API
    def create(self, collection: str, body: dict) -> dict:
        """POST /v2.0/<collection>s (security_group: security-groups) with {<collection>: body}; returns the
        object (asserts 201)."""
        reply = self.api.post(_path(collection), {collection: body})
        assert reply.status == 201, f"{collection} create: {reply.status} {reply.text}"
        return reply.json[collection]

    def update(self, collection: str, obj_id: str, body: dict) -> dict:
        """PUT /v2.0/<collection>s/<id> with {<collection>: body}; returns the object (asserts 200)."""
        reply = self.api.put(f"{_path(collection)}/{obj_id}", {collection: body})
        assert reply.status == 200, f"{collection} update: {reply.status} {reply.text}"
        return reply.json[collection]

    def delete(self, collection: str, obj_id: str) -> None:
        reply = self.api.delete(f"{_path(collection)}/{obj_id}")
        assert reply.status == 204, f"{collection} delete: {reply.status} {reply.text}"

    def show(self, collection: str, obj_id: str) -> dict:
        reply = self.api.get(f"{_path(collection)}/{obj_id}")
        assert reply.status == 200, f"{collection} show: {reply.status} {reply.text}"
        return reply.json[collection]

    def nova_events(self) -> list[dict]:
        return read_events(self.events_file)


def _path(collection: str) -> str:
    return "/v2.0/" + collection.replace("_", "-") + "s"
