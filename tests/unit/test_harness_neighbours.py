"""tests.harness.neighbour_table and the lab's use of it: the kernel's IPv4 neighbour table is one for every
namespace, and a kernel holding no room for an asker's entry does not answer its ARP request. At its default size
(1,024) a 50-hypervisor lab left hundreds of VTEPs unresolved by the tunnel probes (docs/benchmarks.md, probes50).
The last lab on the machine to close sets back what the harness raised."""

import json
import logging
import os

from tests.benchmarks.vrs_scale_probes import neighbour_table_fulls
from tests.harness import lab as lab_module
from tests.harness import neighbour_table
from tests.harness.lab import Lab
from tests.harness.process import start_time
from tests.harness.runrecord import live_run_ids


def _table(tmp_path, thresh2: int, thresh3: int):
    (tmp_path / "gc_thresh2").write_text(f"{thresh2}\n")
    (tmp_path / "gc_thresh3").write_text(f"{thresh3}\n")
    return lambda: (int((tmp_path / "gc_thresh2").read_text()), int((tmp_path / "gc_thresh3").read_text()))


def _room(tmp_path, entries: int, sysctl=None) -> None:
    neighbour_table.room(entries, sysctl or tmp_path, tmp_path / "state")


def _give_back(tmp_path, live=frozenset()) -> None:
    neighbour_table.give_back(lambda: set(live), tmp_path, tmp_path / "state")


def test_a_default_table_is_raised_by_the_room_asked_for(tmp_path):
    read = _table(tmp_path, 512, 1024)
    _room(tmp_path, 5000)
    assert read() == (3012, 6024)  # the hard limit 1,024 + 5,000; entries idle 5 s are evicted only above half


def test_a_larger_table_is_never_lowered(tmp_path):
    """Another lab on the machine (or its operator) may need more."""
    read = _table(tmp_path, 20000, 40000)
    _room(tmp_path, 5000)
    assert read() == (20000, 40000)
    read = _table(tmp_path, 100, 40000)  # each limit on its own
    _room(tmp_path, 5000)
    assert read() == (3012, 40000)


def test_a_table_that_cannot_be_written_is_a_warning_not_a_failed_lab(tmp_path, caplog):
    missing = tmp_path / "nowhere"
    with caplog.at_level(logging.WARNING, logger=neighbour_table.__name__):
        _room(tmp_path, 5000, missing)
        _room(tmp_path, 5200, missing)  # the next host of the same lab: no second warning
    assert "gc_thresh3 not raised to 6024" in caplog.text
    assert len(caplog.records) == 1


def test_the_last_lab_to_close_sets_back_what_the_harness_found(tmp_path):
    read = _table(tmp_path, 512, 1024)
    _room(tmp_path, 500)
    _room(tmp_path, 5000)  # a second lab (or this one's next host) raises more: what was found stays the first
    assert read() == (3012, 6024)
    _give_back(tmp_path)
    assert read() == (512, 1024)
    assert not (tmp_path / "state").exists()
    _give_back(tmp_path)  # nothing raised since: nothing to do
    assert read() == (512, 1024)


def test_the_table_stays_raised_while_another_lab_is_open(tmp_path):
    read = _table(tmp_path, 512, 1024)
    _room(tmp_path, 5000)
    _give_back(tmp_path, live={"ab12"})
    assert read() == (3012, 6024)
    _give_back(tmp_path)  # that lab closes
    assert read() == (512, 1024)


def test_a_limit_changed_since_by_someone_else_is_left_and_one_not_raised_is_not_touched(tmp_path):
    read = _table(tmp_path, 4000, 1024)  # gc_thresh2 already larger: only gc_thresh3 is raised
    _room(tmp_path, 5000)
    assert read() == (4000, 6024)
    (tmp_path / "gc_thresh3").write_text("9000\n")  # an operator's
    (tmp_path / "gc_thresh2").write_text("4500\n")
    _give_back(tmp_path)
    assert read() == (4500, 9000)


def test_a_run_whose_owner_died_does_not_keep_the_table_raised(tmp_path):
    """live_run_ids is what a lab's close passes: a crashed lab's record is left behind, its owner gone."""
    records = tmp_path / "runs"
    records.mkdir()
    me = [os.getpid(), start_time(os.getpid())]
    (records / "aaaa.json").write_text(json.dumps({"owner": me}))
    (records / "bbbb.json").write_text(json.dumps({"owner": [me[0], me[1] + 1]}))  # that pid's earlier process
    assert live_run_ids(records) == {"aaaa"}
    read = _table(tmp_path, 512, 1024)
    _room(tmp_path, 5000)
    (records / "aaaa.json").unlink()
    neighbour_table.give_back(lambda: live_run_ids(records), tmp_path, tmp_path / "state")
    assert read() == (512, 1024)


def test_a_lab_gives_the_table_back_after_removing_its_own_record(monkeypatch):
    """Else its own record would count as another open lab and the table would never be given back."""
    seen: list[bool] = []
    lab = Lab()
    lab.record = type("Record", (), {"removed": False, "data": {"namespaces": []}})()
    lab.record.remove = lambda: setattr(lab.record, "removed", True)
    monkeypatch.setattr(lab_module.neighbour_table, "give_back", lambda live: seen.append(lab.record.removed))
    lab.close()
    assert seen == [True]


def test_a_lab_makes_room_for_every_host_to_know_every_other_on_both_networks(monkeypatch):
    """50 hypervisors and two controller hosts: every hypervisor asks every other for its VTEP on the underlay and
    answers only with room for the asker (2,450 entries), and the management network adds an entry per host and
    controller at each end."""
    asked: list[int] = []
    monkeypatch.setattr(lab_module.neighbour_table, "room", asked.append)
    lab = Lab()
    monkeypatch.setattr(lab, "_new_namespace", lambda suffix: suffix)  # no namespace made: the sizing only
    for name in ["ctla", "ctlb"] + [f"hv{h:02d}" for h in range(50)]:
        lab._new_host(name)
    assert len(asked) == 52 and asked == sorted(asked)  # grows with the lab
    assert asked[-1] >= 50 * 49 + 2 * 2 * 50


def test_vrs_scale_reads_the_overflows_of_every_cpu(tmp_path):
    """/proc/net/stat/arp_cache: one row per CPU, in hex; the benchmark's "table full N times" is their sum."""
    stat = tmp_path / "arp_cache"
    stat.write_text("entries  allocs   destroys hash_grows lookups  hits     res_failed rcv_probes_mcast "
                    "rcv_probes_ucast periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n"
                    "00000400 0000e4e6 0000dcbd 00000004 002b8d4f 000e25a9 00000034 00000000 00000000 00000000 "
                    "00002434 00000000 00001e98\n"
                    "00000400 0000dd19 0000e53d 00000004 002995ad 000d25d6 00000037 00000000 00000000 000005d6 "
                    "000022af 00000000 0000000a\n")
    assert neighbour_table_fulls(str(stat)) == 0x1E98 + 0xA
    assert neighbour_table_fulls() >= 0  # this machine's own table reads too


def test_a_lab_closes_even_when_the_run_records_cannot_be_read(monkeypatch, caplog):
    """Teardown never raises (a record with no owner, say, must not fail the test that closes a lab)."""
    lab = Lab()

    def broken(live):
        raise KeyError("owner")

    monkeypatch.setattr(lab_module.neighbour_table, "give_back", broken)
    with caplog.at_level(logging.ERROR, logger=lab_module.__name__):
        lab.close()
    assert "give the neighbour table back failed" in caplog.text
