"""How many switches' reconcilers (openflow/reconciler.py) may do each heavy step at the same time.

Each step pauses every few milliseconds of CPU (controller/pacer.py), and a paused green thread resumes in the hub's
next round, which runs every green thread that was ready when it began: with 50 switches doing the same step at
once, each round held 50 turns, and every other green thread (OpenFlow echo replies, OVSDB probes, HA heartbeats,
REST) waited for all of them. A few at a time, the work takes the same CPU and the rounds stay short; the next
switch goes ahead as soon as one is done (or its reconciler stopped). The switches that do go ahead pause through
one lane (controller/app.py ``reconcile_lane``): one of them computes between two turns of the rest of the loop.
"""

import contextlib

from controller.ryu_compat import hub

#: Switches read back at the same time. Each read-back streams every flow of its switch (16,000 flows: 2.5 MB),
#: and OVS's echo requests queue behind it on the same connection; with 50 switches read back at once after a
#: restart, each stream advanced one message per turn of the whole event loop and OVS dropped switch after
#: switch on its 5 s inactivity probe, so they were read back again and again (tests/benchmarks/vrs_scale.py).
READ_BACKS_AT_ONCE = 8
READ_BACKS = hub.BoundedSemaphore(READ_BACKS_AT_ONCE)

#: Switches whose read-back is taken in (the flows keyed, the book replaced) or whose change set is planned at the
#: same time: each pauses every RECONCILE_EVERY flows (2-4 ms of CPU). After a restart 30 of 50 switches did so at
#: once and each round of the hub took 70-100 ms of CPU (docs/benchmarks.md, vrs_scale, branch startlag). Encoding
#: a change set is limited apart (ENCODES); waiting for the switch's answer is not: the switches apply theirs in
#: parallel.
PLANS_AT_ONCE = 6
PLANS = hub.BoundedSemaphore(PLANS_AT_ONCE)

#: A plan of at most this many changed owners (a vport, a route: tens of flows each) takes no slot: it is planned in
#: a turn or two, and an urgent change (a new vport) on a switch already in sync does not wait behind the full plans
#: and read-backs of every other switch at a restart (44 of them 6 at a time: seconds).
SMALL_PLAN_OWNERS = 16


def plan_slot(dirty: set | None):
    """What a reconciler holds while it plans with the book's ``dirty`` owners (None: a full plan): a PLANS slot,
    or nothing for a small plan (SMALL_PLAN_OWNERS)."""
    if dirty is not None and len(dirty) <= SMALL_PLAN_OWNERS:
        return contextlib.nullcontext()
    return PLANS


#: Switches whose change set is encoded at the same time (openflow/changeset.py ``encode_all``): each pauses every
#: RECONCILE_EVERY flows (1-3 ms of CPU). At a cold start every switch encodes its 16,000 flow adds once planned; the
#: plans come PLANS_AT_ONCE at a time, but their encodings piled up: 19-35 of 50 switches' reconcilers took turns in
#: each of the cold start's worst lag samples, 51-74 ms of the loop's CPU (docs/benchmarks.md, vrs_scale, branch
#: restartlag). Sending the bytes and waiting for the switch to apply them are not limited: switches apply theirs in
#: parallel.
ENCODES_AT_ONCE = 6
ENCODES = hub.BoundedSemaphore(ENCODES_AT_ONCE)

#: A change set of at most this many messages is encoded without a slot: a turn or two (a new vport: tens of flows),
#: which must not wait behind the full change sets of every other switch at a cold start.
SMALL_CHANGE_SET = 1000


def encode_slot(messages: int):
    """What ``encode_all`` holds while it encodes a change set of ``messages``: an ENCODES slot, or nothing for a
    small one (SMALL_CHANGE_SET)."""
    if messages <= SMALL_CHANGE_SET:
        return contextlib.nullcontext()
    return ENCODES
