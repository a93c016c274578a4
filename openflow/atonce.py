"""How many switches' reconcilers (openflow/reconciler.py) may do each heavy step at the same time.

Each step pauses every few milliseconds of CPU (controller/pacer.py), and a paused green thread resumes in the hub's
next round, which runs every green thread that was ready when it began: with 50 switches doing the same step at
once, each round held 50 turns, and every other green thread (OpenFlow echo replies, OVSDB probes, HA heartbeats,
REST) waited for all of them. A few at a time, the work takes the same CPU and the rounds stay short; the next
switch goes ahead as soon as one is done (or its reconciler stopped).
"""

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
#: a change set and waiting for the switch's answer are not limited: the switches apply theirs in parallel.
PLANS_AT_ONCE = 6
PLANS = hub.BoundedSemaphore(PLANS_AT_ONCE)
