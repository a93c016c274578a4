"""The pair's decision rules (controller.ha.Pair._decide) on a real store and State, the HA link not
started: who becomes active, when a standby must not take over (split brain), fencing by generation, and
when an active may acknowledge a write."""

import threading
import time

import pytest

from controller import settings as settings_mod
from controller.core import build_core
from controller.discovery import VrsSnapshot
from controller.ha import HUB_DEAD_INTERVALS, STARTUP_DEAD_INTERVALS, Pair
from controller.service import NotActive
from controller.store import Change
from controller.yamldoc import Doc
from tests.unit.interleave import BOUND

DEAD = 0.5
SECRET = "unit-test-pair-secret"


def ha_settings(tmp_path):
    """Node b of a pair with 10.250.0.1, its data in ``tmp_path``/d, dead after DEAD seconds."""
    return settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"), "ha": {
        "node_id": "b", "peer": "10.250.0.1", "priority": 100, "heartbeat_interval_ms": 100,
        "dead_interval_ms": int(DEAD * 1000), "secret": SECRET}}))


@pytest.fixture
def node(tmp_path):
    settings = ha_settings(tmp_path)
    store, state, _ = build_core(settings)
    roles = []
    pair = Pair(settings.ha, store, state, lambda role, gen: roles.append((role, gen)))
    pair.roles = roles
    yield pair
    store.close()


def see_switches(pair, *masters):
    """The VRS this node sees; each True means it reports a connected master."""
    for i, master in enumerate(masters):
        role = "master" if master else "slave"
        pair.state.vrs[f"s{i}"] = VrsSnapshot(f"s{i}", "p", f"hv{i}", controllers=(("tcp:10.250.0.1:6653", True,
                                                                                      role),))


def hear(pair, now, role, generation=1, seq=0, priority=100, switches=0):
    pair.peer.node, pair.peer.role, pair.peer.generation = "a", role, generation
    pair.peer.seq, pair.peer.priority, pair.peer.switches, pair.peer.heard_at = seq, priority, switches, now


def test_alone_it_waits_for_the_startup_intervals_then_becomes_active(node):
    start = node.started
    node._decide(start + DEAD)
    assert node.role == "starting"
    node._decide(start + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active" and node.roles == [("active", 1)]
    assert node.store.get_meta("ha_generation") == 1


def test_a_live_active_peer_makes_it_standby_and_it_learns_the_generation(node):
    hear(node, node.started, "active", generation=7)
    msg = {"t": "hb", "node": "a", "role": "active", "generation": 7}
    node._on_frame(msg)  # as the link delivers it: noted on its receiving thread, then handled
    node._on_message(msg)
    node._decide(node.started + 0.1)
    assert node.role == "standby" and node.generation == 7


def test_standby_takes_over_a_silent_peer_only_when_the_switches_agree(node):
    hear(node, node.started, "active", generation=3, switches=2)
    node._decide(node.started)
    assert node.role == "standby"
    later = node.started + 2 * DEAD
    see_switches(node, True, True)  # the active still masters its switches: only the HA link is cut
    node._decide(later)
    assert node.role == "standby"
    see_switches(node, False, True)  # one of two: no majority
    node._decide(later)
    assert node.role == "standby"
    see_switches(node, False, False)  # the active's connections are gone
    node._decide(later)
    assert node.role == "active" and node.generation == 4  # above every generation seen: fences the old one


def test_a_node_that_sees_fewer_switches_than_the_peer_reported_does_not_take_over(node):
    hear(node, node.started, "active", generation=3, switches=3)
    node._decide(node.started)
    see_switches(node, False)  # sees 1 of the 3 the active had: not a majority view
    node._decide(node.started + 10)
    assert node.role == "standby"


def test_an_active_demoted_by_a_switch_steps_down(node):
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active"
    node.switch_reported(node.generation, "slave")  # our own generation: nothing newer
    node._decide(node.started + 10)
    assert node.role == "active"
    node.switch_reported(node.generation + 1, "slave")
    node._decide(node.started + 10)
    assert node.role == "standby"


def see_unpublished_switch(pair, key="s0"):
    """A switch that has just connected: its Controller rows are there, OVS has not yet published their roles."""
    pair.state.vrs[key] = VrsSnapshot(key, "p", "hv0", controllers=(("tcp:10.250.0.1:6653", False, ""),
                                                                    ("tcp:10.250.0.2:6653", False, "")))


def test_a_lone_node_does_not_go_active_on_a_switch_whose_roles_are_not_published(node):
    """faults50: the HA link cut, a new switch whose controllers' roles OVS had not published yet counted as free;
    the node went active beside a live active that took the switch a moment later (split brain)."""
    start = node.started
    see_unpublished_switch(node)
    node._decide(start + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "starting"  # cannot judge the switch: waits
    see_switches(node, True)  # the switch publishes: the other node is its master
    node._decide(start + STARTUP_DEAD_INTERVALS * DEAD + node.report_lag_limit + 1)
    assert node.role == "starting" and node.roles == []
    assert node.status()["switches"] == {"seen": 1, "reporting_a_master": 1, "roles_unpublished": 0}


def test_a_switch_that_never_publishes_its_roles_counts_as_free_after_the_bound(node):
    start = node.started
    see_unpublished_switch(node)
    first = start + STARTUP_DEAD_INTERVALS * DEAD
    node._decide(first)
    assert node.report_lag_limit == 10  # two of OVS's status periods: more than 4 dead intervals of 0.5 s
    node._decide(first + node.report_lag_limit - 0.5)
    assert node.role == "starting" and node.status()["switches"]["roles_unpublished"] == 1
    node._decide(first + node.report_lag_limit)
    assert node.role == "active" and "published no controller roles" in node.reason


def test_a_switch_whose_active_went_counts_as_free_at_once(node):
    """OVS clears a controller's role when its connection drops (3.1: ``role: []``, ``is_connected: false``), so the
    switch of a dead active shows one row without a role: it has published (this node's row has its role) and a
    takeover waits no ``report_lag_limit`` for it (it waited 10 s when any row without a role counted)."""
    node.state.vrs["s0"] = VrsSnapshot("s0", "p", "hv0", controllers=(("ptcp:6653", False, ""),
                                                                      ("tcp:10.250.0.1:6653", False, ""),
                                                                      ("tcp:10.250.0.2:6653", True, "slave")))
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active" and node.status()["switches"]["roles_unpublished"] == 0


def test_a_lone_node_whose_switches_publish_no_master_goes_active(node):
    see_switches(node, False)
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active" and "published" not in node.reason


def active_alone(pair) -> float:
    """Make ``pair`` active with no peer heard and no switch; returns the time it decided."""
    now = pair.started + STARTUP_DEAD_INTERVALS * DEAD
    pair._decide(now)
    assert pair.role == "active"
    return now


def test_an_active_that_hears_its_peer_leaves_it_to_the_generations(node):
    now = active_alone(node)
    see_switches(node, True)
    hear(node, now, "standby", generation=0)
    for step in range(4):
        hear(node, now + step * node.report_lag_limit, "standby", generation=0)
        node._decide(now + step * node.report_lag_limit)
    assert node.role == "active"


def test_two_undecided_nodes_elect_the_newest_data_first(node):
    hear(node, node.started, "starting", seq=5, priority=10)  # the peer has newer data, lower priority
    node._decide(node.started)
    assert node.role == "starting"  # the peer wins; it will say it is active
    hear(node, node.started, "starting", seq=0, priority=10)
    node._decide(node.started)
    assert node.role == "active"


def test_writes_are_refused_with_the_active_named(node):
    hear(node, node.started, "active")
    node._decide(node.started)
    assert "10.250.0.1" in node.writable() and "standby" in node.writable()


def free_ports(n):
    """``n`` ports kept for the test (tests/unit/replication_pair.py ``free_port``): the closed one stays closed."""
    from tests.unit.replication_pair import free_port

    return [free_port() for _ in range(n)]


def test_a_refused_ha_link_alone_is_no_reason_to_take_over(tmp_path):
    """The peer was heard, then its host refuses the link (a firewall's reject looks the same as a dead
    process): the standby takes over only once the switches report no master. Real dial to a closed port."""
    closed_port, own_port = free_ports(2)
    settings = settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"), "ha": {
        "node_id": "b", "peer": "127.0.0.1", "peer_port": closed_port, "listen": "127.0.0.1", "port": own_port,
        "heartbeat_interval_ms": 50, "dead_interval_ms": 500, "secret": SECRET}}))
    store, state, _ = build_core(settings)
    pair = Pair(settings.ha, store, state, lambda role, gen: None)
    try:
        pair.link.start()
        hear(pair, time.monotonic(), "active", generation=5, switches=3)
        pair.role = "standby"
        see_switches(pair, True, True, True)  # the active still holds its switches
        deadline = time.monotonic() + 10
        while not pair.link.refused() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pair.link.refused()
        pair._decide(time.monotonic())
        assert pair.role == "standby"
        assert pair.status()["peer"]["link"]["refused"] is True
        see_switches(pair, False, False, False)  # now its connections are gone: it is
        pair._decide(time.monotonic())
        assert pair.role == "active" and pair.generation == 6
    finally:
        pair.link.stop()
        store.close()


def _write(pair):
    seq = pair.store.last_seq() + 1
    return [Change("tenant", "t1", "put", {"id": "t1", "source": None, "name": "acme"}, seq, seq, time.time())]


def test_an_active_without_a_confirming_standby_refuses_writes_unless_solo(node):
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active" and node.writable() is None
    with pytest.raises(NotActive) as refused:
        node.replicate(_write(node), {})
    assert refused.value.code == "not_replicated" and "solo" in refused.value.reason
    assert node.status()["refused_writes"] == 1 and node.status()["solo"]["enabled"] is False
    node.set_solo(True, "a test")
    node.replicate(_write(node), {})  # acknowledged alone
    assert node.status()["solo"] == {"enabled": True, "since": node.solo["since"], "by": "a test"}
    assert node.status()["refused_writes"] == 1


def test_a_write_refused_as_solo_mode_was_turned_on_while_it_waited_says_so(node):
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    confirm = node.replicator.confirm

    def operator_turns_solo_on_meanwhile(changes, meta, solo):
        node.set_solo(True, "a test")
        return confirm(changes, meta, solo=solo)

    node.replicator.confirm = operator_turns_solo_on_meanwhile
    with pytest.raises(NotActive) as refused:
        node.replicate(_write(node), {})
    reason = refused.value.reason
    assert refused.value.code == "not_replicated" and "nothing was changed" in reason
    assert "solo mode was turned on while this write waited" in reason and "retry it" in reason
    assert "PUT /v1/ha/solo" not in reason  # it is on already
    node.replicator.confirm = confirm
    node.replicate(_write(node), {})  # the retry stands alone


def test_a_node_that_becomes_active_forgets_the_unconfirmed_write_of_its_earlier_term(node):
    # a solo-mode write no standby confirmed, which a snapshot of the peer then took away
    peers = node.store.snapshot()  # the peer's store: without the write
    node.set_solo(True, "a test")
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    write = _write(node)
    node.replicate(write, {})  # acknowledged alone; the replicator waits for the standby to hold seq 1
    node.store.apply_replicated(write, {})  # committed, as the service does (controller/service.py)
    node.replicator.committed(write)
    node._become("standby", "the peer is active")
    node.store.restore(peers)  # the peer's snapshot replaced our store
    node._become("active", "the peer is silent")
    node.replicator.on_message({"t": "hb", "seq": 0, "history": [0, None]})  # the standby holds all the store has
    assert node.replicator.synced and not node.replicator.lagging


def test_solo_mode_from_the_settings(tmp_path):
    settings = settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"), "ha": {
        "peer": "10.250.0.1", "secret": SECRET, "solo": True}}))
    store, state, _ = build_core(settings)
    pair = Pair(settings.ha, store, state, lambda role, gen: None)
    assert pair.status()["solo"]["enabled"] and "settings" in pair.status()["solo"]["by"]
    store.close()


def test_an_active_superseded_by_a_newer_peer_or_switch_refuses_before_acknowledging(node):
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    node.set_solo(True, "a test")  # not even solo mode lets a replaced active acknowledge
    hear(node, time.monotonic(), "active", generation=node.generation + 1)
    with pytest.raises(NotActive) as refused:
        node.replicate(_write(node), {})
    assert refused.value.code == "not_active" and "newer generation" in refused.value.reason
    hear(node, time.monotonic() - 10, "standby")
    node.replicate(_write(node), {})
    node.switch_reported(node.generation + 1, "slave")
    with pytest.raises(NotActive):
        node.replicate(_write(node), {})


def test_an_active_whose_process_did_not_run_for_longer_than_the_dead_interval_steps_down(node):
    """The pulse (an OS thread) missed its beats for 10 dead intervals: with the CPU of a busy process it was
    running (a GIL held, not a stop); with none it was stopped (SIGSTOP) or starved, and steps down."""
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    node.pulse._thread = object()  # as if it were beating
    node.pulse._last = (time.monotonic() - 10 * DEAD, time.process_time() - 10 * DEAD)  # busy: it was running
    assert node.status()["role"] == "active"
    node.pulse._last = (time.monotonic() - 10 * DEAD, time.process_time())  # stopped (SIGSTOP) or starved
    status = node.status()
    assert status["role"] == "standby" and "did not run" in status["reason"]
    assert node.roles[-1][0] == "standby" and node.writable()


def test_a_busy_event_loop_is_no_stall_but_a_stuck_one_steps_the_active_down(node):
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    node.pulse._thread = object()
    node._hub_tick = time.monotonic() - (HUB_DEAD_INTERVALS - 1) * DEAD  # busy for 9 dead intervals
    assert node.writable() is None and node.role == "active"
    node._hub_tick = time.monotonic() - (HUB_DEAD_INTERVALS + 1) * DEAD  # the peer counts it stuck now
    assert node.writable() and node.role == "standby" and "event loop did not turn" in node.reason


def test_a_peer_whose_heartbeats_arrive_is_alive_while_busy_and_gone_once_stuck(node):
    hear(node, node.started, "active", generation=3)
    node._decide(node.started)
    assert node.role == "standby"
    msg = {"t": "hb", "node": "a", "role": "active", "generation": 3, "hub_lag": (HUB_DEAD_INTERVALS - 1) * DEAD}
    node._on_frame(msg)  # heard now; its event loop has been busy for 9 dead intervals
    assert node._peer_alive(time.monotonic()) and node.status()["peer"]["event_loop_lag"] == msg["hub_lag"]
    node._decide(time.monotonic())
    assert node.role == "standby"
    node._on_frame({**msg, "hub_lag": HUB_DEAD_INTERVALS * DEAD})  # stuck: as good as silent
    assert not node._peer_alive(time.monotonic())
    node._decide(time.monotonic())
    assert node.role == "active"  # no switch known: nothing to fence (with switches, rule 2 still applies)


@pytest.mark.parametrize("ha, error", [
    ({"peer": "10.250.0.1"}, "ha.secret: is required with ha.peer"),
    ({"peer": "10.250.0.1", "secret": "short"}, "ha.secret: must be at least 16 characters"),
    ({"peer": "10.250.0.1", "secret_file": "/nonexistent/secret"},
     "ha.secret_file: /nonexistent/secret does not exist"),
    ({"peer": "10.250.0.1", "secret": SECRET, "secret_file": "/x"}, "not both"),
], ids=["missing", "short", "no-file", "both"])
def test_a_pair_needs_a_shared_secret(tmp_path, ha, error):
    with pytest.raises(settings_mod.SettingsError) as refused:
        settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"), "ha": ha}))
    assert error in str(refused.value)


def test_the_secret_may_come_from_a_file(tmp_path):
    path = tmp_path / "ha-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    settings = settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"),
                                                 "ha": {"peer": "10.250.0.1", "secret_file": str(path)}}))
    assert settings.ha.secret == SECRET and SECRET not in repr(settings)
    store, state, _ = build_core(settings)
    try:  # /v1/ha said "(ha.secret)" although this file set no ha.secret
        auth = Pair(settings.ha, store, state, lambda role, gen: None).status()["auth"]
    finally:
        store.close()
    assert auth["method"] == f"hmac-sha256 shared secret (ha.secret_file {path})"


def test_the_ha_status_names_an_inline_secret_as_ha_secret(node):
    assert node.status()["auth"]["method"] == "hmac-sha256 shared secret (ha.secret)"


def test_a_secret_file_other_users_can_read_is_refused_naming_it_and_its_mode(tmp_path):
    """As ssh does for a private key: an operator who left the secret world-readable hears so at start."""
    path = tmp_path / "ha-secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o644)
    with pytest.raises(settings_mod.SettingsError) as refused:
        settings_mod.from_doc(Doc("<t>", {"ha": {"peer": "10.250.0.1", "secret_file": str(path)}}))
    assert f"ha.secret_file: {path} has mode 0644" in str(refused.value) and "chmod 600" in str(refused.value)


def rest_node(tmp_path, extra_routes=()):
    """A node of a pair behind its REST API, still deciding its role: (store, state, pair, call), where
    call(method, path, body, token="t0ken") -> (status, body)."""
    import json

    from controller.rest.api import Api
    from controller.rest.wire import Request

    settings = settings_mod.from_doc(Doc("<t>", {"data_dir": str(tmp_path / "d"), "rest": {"token": "t0ken"},
                                                 "ha": {"peer": "10.250.0.1", "secret": SECRET}}))
    store, state, service = build_core(settings)
    pair = Pair(settings.ha, store, state, lambda role, gen: None)
    service.replicate, service.writable = pair.replicate, pair.writable
    api = Api(service, state, settings, ha=pair, extra_routes=extra_routes)

    def call(method, path, body, token="t0ken"):
        resp = api.handle(Request(method, path, {}, {"authorization": f"Bearer {token}"}, json.dumps(body).encode()))
        return resp.status, resp.body

    call.routes, call.api = api.routes, api

    return store, state, pair, call


def test_over_rest_a_write_the_standby_cannot_confirm_is_a_503_that_changes_nothing_until_solo(tmp_path):
    store, state, pair, call = rest_node(tmp_path)
    pair._decide(pair.started + STARTUP_DEAD_INTERVALS * pair.settings.dead_interval)
    assert pair.role == "active"
    status, body = call("POST", "/v1/tenants", {"name": "acme"})
    assert status == 503 and body["error"]["code"] == "not_replicated" and "solo" in body["error"]["reason"]
    assert store.last_seq() == 0 and store.load_objects() == {} and state.policy.count("tenant") == 0
    assert call("PUT", "/v1/ha/solo", {"solo": "yes"})[0] == 422
    status, body = call("PUT", "/v1/ha/solo", {"solo": True})
    assert status == 200 and body["solo"]["enabled"] and "REST" in body["solo"]["by"]
    assert call("POST", "/v1/tenants", {"name": "acme"})[0] == 201
    assert store.last_seq() == 1 and state.policy.count("tenant") == 1
    assert call("PUT", "/v1/ha/solo", {"solo": False})[1]["solo"]["enabled"] is False
    assert call("POST", "/v1/tenants", {"name": "other"})[0] == 503
    store.close()


def test_a_node_not_active_takes_its_own_log_level_but_no_policy_write(tmp_path):
    """The log level is each node's own (not replicated): an operator debugging the standby sets it there."""
    from controller import logs

    store, _, pair, call = rest_node(tmp_path)
    assert pair.writable()  # not the active (still deciding, as a standby would be)
    previous = logs.current_level()  # process-wide: put back after
    try:
        status, body = call("PUT", "/v1/log-level", {"level": "debug"})
        assert status == 200 and body["level"] == "debug", body
        status, body = call("POST", "/v1/tenants", {"name": "acme"})
        assert status == 503 and body["error"]["code"] == "not_active"
    finally:
        logs.set_level(previous)
        store.close()


def test_a_node_not_active_takes_only_the_node_local_writes_and_only_with_the_token(tmp_path):
    """docs/rest.md names the two writes a standby takes; a route marked local by mistake (one that changes the
    pair's data) would pass the standby's gate, so the list is held here. Each still needs the token."""
    from controller.stretchtrace import StretchTracer, routes

    store, _, pair, call = rest_node(tmp_path, extra_routes=routes(StretchTracer(3, sample_interval=None)))
    try:
        assert pair.writable()
        assert {(r.method, r.pattern) for r in call.routes if r.local} == {("PUT", "/v1/log-level"),
                                                                           ("DELETE", "/v1/stretches")}
        assert all(r.write for r in call.routes if r.local)
        assert call("DELETE", "/v1/stretches", None)[0] == 200
        assert call("DELETE", "/v1/stretches", None, token="wrong")[0] == 401
        assert call("PUT", "/v1/log-level", {"level": "info"}, token="wrong")[0] == 401
    finally:
        store.close()


def test_silence_counts_only_up_to_when_the_link_last_read(node):
    """A node resumed after a stop may decide before its receiving thread has read what arrived meanwhile:
    the peer is silent only for as long as the link was reading and heard nothing."""
    now = time.monotonic()
    hear(node, now - 10 * DEAD, "active", generation=3)
    node.role = "standby"
    node.link.listened_at = now - 10 * DEAD + DEAD / 2  # the receiving thread last read then (it was stopped)
    node._decide(now)
    assert node.role == "standby" and node._peer_alive(now)
    node.link.listened_at = now  # it read since: nothing from the peer
    node._decide(now)
    assert node.role == "active"


def test_after_a_stop_it_decides_nothing_until_the_link_has_read_what_came_meanwhile(node):
    """Resumed (SIGCONT), its view of the peer is stale: a heartbeat saying "standby" from before the stop must
    not make it win an election while the peer's newer "active" ones are still unread in the socket."""
    now = time.monotonic()
    hear(node, now, "standby", seq=0, priority=10)  # as the peer was before the stop; it is fresh enough
    node.pulse._thread = object()
    node.pulse._last = (now - 10 * DEAD, time.process_time())  # this process did not run
    node.link.listened_at = now - 10 * DEAD  # nor did the link's receiving thread
    node._check_stall()
    node._decide(now)
    assert node.role == "starting"
    node.link.listened_at = time.monotonic()  # it has read since: the view is current
    node._decide(time.monotonic())
    assert node.role == "active"


def test_a_new_generation_is_durable_before_the_heartbeat_or_status_carries_it(node):
    """set_meta's fsync runs in the thread pool (controller/store.py offload): while it runs, the heartbeat (built
    on the HA link's OS thread) and status must still carry the generation the store holds, so a kill -9 then
    never leaves the peer or a switch with a generation this node forgets."""
    seen = []
    real = node.store.offload

    def offload(function, *args):
        seen.append((node._heartbeat()["generation"], node.status()["generation_id"],
                     node.store.get_meta("ha_generation")))
        return real(function, *args)

    node.store.offload = offload
    node._decide(node.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert node.role == "active" and node.generation == 1 == node.store.get_meta("ha_generation")
    assert seen == [(0, 0, None)]


def test_a_takeover_and_learning_the_peers_generation_do_not_overlap(node):
    """A takeover writes its new generation (durably: set_meta waits for its fsync) while the standby hears a
    heartbeat with the peer's generation. Learning it must wait for the takeover: otherwise it is decided against
    the generation before, written after, and the active ends up with (and remembers) a generation below the one
    it gave its switches, which they then refuse as stale."""
    from tests.unit.interleave import Gate, SpyLock, either, finish, run

    hear(node, node.started, "standby", generation=3)
    node.generation, node.switch_generation = 3, 6  # learned from the peer; a switch reported 6

    gate, contended = Gate(), threading.Event()
    node._lock = SpyLock(node._lock, contended)
    node.store._lock = SpyLock(node.store._lock, contended)
    real, calls = node.store.offload, []

    def offload(function, *args):
        calls.append(args)
        if len(calls) == 1:
            gate.stop()  # the takeover's fsync
        return real(function, *args)

    node.store.offload = offload
    takeover, _, failed_a = run(node._become, "active", "the peer is silent")
    assert gate.entered.wait(BOUND)
    msg = {"t": "hb", "node": "a", "role": "standby", "generation": 5}  # older than the takeover's 7, newer than 3
    node._on_frame(msg)
    learning, learned, failed_b = run(node._on_message, msg)
    either(contended, learned)  # waits for the takeover (fixed) or has decided already
    gate.open()
    finish(takeover, learning)
    assert not failed_a and not failed_b, failed_a + failed_b
    assert node.role == "active" and node.roles[-1] == ("active", node.generation)
    assert node.generation == 7 == node.store.get_meta("ha_generation"), (node.generation, calls)
