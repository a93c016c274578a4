"""A ``POST /v1/apply`` of many vports gives the event loop turns all along (issue 15 item 1): its body parsed and its
depth measured, the commit read before State takes it, and its answer encoded, each pausing every so many units; and
pausing changes nothing they produce. Counted, never timed (docs/benchmarks.md, "Branch applypace", has the CPU)."""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

from controller.journal import Journal
from controller.model import LISTED
from controller.pacer import Pacer
from controller.rest import api as rest_api
from controller.rest import wire
from controller.rest import jsonbody
from controller.rest.wire import ApiError, Request, _json_body
from controller.rest.server import RestServer
from controller.state import State
from controller.store import Change
from tests.unit.helpers import TOKEN, Controller
from tests.unit.test_compiler import base_state, snapshot

HV1 = ("hv1", "10.251.0.1")


def body_request(data) -> Request:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return Request("POST", "/v1/apply", {}, {"content-type": "application/json"}, raw)


def test_a_big_body_is_parsed_and_measured_with_pauses_and_reads_the_same(monkeypatch):
    """Each step pauses as often as it does alone, in order: the bytes turned into text a megabyte at a time (a pause
    between two), then the text decoded and measured (tests/unit/test_jsonbody.py counts the decoder's pauses shape
    by shape)."""
    data = {"items": [{"a": {"b": i, "c": [i, "x"]}} for i in range(60_000)]}  # 2.4 MB
    events = []
    text = jsonbody.text
    monkeypatch.setattr(jsonbody, "text", lambda raw, pause: (text(raw, pause), events.append("text done"))[0])
    assert _json_body(body_request(data), lambda: events.append("pause")) == data == _json_body(body_request(data))
    decoded = []  # the decoder's own pauses, on the same text
    jsonbody.loads(json.dumps(data), wire.MAX_DEPTH, lambda: decoded.append(1))
    pieces = -(-len(json.dumps(data)) // jsonbody.TEXT_EVERY)
    assert pieces >= 2 and len(decoded) >= 5
    assert events == ["pause"] * (pieces - 1) + ["text done"] + ["pause"] * len(decoded) + ["text done"]  # then unpaced


@pytest.mark.parametrize("raw", [b"[" * 40 + b"]" * 40, b'{"a": ' + b"[" * 33 + b"]" * 33 + b"}",
                                 b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", b'{"a": 1,}', b"\xff", b"[1, 2]",
                                 b'{"a": ' + b"1" * 5000 + b"}"],
                         ids=["too deep", "one too deep", "deeper than the parser goes", "not JSON", "not UTF-8",
                              "not an object", "a number of 5,000 digits"])
def test_a_bad_body_is_refused_alike_with_pauses(raw):
    answers = []
    for pause in (None, lambda: None):
        with pytest.raises(ApiError) as refused:
            _json_body(body_request(raw), pause)
        answers.append((refused.value.status, refused.value.code, refused.value.reason, refused.value.field))
    assert answers[0] == answers[1] and answers[0][0] == 400


def apply_body(count: int, mac_of=lambda i: f"02:00:00:01:{i >> 8:02x}:{i & 0xff:02x}") -> bytes:
    vports = [{"name": f"v{i}", "mac": mac_of(i), "ips": [f"10.7.{i >> 8}.{i & 0xff}"],
               "binding": {"flavour": "kvm", "iface_id": f"v{i}"}} for i in range(10, 10 + count)]
    return json.dumps({"document": {"tenants": [{"name": "t", "domains": [{"name": "d", "subnets": [
        {"name": "s", "cidr": "10.7.0.0/16", "gateway": "10.7.0.1", "vports": vports}]}]}]}, "source": "s"}).encode()


def served(ctl, body: bytes):
    """(status line, the bytes the REST server answered, the Response the API made, pauses before and after the
    API answered) of one POST /v1/apply through the WSGI application eventlet's server calls."""
    pauses, made = [], []
    ctl.api.pause = lambda: pauses.append(1)
    handle = ctl.api.handle

    def handled(req):
        made.append((handle(req), len(pauses)))
        return made[-1][0]

    ctl.api.handle = handled
    server = RestServer("127.0.0.1", 0, ctl.api, ctl.settings.limits)
    status = []
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/apply", "QUERY_STRING": "", "CONTENT_TYPE":
               "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
               "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(body)}
    answer = b"".join(server.application(environ, lambda line, headers: status.append(line)))
    resp, before = made[0]
    return status[0], answer, resp, before, len(pauses) - before


@pytest.mark.parametrize("bad", [False, True])
def test_the_answer_of_a_big_apply_is_encoded_with_pauses_and_reads_the_same(tmp_path, bad):
    """An apply of 2,500 vports answers 2,503 changes, encoded with a pause every ANSWER_EVERY of them, the same bytes
    as in one piece; or (bad MACs) the first 20 of its 2,500 problems and one for the others (controller/model.py
    ``listed``)."""
    ctl = Controller(tmp_path)
    try:
        body = apply_body(2500, lambda i: f"03:00:00:00:{i >> 8:02x}:{i & 0xff:02x}") if bad else apply_body(2500)
        status, answer, resp, _, encoding = served(ctl, body)
        assert status.startswith("422" if bad else "200")
        assert answer == resp.encoded()
        listed = json.loads(answer)["error"]["errors"] if bad else json.loads(answer)["changes"]
        assert len(listed) == (LISTED + 1 if bad else 2503)  # bad: the first 20 and "and 2,480 more"
        if bad:
            assert listed[-1]["reason"] == "and 2,480 more problems of this field (not listed)" and listed[-1]["field"].endswith("vports[].mac")
        assert encoding == len(listed) // rest_api.ANSWER_EVERY
    finally:
        ctl.close()


def test_an_apply_pauses_while_its_body_is_read_before_its_plan_starts(tmp_path):
    ctl = Controller(tmp_path)
    try:
        planned = []
        plan = ctl.service.apply
        ctl.service.apply = lambda *args, **kwargs: (planned.append(len(pauses)), plan(*args, **kwargs))[1]
        pauses = []
        ctl.api.pause = lambda: pauses.append(1)
        resp = ctl.api.handle(Request("POST", "/v1/apply", {}, {"authorization": f"Bearer {TOKEN}"},
                                      apply_body(6000)))
        assert resp.status == 200 and len(resp.body["changes"]) == 6003
        assert planned[0] >= 2  # the body decoded, 60,000 values measured, before the plan
    finally:
        ctl.close()


# ---------------------------------------------------------------------------------------------- the commit

def with_vports(state: State, names, iface=lambda name: name):
    """State's policy with a vport per name added to acme/web (bound where a port shows iface-id ``iface(name)``),
    and the change list of that commit."""
    policy = state.policy.copy()
    subnet = policy.find("subnet", "acme/web")
    for name in names:
        policy.put("vport", {"id": name, "source": None, "subnet_id": subnet["id"], "name": name, "description": "",
                             "mac": "02:00:00:00:0b:01", "ips": [], "port_security": True, "acls": [],
                             "binding": {"flavour": "kvm", "iface_id": iface(name), "port_name": None,
                                         "vnic_id": None, "host": None, "trunk_port": None, "vlan": None}})
    seq = state.last_seq
    return policy, [Change("vport", name, "put", None, seq=seq + 1 + i) for i, name in enumerate(names)]


NAMES = [f"n{i}" for i in range(600)]


def ported_state() -> tuple[State, Journal]:
    """The 600 vports' ports on hv1 before the vports exist (an apply burst binds them all)."""
    state = base_state()
    journal = state.journal()
    state.vrs_update(snapshot(*HV1, [(name, 10 + i) for i, name in enumerate(NAMES)]))
    journal.take()
    return state, journal


def what(state: State, journal: Journal):
    index = state.index
    return (state.policy, state.last_seq, dict(index.key_of), dict(index.vport_at), dict(state.locations),
            {name: getattr(journal, name) for name in journal.__dataclass_fields__})


def test_a_commit_is_read_with_pauses_before_state_takes_it_and_ends_the_same():
    plain, plain_journal = ported_state()
    policy, changes = with_vports(plain, NAMES)
    plain.policy_committed(policy, changes)

    state, journal = ported_state()
    old = state.policy
    seen = []
    state.pacer = Pacer(lambda: seen.append((state.policy is old, any(n in state.index.key_of for n in NAMES),
                                             len(state.locations))), every=50)
    state.policy_committed(policy, changes)
    reading = [s for s in seen if s[0]]
    assert len(reading) == len(NAMES) // 50  # a pause every 50 changes read, State untouched meanwhile
    assert all(not indexed and located == 0 for _, indexed, located in reading)
    assert what(state, journal) == what(plain, plain_journal)
    assert len(state.locations) == len(NAMES)


INTERLEAVED = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()   # as under ryu-manager: threading's lock is green
    import json, sys
    sys.path.insert(0, {root!r})
    from controller.pacer import Pacer
    from controller.store import Change
    from tests.unit.test_apply_pacing import NAMES, ported_state, what, with_vports

    def commits(state):  # B as the service builds it after A: on A's policy, one vport more
        a = with_vports(state, NAMES)
        b = a[0].copy()
        late = dict(a[0].get("vport", NAMES[0]), id="late", name="late")
        b.put("vport", late)
        return a, (b, [Change("vport", "late", "put", None, seq=a[1][-1].seq + 1)])

    plain, plain_journal = ported_state()
    a, b = commits(plain)
    plain.policy_committed(*a)
    plain.policy_committed(*b)

    state, journal = ported_state()
    old, events = state.policy, []

    def commit_b():
        events.append(("b starts", state.policy is old))
        state.policy_committed(*b)
        events.append(("b taken", state.policy is b[0]))

    pending = [lambda: eventlet.spawn(commit_b)]
    state.pacer = Pacer(lambda: (pending and pending.pop()(), events.append(("pause", state.policy is old)),
                                 eventlet.sleep(0)), every=50)
    state.policy_committed(*a)
    events.append(("a taken", state.policy is a[0]))
    eventlet.sleep(0)
    print(json.dumps({{"same": what(state, journal) == what(plain, plain_journal), "events": events}}))
""")


def test_a_commit_arriving_while_another_is_read_waits_until_that_one_is_taken():
    """Two commits into State whose reads interleave (the second arrives in a pause of the first's read, as a green
    thread under ryu-manager) are taken one after the other: State ends as after the two in order (the first taken,
    then the second read against it), never on the first's policy with the second only in the binding index."""
    code = INTERLEAVED.format(root=os.getcwd())
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    events = [tuple(e) for e in result["events"]]
    reading = [i for i, event in enumerate(events) if event == ("pause", True)]  # A's read, State untouched
    assert len(reading) == len(NAMES) // 50 and events.index(("b starts", True)) < reading[1]  # B came in the first
    assert events.index(("b taken", True)) > reading[-1]  # ... and was taken after A, not in A's pauses
    assert result["same"]


def test_a_commit_started_inside_a_pause_of_another_in_the_same_thread_is_refused_not_deadlocked():
    state, _ = ported_state()
    policy, changes = with_vports(state, NAMES)
    nested = []
    state.pacer = Pacer(lambda: nested or nested.append(state.policy_committed(*with_vports(state, ["x"]))), every=50)
    with pytest.raises(RuntimeError, match="inside a pause of another"):
        state.policy_committed(policy, changes)
    assert not state.policy.get("vport", "x")
    state.pacer = Pacer()
    state.policy_committed(policy, changes)  # the lock was let go
    assert state.policy is policy
