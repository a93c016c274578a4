import sys, time, threading
from tests.harness.lab import Lab
from tests.benchmarks import evpn_routes as er
from tests.benchmarks import evpn_routes_floor as fl

class B:  # the bits of Bench the floor's helpers use
    def __init__(self, lab): self.lab, self.setup = lab, {}
    def progress(self, text): print(text, file=sys.stderr, flush=True)

n = 10000
with Lab() as lab:
    b = B(lab)
    hv = lab.add_hypervisor("kvmx", "kvm")
    vports = [er.out_vport(i) for i in range(n)]
    for round_ in range(int(sys.argv[1])):
        for monitored in (True, False):
            t = time.monotonic(); er.transact(hv, er.add_ports_ops(vports)); add = time.monotonic() - t
            s = fl.settle(b, hv, n)
            mon = fl.Monitor(hv.ovs.db_socket, 300) if monitored else None
            ops = er.delete_ports_ops(hv, {v["name"] for v in vports})
            pids = [p.pid for p in hv.ovs.processes]
            c0 = [er.cpu_seconds([p]) for p in pids]
            started = time.monotonic(); ans = {}
            def send():
                er.transact(hv, ops); ans["at"] = time.monotonic() - started
            th = threading.Thread(target=send); th.start()
            upd = mon.wait_deletes(n) if mon else None
            th.join()
            if mon: mon.close()
            time.sleep(0.5)
            c1 = [er.cpu_seconds([p]) for p in pids]
            import os
            print(f"round {round_} monitored={monitored} add {add:.2f} settle {s:.1f} answer {ans['at']:.2f} "
                  f"update {'-' if not upd else round(upd['last'] - started, 2)} cpu server/vswitchd "
                  f"{c1[0]-c0[0]:.2f}/{c1[1]-c0[1]:.2f} load {os.getloadavg()[0]:.1f}", flush=True)
