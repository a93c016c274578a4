"""The ExaBGP extension's API commands (``announce evpn`` / ``withdraw evpn``): routes injected in a real
neighbor's outgoing RIB, one acknowledgement per line, routes queued together sent in few UPDATEs, a withdrawal
that reuses what its announcement parsed and built."""

from dataclasses import replace

import pytest

from bgp import exabgp_codec, exabgp_ext, routes
from bgp.received import from_exabgp_json
from bgp.routes import to_batch_command, to_command
from tests.unit.exabgp_cases import ALL, TYPE2, TYPE3, TYPE5, FakeReactor, batch_of, dispatch

# --------------------------------------------------------------------------- API commands


@pytest.mark.parametrize("route", ALL, ids=lambda r: f"type{r.TYPE}")
@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_commands_inject_exabgp_changes_and_ack_once(route, action):
    reactor = FakeReactor()
    dispatch(reactor, to_command(route, action, neighbor="127.0.0.2"))
    assert reactor.acks == ["done"]
    [change] = reactor.injected
    assert change.nlri.pack_nlri() == exabgp_ext.build_nlri(route, "announce").pack_nlri()
    assert str(change.nlri.action).lower().endswith(action)


@pytest.mark.parametrize("route, other", [
    (TYPE2, replace(TYPE2, l2_vni=5002, l3_vni=None, esi=7)),
    (TYPE5, replace(TYPE5, l3_vni=9002, gateway="0.0.0.0", esi=3)),
], ids=["type2", "type5"])
def test_a_new_label_replaces_the_route_and_any_labels_withdraw_it(route, other):
    """RFC 7432 7.2 / RFC 9136: ESI and labels are not in the key: ExaBGP's RIB holds one route per key."""
    reactor = FakeReactor()
    dispatch(reactor, to_command(route, "announce"))
    assert reactor.sent() == [("announce", exabgp_ext.build_nlri(route, "announce").pack_nlri())]
    dispatch(reactor, to_command(other, "announce"))  # same key, other VNI: replaces, no withdraw
    assert reactor.sent() == [("announce", exabgp_ext.build_nlri(other, "announce").pack_nlri())]
    dispatch(reactor, to_command(route, "withdraw"))  # a withdraw with the old labels removes it
    assert [action for action, _ in reactor.sent()] == ["withdraw"]
    assert list(reactor.rib.cached_changes()) == []


@pytest.mark.parametrize("line", [
    "announce evpn {}", 'announce evpn {"type":2}', "withdraw evpn nonsense",
    'announce evpn {"type":3,"rd":"1:1","vni":99999999,"next_hop":"192.0.2.1"}',
])
def test_bad_commands_answer_error_once(line):
    reactor = FakeReactor()
    dispatch(reactor, line)
    assert reactor.acks == ["error"] and reactor.injected == []


@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_a_batch_command_injects_every_route_and_acks_once(action):
    """As ExaBGP reads it: its line formatter spaces out brackets and commas before dispatching."""
    from exabgp.configuration.core.format import formated

    routes = batch_of(300)
    reactor = FakeReactor()
    dispatch(reactor, formated(to_batch_command(routes, action, neighbor="127.0.0.2")))
    assert reactor.acks == ["done"]
    injected = reactor.injected
    assert [c.nlri.pack_nlri() for c in injected] == [exabgp_ext.build_nlri(r, action).pack_nlri() for r in routes]
    assert all(str(c.nlri.action).lower().endswith(action) for c in injected)


def test_a_batch_with_one_bad_route_injects_none_and_answers_error_once():
    line = to_batch_command(batch_of(3), "announce").replace('"l2_vni":5001', '"l2_vni":99999999', 1)
    reactor = FakeReactor()
    dispatch(reactor, line)
    assert reactor.acks == ["error"] and reactor.injected == []


def test_command_for_unknown_neighbor_answers_error():
    reactor = FakeReactor()
    dispatch(reactor, to_command(TYPE3, "announce", neighbor="10.9.9.9"))
    assert reactor.acks == ["error"] and reactor.injected == []


@pytest.mark.parametrize("action, name", [("announce", "show neighbor"), ("withdraw", "withdraw route")])
def test_an_evpn_line_goes_to_its_command_whatever_other_command_names_its_payload_holds(action, name, monkeypatch):
    """ExaBGP tries each registered command's name against the whole line (``name + " " in line``) and the first
    found takes it: a batch of 230 routes (60 KB) was searched for 34 names before ``announce evpn`` (~35 ms of
    ExaBGP's CPU for 10,000 routes announced), and a payload holding another command's name went to that command.
    A line that starts with an evpn command goes to it (bgp/exabgp_ext_api.py, "found by their head")."""
    from exabgp.reactor.api.command import Command

    exabgp_ext.install()
    other = []
    monkeypatch.setitem(Command.callback["text"], name, lambda *args: other.append(args) or True)  # tried first
    line = to_batch_command(batch_of(3), action, neighbor="127.0.0.2").replace('"65000:100"', f'"{name} x"', 1)
    reactor = FakeReactor()
    dispatch(reactor, line)
    assert other == [] and reactor.acks == ["error"] and reactor.injected == []  # the bad RD refused by evpn's parser
    dispatch(reactor, f"{name} 10.0.0.0/24 next-hop 127.0.0.1")  # another command's line still goes to it
    assert len(other) == 1


def test_the_ping_probe_is_answered_in_order_with_the_evpn_commands_before_it():
    """bgp.watchdog's probe: scheduled in ExaBGP's real command scheduler like the evpn commands, so its "done"
    comes after theirs (ExaBGP's own "#" answers while it is read, ahead of them: the RouteBook would misread it)."""
    from exabgp.reactor.asynchronous import ASYNC

    reactor = FakeReactor()
    reactor.asynchronous = ASYNC()
    dispatch(reactor, to_command(TYPE3, "announce", neighbor="10.9.9.9"))  # answered "error"
    dispatch(reactor, exabgp_ext.PING)
    dispatch(reactor, "# a comment")
    assert reactor.acks == ["done"]  # the comment's, at once
    reactor.asynchronous.run()
    assert reactor.acks == ["done", "error", "done"] and reactor.injected == []


def test_install_is_idempotent():
    exabgp_ext.install()
    exabgp_ext.install()
    assert exabgp_ext.Command.functions.count("announce evpn") == 1
    assert exabgp_ext.Command.functions.count(exabgp_ext.PING) == 1
    assert routes.ANNOUNCE == "announce"


# --------------------------------------------------------------------------- routes queued together, in few UPDATEs


@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_routes_sharing_attributes_share_updates_split_by_next_hop(action):
    """ExaBGP 5.0.15 sends one UPDATE per EVPN route; installed, routes queued together with the same
    attributes go in one UPDATE per next hop (while they fit), and decode back to the same routes."""
    routes = batch_of(200, next_hops=("192.0.2.1", "192.0.2.2"))
    messages = exabgp_codec.encode_rib_updates(routes, action)
    # announced: per next hop, ANNOUNCED_PER_UPDATE routes an UPDATE (below); withdrawn: one (MP_UNREACH_NLRI
    # has no next hop); the codec negotiates extended messages, so all fit
    per_hop = -(-100 // exabgp_ext.ANNOUNCED_PER_UPDATE)
    assert len(messages) == (2 * per_hop if action == "announce" else 1)
    decoded = [item for message in messages for item in from_exabgp_json(exabgp_codec.decode_update(message))]
    if action == "announce":
        assert sorted(route.mac for _, route in decoded) == sorted(r.mac for r in routes)
        assert {route for _, route in decoded} == set(routes)
    else:
        assert {key for _, key in decoded} == {r.key for r in routes}


def test_announcements_take_a_few_routes_per_update_withdrawals_fill_it():
    """GoBGP re-encodes a path's whole MP_REACH_NLRI for every peer it sends the path to, announced and then
    withdrawn: per route, work in proportion to the routes announced in its UPDATE. Announcements go
    ANNOUNCED_PER_UPDATE to an UPDATE; withdrawals (no MP_REACH_NLRI) fill it (ExaBGP's 4,096 bytes)."""
    cap = exabgp_ext.ANNOUNCED_PER_UPDATE
    assert 1 < cap <= 16
    routes = batch_of(250)
    announced = [len(from_exabgp_json(exabgp_codec.decode_update(m))) for m in exabgp_codec.encode_rib_updates(routes,
                                                                                                          "announce")]
    assert sum(announced) == 250 and max(announced) == cap and len(announced) == -(-250 // cap)
    withdrawn = exabgp_codec.encode_rib_updates(routes, "withdraw")
    assert len(withdrawn) == 1 and len(from_exabgp_json(exabgp_codec.decode_update(withdrawn[0]))) == 250


def test_withdrawals_fill_a_session_s_message_size_when_given():
    """Without extended messages (a GoBGP session) withdrawals fill 4,096-byte UPDATEs: the same routes, more
    messages (the benchmarks' packed feeds must be what GoBGP accepts)."""
    routes = batch_of(250)
    messages = exabgp_codec.encode_rib_updates(routes, "withdraw", message_size=4096)
    assert len(messages) > 1 and max(len(m) for m in messages) <= 4096
    decoded = [key for m in messages for _, key in from_exabgp_json(exabgp_codec.decode_update(m))]
    assert sorted(decoded) == sorted(r.key for r in routes)
    assert len(exabgp_codec.encode_rib_updates(routes, "withdraw")) == 1  # the codec's own size: not changed


def test_routes_with_other_attributes_get_updates_of_their_own():
    routes = batch_of(4)
    routes[2] = replace(routes[2], route_targets=("65000:5002",))
    messages = exabgp_codec.encode_rib_updates(routes, "announce")
    assert sorted(len(from_exabgp_json(exabgp_codec.decode_update(m))) for m in messages) == [1, 3]


# --------------------------------------------------------------------------- a withdrawal reuses its announcement


def test_a_withdraw_command_reuses_what_its_announcement_parsed_and_built(monkeypatch):
    """ExaBGP gets a withdrawn route's text as it got it in the announcement: the withdrawal is neither parsed,
    checked nor built again (that was most of ExaBGP's CPU per withdraw command), and carries the same NLRI
    bytes, now withdrawn."""
    from exabgp.configuration.core.format import formated

    batch = batch_of(300)
    batch = [replace(route, rd="65000:7001") for route in batch]  # texts no other test parsed
    reactor = FakeReactor()
    dispatch(reactor, formated(to_batch_command(batch, "announce")))
    changes = reactor.injected
    announced = [change.nlri.pack_nlri() for change in changes]
    monkeypatch.setattr(routes, "route_from_dict", lambda data: pytest.fail("parsed again"))
    monkeypatch.setattr(exabgp_ext, "build_nlri", lambda route, action: pytest.fail("built again"))
    for part in (batch[:120], batch[120:]):  # other batches than the announcement's (as early withdrawals are)
        dispatch(reactor, formated(to_batch_command(part, "withdraw")))
    assert reactor.acks == ["done", "done", "done"]
    withdrawn = reactor.injected
    assert [change.nlri.pack_nlri() for change in withdrawn] == announced
    assert all(str(change.nlri.action).lower().endswith("withdraw") for change in withdrawn)
    assert all(str(change.nlri.action).lower().endswith("announce") for change in changes)  # left as they were


@pytest.mark.parametrize("spacing", ["compact", "ExaBGP's formatter"])
def test_batch_texts_seen_before_parse_to_the_same_routes_and_bad_ones_still_fail(spacing):
    """``parse_batch_command`` cuts a batch into its routes' texts to look them up; the cut never changes what
    a line means: a text holding the separator inside a string, or a bad route, is parsed whole and refused
    with its position, the first time and again."""
    from exabgp.configuration.core.format import formated

    spaced = formated if spacing != "compact" else (lambda line: line)
    batch = [replace(route, rd="65000:7002") for route in batch_of(5)]
    line = spaced(to_batch_command(batch, "announce"))
    assert routes.parse_batch_command(line) == routes.parse_batch_command(line) == (None, "announce", tuple(batch))
    mixed = batch[:2] + [replace(route, rd="65000:7003") for route in batch[2:]]  # seen first, new after
    assert routes.parse_batch_command(spaced(to_batch_command(mixed, "withdraw")))[2] == tuple(mixed)
    bad = line.replace('"l2_vni":5001', '"l2_vni":99999999').replace('"l2_vni" :5001', '"l2_vni" :99999999')
    tricky = line.replace('"65000:7002"', '"},{"', 1)
    for text, error in ((bad, "route 0: l2_vni"), (tricky, "route 0: rd")):
        for _ in range(2):
            with pytest.raises(ValueError, match=error):
                routes.parse_batch_command(text)


def test_a_withdraw_command_costs_exabgp_a_bounded_count_a_route():
    """A withdrawal whose announcement ExaBGP took costs a bounded count of Python bytecodes a route, its RIB's own
    work included (a 500-route command: ~390 a route; ~525 when its NLRI was copied by ``copy.copy`` and its
    attributes looked up again by their fields): ExaBGP's intake of Canopy's withdrawals sets the pace of evpn_routes'
    withdraw phase once the first is sent (docs/benchmarks.md, wd44)."""
    from exabgp.configuration.core.format import formated

    from tests.bytecodes import opcodes

    batch = [replace(route, rd="65000:7101") for route in batch_of(500)]  # texts no other test parsed
    reactor = FakeReactor()
    dispatch(reactor, formated(to_batch_command(batch, "announce")))
    announced = {change.nlri.index(): change.attributes for change in reactor.injected}
    line = formated(to_batch_command(batch, "withdraw"))
    counted = opcodes(lambda: dispatch(reactor, line))
    assert reactor.acks == ["done", "done"]
    withdrawn = reactor.injected
    assert len(withdrawn) == 500 and all(str(c.nlri.action).lower().endswith("withdraw") for c in withdrawn)
    assert all(announced[c.nlri.index()] is c.attributes for c in withdrawn)  # the announcement's, not looked up
    assert counted / len(batch) < 430, counted / len(batch)
