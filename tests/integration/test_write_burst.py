"""Concurrent REST writes against a real Canopy, SIGKILLed in the middle of the burst again and again: every
write it acknowledged is in the store after the restart (commits run in a thread pool, off the event loop:
docs/store.md), and none is lost between one kill and the next."""

from __future__ import annotations

import threading

import pytest

from tests.harness.http import RestClient
from tests.harness.wait import wait_until

pytestmark = pytest.mark.integration

WRITERS = 12
KILLS = 3
ACKS_BEFORE_KILL = 150  # acknowledgements to wait for (in each round) before the SIGKILL


class Writers:
    """``WRITERS`` threads POSTing tenants until stopped; the names acknowledged with 201."""

    def __init__(self, api, round_no: int):
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(api, round_no, w), daemon=True)
                         for w in range(WRITERS)]

    def _run(self, api, round_no: int, writer: int) -> None:
        client = RestClient(api.ns, api.host, api.port, api.token, timeout=5.0)
        n = 0
        while not self._stop.is_set():
            name = f"r{round_no}-w{writer}-{n}"
            n += 1
            try:
                reply = client.post("/v1/tenants", {"name": name})
            except Exception:  # noqa: BLE001 - the controller was killed under this request: not acknowledged
                return
            if reply.status == 201:
                with self._lock:
                    self.acked.append(name)

    def start(self):
        for thread in self._threads:
            thread.start()
        return self

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> list[str]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        with self._lock:
            return list(self.acked)


def tenant_names(api) -> set[str]:
    return {t["name"] for t in api.get("/v1/tenants").json["items"]}


def test_concurrent_acknowledged_writes_survive_repeated_sigkill(lab):
    ctl_host = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl_host)
    acknowledged: list[str] = []
    for round_no in range(KILLS):
        writers = Writers(canopy.api, round_no).start()
        wait_until(lambda: writers.count() >= ACKS_BEFORE_KILL, timeout=120, interval=0.05,
                   what=f"{ACKS_BEFORE_KILL} writes acknowledged in round {round_no}")
        canopy.kill()  # SIGKILL in the middle of the burst: requests in flight are never answered
        acknowledged += writers.stop()
        canopy.start()
        missing = set(acknowledged) - tenant_names(canopy.api)
        assert not missing, f"round {round_no}: {len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    assert len(acknowledged) >= KILLS * ACKS_BEFORE_KILL
