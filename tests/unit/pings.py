"""Stopped ``Pinger``s (tests/integration/test_evpn_frr.py) built from what ``ping -D -O`` prints: no ping process."""

from __future__ import annotations

from tests.integration.test_evpn_frr import Pinger

RTT_MS = 0.5


def left_at(seq: int) -> float:
    """When request ``seq`` left in these pings (wall clock): one every 10 ms, request 100 at 100.0 s."""
    return 100 + (seq - 100) * 0.01


def ping_lines(sent: int, lost: set[int]) -> list[str]:
    """What ping prints for ``sent`` requests, request N having left at ``left_at(N)``: a reply RTT_MS later, or, for
    the ``lost`` ones, "no answer yet" as the next request goes."""
    lines = []
    for seq in range(1, sent + 1):
        if seq not in lost:
            lines.append(f"[{left_at(seq) + RTT_MS / 1000:.6f}] 64 bytes from 10.0.1.21: icmp_seq={seq} ttl=64 "
                         f"time={RTT_MS} ms\n")
        elif seq < sent:
            lines.append(f"[{left_at(seq + 1):.6f}] no answer yet for icmp_seq={seq}\n")
    return lines


class NoEvidence:
    def report(self) -> str:
        return ""


def stopped_pinger(lines: list[str], reached: int, responder: str = "a1", evidence=NoEvidence()) -> Pinger:
    """A Pinger stopped after ``lines``, ``reached`` of its requests counted by ``responder``'s kernel."""
    named = type("Responder", (), {"name": responder})()
    return Pinger.stopped(lines, named, {"InEchos": reached, "OutErrors": 0}, evidence)
