"""Integration-test harness for Canopy: real Open vSwitch, network namespaces, real traffic.

Start with ``tests.harness.lab.Lab``; the other modules are its parts:

- ``netns``: namespaces, veths, commands and sockets inside a namespace;
- ``process``: child processes with known PIDs, stopped by PID;
- ``runrecord``: the per-run record under /run/canopy-test and the sweep of dead runs;
- ``neighbour_table``: room in the kernel's IPv4 neighbour table (one for every namespace), given back after;
- ``ovs``: one ovsdb-server + ovs-vswitchd per namespace;
- ``hosts`` and ``vports``: controller hosts, hypervisors (VRS), VMs and the per-flavour plugging;
- ``vtep``: hardware VTEPs (the ovs-vtep emulator) and bare-metal servers behind their ports;
- ``controller`` and ``http``: a Canopy process and a REST client reaching it in its namespace;
- ``policy``, ``two_hypervisors`` and ``frames``: policy over REST, the migration tests' lab, a VM's raw frames.
"""
