"""tests/integration/test_ha_hold_frr.py's wait for the restarted standby (``Restarted``): what it looked at each time
the look changed, a released hold by its message (its status has no "waiting_for"), and a timeout's message with what
was seen, the reflector's view of the session and the standby's log."""

from types import SimpleNamespace

from tests.integration.test_ha_hold_frr import Restarted
from tests.integration.test_ha_hold_takeover import Looks

RR = "10.250.0.4"


class FakeApi:
    def __init__(self, answers):
        self.answers, self.now = answers, 0

    def get(self, path):
        role, hold, session = self.answers[self.now]
        body = {"/v1/ha": {"role": role}, "/v1/status": {"startup_hold": hold},
                "/v1/bgp/peers": {"items": [{"address": RR, "state": session}]}}[path]
        return SimpleNamespace(json=body)


def syncing(*names):
    return {"state": "syncing", "message": "waiting", "waiting_for": [{"kind": "vrs", "name": n} for n in names]}


RELEASED = {"state": "synced", "message": "all 2 switches connected before have reported"}


def test_a_released_hold_is_seen_by_its_message_and_only_standby_up_and_waiting_for_hva2_is_ready():
    api = FakeApi([("starting", syncing("hva", "hva2"), "idle"), ("standby", RELEASED, "up"),
                   ("standby", RELEASED, "up"), ("standby", syncing("hva2"), "up")])
    node = SimpleNamespace(api=api, log_tail=lambda: "the log")
    reflector = SimpleNamespace(host=SimpleNamespace(ip=RR), json=lambda command: {
        "10.250.0.3": {"bgpState": "Established", "lastResetDueTo": "Notification received"}})
    restarted = Restarted(node, Looks(node), reflector)
    ready = []
    for api.now in range(4):
        ready.append(restarted())
    assert ready == [False, False, False, True]
    looks = [look for _, look in restarted.seen]
    assert looks == [(("starting", "syncing"), "idle", ["vrs hva", "vrs hva2"]),
                     (("standby", "synced"), "up", RELEASED["message"]),
                     (("standby", "syncing"), "up", ["vrs hva2"])]
    said = restarted.said("10.250.0.3")
    assert "'bgpState': 'Established', 'lastResetDueTo': 'Notification received'" in said
    assert RELEASED["message"] in said and said.endswith("the standby's log:\nthe log")
