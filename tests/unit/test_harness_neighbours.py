"""tests.harness.netns.neighbour_room and the lab's use of it: the kernel's IPv4 neighbour table is one for every
namespace, and a kernel holding no room for an asker's entry does not answer its ARP request. At its default size
(1,024) a 50-hypervisor lab left hundreds of VTEPs unresolved by the tunnel probes (docs/benchmarks.md, probes50)."""

import logging

from tests.benchmarks.vrs_scale_probes import neighbour_table_fulls
from tests.harness import lab as lab_module
from tests.harness import netns
from tests.harness.lab import Lab


def _table(tmp_path, thresh2: int, thresh3: int):
    (tmp_path / "gc_thresh2").write_text(f"{thresh2}\n")
    (tmp_path / "gc_thresh3").write_text(f"{thresh3}\n")
    return lambda: (int((tmp_path / "gc_thresh2").read_text()), int((tmp_path / "gc_thresh3").read_text()))


def test_a_default_table_is_raised_by_the_room_asked_for(tmp_path):
    read = _table(tmp_path, 512, 1024)
    netns.neighbour_room(5000, tmp_path)
    assert read() == (3012, 6024)  # the hard limit 1,024 + 5,000; entries idle 5 s are evicted only above half


def test_a_larger_table_is_never_lowered(tmp_path):
    """Another lab on the machine (or its operator) may need more."""
    read = _table(tmp_path, 20000, 40000)
    netns.neighbour_room(5000, tmp_path)
    assert read() == (20000, 40000)
    read = _table(tmp_path, 100, 40000)  # each limit on its own
    netns.neighbour_room(5000, tmp_path)
    assert read() == (3012, 40000)


def test_a_table_that_cannot_be_written_is_a_warning_not_a_failed_lab(tmp_path, caplog):
    missing = tmp_path / "nowhere"
    with caplog.at_level(logging.WARNING, logger=netns.__name__):
        netns.neighbour_room(5000, missing)
        netns.neighbour_room(5200, missing)  # the next host of the same lab: no second warning
    assert "gc_thresh3 not raised to 6024" in caplog.text
    assert len(caplog.records) == 1


def test_a_lab_makes_room_for_every_host_to_know_every_other_on_both_networks(monkeypatch):
    """50 hypervisors and two controller hosts: every hypervisor asks every other for its VTEP on the underlay and
    answers only with room for the asker (2,450 entries), and the management network adds an entry per host and
    controller at each end."""
    asked: list[int] = []
    monkeypatch.setattr(lab_module.netns, "neighbour_room", asked.append)
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
