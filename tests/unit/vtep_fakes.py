"""Stand-ins for the hardware VTEP unit tests (tests/unit/test_vtep.py).

``FakeVtepDb`` holds IDL-shaped rows and applies a ``VtepPlan`` the way ovsdb-server would: strong
references must point at existing rows, a locator's (encapsulation, dst_ip, tunnel_key) is unique,
and unreferenced locators and locator sets are garbage collected. ``FakeReplica`` gives the
reconciler the ``Replica`` interface over it, with scripted transaction outcomes.
"""

from __future__ import annotations

import itertools
import uuid

from controller.discovery import VtepDesired
from ovsdb import idl
from ovsdb.vtep import VtepRows, plan_vtep
from ovsdb.vtep_sync import apply_plan

OWN_IP = "10.251.0.9"
HV1, HV2, HV3 = "10.251.0.1", "10.251.0.2", "10.251.0.3"
MAC1, MAC2, MAC3 = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:03"
_uuids = itertools.count(1)

# Reference columns per table, for integrity checks and garbage collection.
REFS = {
    "Physical_Port": ("vlan_bindings",),
    "Ucast_Macs_Local": ("logical_switch", "locator"),
    "Mcast_Macs_Local": ("logical_switch", "locator_set"),
    "Ucast_Macs_Remote": ("logical_switch", "locator"),
    "Mcast_Macs_Remote": ("logical_switch", "locator_set"),
    "Physical_Locator_Set": ("locators",),
    "Tunnel": ("local", "remote"),
}
COLLECTED = ("Physical_Locator_Set", "Physical_Locator")  # non-root tables
# Columns a new row gets from the server when the transaction leaves them out.
DEFAULTS = {"Physical_Locator": {"tunnel_key": []}, "Logical_Switch": {"tunnel_key": [], "description": ""}}


class Row:
    """An IDL-like row: attributes are columns; ``uuid`` is unique."""

    def __init__(self, table: str, **columns):
        self.uuid = uuid.UUID(int=next(_uuids))  # as an IDL row's
        self.table = table
        self.__dict__.update(columns)

    def __repr__(self) -> str:
        return "%s(%s)" % (self.table, getattr(self, "name", getattr(self, "MAC", self.uuid)))


def _targets(value) -> list:
    """The rows a column value references."""
    if isinstance(value, Row):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, Row)]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Row)]
    return []


class FakeVtepDb:
    """A hardware_vtep database with one physical switch ``tor1`` (ports p1, p2) by default."""

    def __init__(self, ports=("p1", "p2"), replication_mode=True):
        self.tables: dict[str, list[Row]] = {}
        self.replication_mode = replication_mode
        self.ports = {name: self.add("Physical_Port", name=name, vlan_bindings={}) for name in ports}
        self.switch = self.add("Physical_Switch", name="tor1", description="OVS VTEP Emulator",
                               tunnel_ips=[OWN_IP], management_ips=[], ports=list(self.ports.values()))
        self.commits = 0

    @property
    def own(self) -> Row:
        """The switch's own locator (its tunnel IP), as vtep-ctl finds or creates it."""
        found = [r for r in self.all("Physical_Locator") if r.dst_ip == OWN_IP]
        return found[0] if found else self.locator(OWN_IP)

    def add(self, table: str, **columns) -> Row:
        row = Row(table, **columns)
        self.tables.setdefault(table, []).append(row)
        return row

    def all(self, table: str) -> list[Row]:
        return list(self.tables.get(table, ()))

    def locator(self, ip: str) -> Row:
        return self.add("Physical_Locator", encapsulation_type="vxlan_over_ipv4", dst_ip=ip, tunnel_key=[])

    def logical_switch(self, name: str, key: int | None) -> Row:
        return self.add("Logical_Switch", name=name, tunnel_key=[] if key is None else [key],
                        replication_mode=[], description="")

    def rows(self) -> VtepRows:
        return VtepRows(switch=self.switch, logical_switches=tuple(self.all("Logical_Switch")),
                        ports=tuple(self.all("Physical_Port")), ucast_local=tuple(self.all("Ucast_Macs_Local")),
                        mcast_local=tuple(self.all("Mcast_Macs_Local")),
                        ucast_remote=tuple(self.all("Ucast_Macs_Remote")),
                        mcast_remote=tuple(self.all("Mcast_Macs_Remote")),
                        locators=tuple(self.all("Physical_Locator")), replication_mode=self.replication_mode)

    def ls(self, vni: int) -> Row | None:
        return next((r for r in self.all("Logical_Switch") if r.name == "canopy-%d" % vni), None)

    def apply(self, plan) -> None:
        """Commit ``plan`` in one transaction, checked like ovsdb-server checks it."""
        writer = FakeWriter(self)
        apply_plan(plan, writer, self.replication_mode)
        self._check_and_collect()
        self.commits += 1

    def _check_and_collect(self) -> None:
        live = {id(row) for rows in self.tables.values() for row in rows}
        for table, columns in REFS.items():
            for row in self.all(table):
                for column in columns:
                    for target in _targets(getattr(row, column, None)):
                        assert id(target) in live, "%r.%s references deleted %r" % (row, column, target)
        keys = [(r.encapsulation_type, r.dst_ip, tuple(r.tunnel_key)) for r in self.all("Physical_Locator")]
        assert len(keys) == len(set(keys)), "duplicate Physical_Locator: %s" % keys
        for table in COLLECTED:
            referenced = {id(t) for refs_table, columns in REFS.items() for row in self.all(refs_table)
                          for column in columns for t in _targets(getattr(row, column, None))}
            self.tables[table] = [row for row in self.all(table) if id(row) in referenced]

    # What the emulated switch does on its own.
    def switch_learns(self, vni: int, mac: str) -> Row:
        return self.add("Ucast_Macs_Local", MAC=mac, logical_switch=self.ls(vni), ipaddr="", locator=self.own)

    def switch_floods_locally(self, vni: int) -> Row:
        locator_set = self.add("Physical_Locator_Set", locators=[self.own])
        return self.add("Mcast_Macs_Local", MAC="unknown-dst", logical_switch=self.ls(vni), locator_set=locator_set)

    def switch_clears_local(self, vni: int) -> None:
        ls = self.ls(vni)
        for table in ("Ucast_Macs_Local", "Mcast_Macs_Local"):
            self.tables[table] = [r for r in self.all(table) if r.logical_switch is not ls]
        self._check_and_collect()

    # Reading back.
    def bindings(self, port: str = "p1") -> dict:
        return {vlan: ls.name for vlan, ls in self.ports[port].vlan_bindings.items()}

    def remote_macs(self) -> set:
        return {(r.logical_switch.name, r.MAC, r.ipaddr, r.locator.dst_ip) for r in self.all("Ucast_Macs_Remote")}

    def flood(self) -> dict:
        return {r.logical_switch.name: sorted(loc.dst_ip for loc in r.locator_set.locators)
                for r in self.all("Mcast_Macs_Remote")}

    def locator_ips(self) -> list:
        return sorted(r.dst_ip for r in self.all("Physical_Locator"))


class FakeWriter:
    """The ``ovsdb.idl.RowWriter`` interface, applied straight to a ``FakeVtepDb``."""

    def __init__(self, db: FakeVtepDb):
        self.db = db

    def insert(self, table, **columns):
        return self.db.add(table, **{**DEFAULTS.get(table, {}), **columns})

    def set(self, row, column, value):
        setattr(row, column, value)

    def verify(self, row, column):
        assert row in self.db.all(row.table), "verify on a deleted row"

    def set_key(self, row, column, key, value):
        getattr(row, column)[key] = value

    def del_key(self, row, column, key):
        getattr(row, column).pop(key, None)

    def delete(self, row):
        self.db.tables[row.table].remove(row)


def desired(lss=(5001,), bindings=(("p1", 100, 5001),),
            remote=((5001, MAC1, "10.0.1.11", HV1), (5001, MAC2, None, HV2)),
            flood=((5001, (HV1, HV2)),)) -> VtepDesired:
    return VtepDesired(logical_switches=tuple(lss), bindings=tuple(bindings), remote_macs=tuple(remote),
                       flood=tuple(flood))


def converge(db: FakeVtepDb, want, limit: int = 5) -> int:
    """Apply plans until one is empty; return how many transactions it took."""
    for n in range(limit):
        plan = plan_vtep(want, db.rows())
        if plan.empty:
            return n
        db.apply(plan)
    raise AssertionError("no convergence after %d transactions: %s" % (limit, plan_vtep(want, db.rows())))


class FakePending:
    def __init__(self, result):
        self.result = result

    def poll(self):
        return self.result


class FakeReplica:
    """``rows``/``has_column``/``change_seqno``/``transact`` over a FakeVtepDb; outcomes are scripted."""

    def __init__(self, db: FakeVtepDb):
        self.db = db
        self.change_seqno = 1
        self.outcomes: list = []  # TxnResult per transaction; default success (applied)
        self.comments: list = []

    def rows(self, table):
        return self.db.all(table)

    def has_column(self, table, column):
        return self.db.replication_mode

    def transact(self, body, comment=""):
        self.comments.append(comment)
        outcome = self.outcomes.pop(0) if self.outcomes else idl.TxnResult(idl.TXN_SUCCESS)
        if outcome is not None and outcome.ok:
            body(FakeWriter(self.db))
            self.db._check_and_collect()
            self.change_seqno += 1
        return FakePending(outcome)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now
