"""Every YAML example in README.md and docs/*.md is valid for the current code, read by the product's own loaders
(docs/testing.md, "The docs' examples"): an operator who copies one gets no error, and the docs cannot drift.

A fenced ```yaml block is either settings (its top-level keys are settings sections: read by
controller.settings.from_doc, as `canopy check-settings` does) or a policy document (read and planned by
controller.policydoc, as `canopy check` does). A policy fragment that lists only `vports` or `vtep_bindings`
(as docs/vtep.md shows a bare-metal server) is placed into config/examples/demo.yaml, whose subnets it names.
Files the examples name under /etc/canopy/ are made in a temporary directory (a secret, a key, certificates).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller import policy as pol
from controller import policydoc, yamldoc
from controller import settings as settings_mod
from controller.model import PolicyError

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SETTINGS_KEYS = {spec.name for spec in settings_mod.SETTINGS}
POLICY_KEYS = {"source", "tenants", "vtep_bindings", "external_networks"}
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def examples(lang: str):
    """(file:line, text) of every ```<lang> block of the docs."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == lang:
                found.append((f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 2}", match.group(2)))
    return found


OTHERS = [(lang, where, text) for lang in ("toml", "json", "ini") for where, text in examples(lang)]


@pytest.mark.parametrize("lang,where,text", OTHERS, ids=[w for _, w, _ in OTHERS])
def test_the_other_programs_examples_parse(lang, where, text):
    """GoBGP's gobgpd.toml (docs/evpn.md), Neutron's ini files (docs/openstack.md) and JSON bodies parse as what
    their block says they are (their meaning is the other program's: the integration tests run them)."""
    import configparser
    import json
    import tomllib

    {"toml": tomllib.loads, "json": json.loads,
     "ini": configparser.ConfigParser(interpolation=None).read_string}[lang](text)


def yaml_examples():
    """(file:line, text) of every ```yaml block of the docs; the text starts on that line (blank lines before it),
    so the loaders' errors name the line of the doc."""
    return [(where, "\n" * (int(where.rsplit(":", 1)[1]) - 1) + text) for where, text in examples("yaml")]


EXAMPLES = yaml_examples()


def test_the_docs_have_yaml_examples_to_check():
    """The pattern finds the blocks (README's bgp and ha, docs/policy.md's document, ...): a test that checks
    nothing would pass for ever."""
    assert {lang for lang, _, _ in OTHERS} == {"toml", "json", "ini"}
    where = [w for w, _ in EXAMPLES]
    assert len(EXAMPLES) >= 10
    assert any(w.startswith("README.md:") for w in where) and any(w.startswith("docs/policy.md:") for w in where)
    # and every block opened as one is read: an indented fence, ```yml or ```yaml with a title is not FENCE's and
    # (worse) its closing fence would pair with the next block's, skipping that too
    for langs, found in (("ya?ml", EXAMPLES), ("toml|json|ini", OTHERS)):
        opened = [f"{path.relative_to(REPO)}:{line}" for path in DOCS
                  for line, text in enumerate(path.read_text().splitlines(), 1)
                  if re.match(rf"[ \t>]*```[ \t]*({langs})\b", text, re.I)]
        assert len(found) == len(opened), opened


@pytest.fixture(scope="module")
def etc_canopy(tmp_path_factory):
    """A stand-in for /etc/canopy: the HA secret, and a CA, key and certificates for the tls section."""
    from tests.harness.pki import Pki

    root = tmp_path_factory.mktemp("etc-canopy")
    secret = root / "ha-secret"
    secret.write_text("0123456789abcdef" * 4 + "\n")
    secret.chmod(0o600)
    ca = Pki(root, "ca")
    own = ca.issue("controller", ips=("127.0.0.1",))
    return root, {"privkey": own.key, "cert": own.cert, "cacert": ca.ca_cert, "secret": secret}


def _files_at_hand(text, etc_canopy):
    """``text`` with each /etc/canopy/NAME replaced by a file of its kind in the stand-in directory."""
    _, files = etc_canopy

    def stand_in(match):
        name = match.group(1)
        kind = next((k for k in ("privkey", "cacert", "cert") if name.endswith(f"{k}.pem")), "secret")
        return str(files[kind])
    return re.sub(r"/etc/canopy/([\w.-]+)", stand_in, text)


def _demo_with(fragment: dict) -> dict:
    """config/examples/demo.yaml with the fragment's vports in acme/prod/web and its vtep_bindings added."""
    data = yamldoc.load_file(str(REPO / "config" / "examples" / "demo.yaml")).data
    web = data["tenants"][0]["domains"][0]["subnets"][0]
    assert web["name"] == "web"
    web["vports"] += fragment.get("vports", [])
    data["vtep_bindings"] += fragment.get("vtep_bindings", [])
    return data


def check_example(where: str, text: str, etc_canopy, monkeypatch) -> str:
    """Read ``text`` with the loader its keys call for; returns which (raises what the loader raises)."""
    where = where.split(":")[0]  # the file: lines are the doc's own
    doc = yamldoc.load(text, where)
    keys = set(doc.data)
    if keys <= SETTINGS_KEYS:
        # ha.listen's default is the address towards ha.peer: the examples' peers need no route on this host
        monkeypatch.setattr(settings_mod, "source_address", lambda peer: "127.0.0.1")
        settings_mod.from_doc(yamldoc.load(_files_at_hand(text, etc_canopy), where))
        return "settings"
    if keys <= {"vports", "vtep_bindings"}:
        data, kind = _demo_with(doc.data), "policy fragment"
    elif keys <= POLICY_KEYS:
        data, kind = doc.data, "policy"
    else:
        raise AssertionError(f"{where}: neither settings nor a policy document: top-level keys {sorted(keys)}")
    try:
        policydoc.plan(pol.Policy(), data, where, pol.Allocator({}, 65000, (10000, 20000)))
    except PolicyError as exc:
        raise AssertionError(f"{where}: {[(p.field, p.reason) for p in exc.problems]}") from None
    return kind


@pytest.mark.parametrize("where,text", EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_yaml_example_in_the_docs_is_valid(where, text, etc_canopy, monkeypatch):
    check_example(where, text, etc_canopy, monkeypatch)


@pytest.mark.parametrize("name", ["config/canopy.yaml", "config/container.yaml", "deploy/pair/ctl-a.yaml",
                                  "deploy/pair/ctl-b.yaml"])
def test_every_settings_file_the_docs_point_at_is_valid(name, etc_canopy, monkeypatch):
    """README and docs/deploy.md send operators to these files: they load (their /etc/canopy files stood in)."""
    assert check_example(name, (REPO / name).read_text(), etc_canopy, monkeypatch) == "settings"


@pytest.mark.parametrize("text,expected", [
    ("\nha:\n  priority: high\n", "x.md:3: ha.priority"),                       # a settings example gone wrong
    ("tenants:\n  - name: a\n    colour: red\n", "colour"),                   # a policy example gone wrong
    ("vports:\n  - {name: v, mac: nope, binding: {flavour: kvm}}\n", "mac"),  # a fragment gone wrong
    ("hosts: [hv1]\n", "neither settings nor a policy document"),            # neither
])
def test_an_example_that_drifted_from_the_code_fails(text, expected, etc_canopy, monkeypatch):
    """The check can fail: each kind of example, made invalid, is refused naming what is wrong."""
    with pytest.raises((AssertionError, settings_mod.SettingsError)) as info:
        check_example("x.md:1", text, etc_canopy, monkeypatch)
    assert expected in str(info.value)


def _served_routes(tmp_path):
    """The routes controller/app.py serves (as it assembles them; BGP's without a speaker)."""
    from controller.programmer import Programmer
    from controller.rest.api import Api

    from .helpers import Controller, app_routes

    ctl = Controller(tmp_path)
    try:
        extra = app_routes(ctl, Programmer(ctl.state))
        return [regex for _, regex in Api(ctl.service, ctl.state, ctl.settings, extra_routes=extra)._compiled]
    finally:
        ctl.close()


def test_every_endpoint_the_docs_name_is_served(tmp_path):
    """Each /v1 path README.md and docs/*.md name ("/v1/switches/<dpid>/flows", "/v1/vteps/{name}") is a route of
    the API, or one that a setting turns on (controller/rest/api.py SWITCHED_OFF: /v1/ha/solo, /v1/stretches)."""
    from controller.rest.api import SWITCHED_OFF

    served = _served_routes(tmp_path)
    named = {}
    for path in DOCS:
        for match in re.finditer(r"/v1/[\w{}<>-][\w{}<>/.-]*", path.read_text()):
            named.setdefault(match.group(0).rstrip("./").replace("<collection>", "tenants"),
                             f"{path.relative_to(REPO)}")
    assert len(named) > 30
    # a placeholder (<dpid>, {id}, <collection>) stands for one path segment
    unknown = {p: where for p, where in named.items()
               if p not in SWITCHED_OFF
               and not any(regex.fullmatch(re.sub(r"<[^>/]+>|\{[^}/]+\}", "x", p)) for regex in served)}
    assert unknown == {}


def _anchors(path: Path) -> set:
    """The anchors GitHub makes of a Markdown file's headings (lower case, punctuation but - and _ dropped, spaces
    to -); headings inside fenced blocks are none."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_every_link_between_the_docs_reaches_its_file_and_heading():
    """README's and the docs' relative links (docs/store.md#a-full-or-failing-disk, ../deploy/pair/ctl-a.yaml) point
    at a file that exists and, with an anchor, at a heading it has: renaming a heading breaks none silently."""
    broken, anchored = [], 0
    for path in DOCS:
        for match in re.finditer(r"\]\(([^)\s]+)\)", path.read_text()):
            target = match.group(1)
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            anchored += bool(anchor)
            if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.relative_to(REPO)}: {target}")
    assert anchored > 20 and broken == []


def test_every_canopy_command_and_option_the_docs_write_exists():
    """`canopy apply b.yaml --adopt --dry-run`, `canopy backup FILE --config ...`: each option written after a canopy
    command in README.md and the docs is one that command takes (its argparse parser, controller/cli.py)."""
    import argparse

    from controller import cli

    commands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    unknown, checked = [], 0
    for path in DOCS:
        for match in re.finditer(r"canopy ([a-z][a-z-]+)((?:[ \t]+(?:\\\n)?[^\s`|;&)#'\"]+)*)", path.read_text()):
            command, rest = match.groups()
            if command not in commands:
                continue
            for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                checked += 1
                if option not in commands[command]._option_string_actions:
                    unknown.append(f"{path.relative_to(REPO)}: canopy {command} {option}")
    assert checked > 20 and unknown == []


# what a placeholder in a documented request body stands for, in config/examples/demo.yaml (README.md names it)
BODY_PLACEHOLDERS = {"<subnet id>": ("subnets", "acme/web")}
CURL = re.compile(r"curl\b(?:[^\n]*\\\n)*[^\n]*")


SENDS_DATA = re.compile(r"\s(?:-d|--data[\w-]*|--json|-F|--form)[\s=]")  # a curl option that sends a body


def documented_requests():
    """(file:line, method, /v1 path, JSON body text) of every `curl ... -d '{...}' .../v1/...` in README.md and the
    docs (continued lines joined), and the file:line of each curl to /v1 sending a body in another form (a body over
    several lines, in double quotes, from a file): those fail the test rather than going unchecked."""
    found, unreadable = [], []
    for path in DOCS:
        text = path.read_text()
        for match in CURL.finditer(text):
            command = match.group(0).replace("\\\n", " ")
            body = re.search(r"(?:-d|--data(?:-raw)?)\s+'([^']*)'", command)
            url = re.search(r"(/v1/[\w./-]*)", command)
            where = f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
            open_quote = command.count("'") % 2  # its body goes on over lines without a backslash
            if (url or open_quote) and not body and SENDS_DATA.search(command):
                unreadable.append(where)
            if not body or not url:
                continue
            method = re.search(r"(?:-X\s*|--request[\s=])([A-Z]+)", command)
            found.append((where, method.group(1) if method else "POST", url.group(1), body.group(1)))
    return found, unreadable


REQUESTS, UNREADABLE_REQUESTS = documented_requests()


def test_the_docs_have_request_bodies_to_check():
    assert len(REQUESTS) >= 3  # README's VTEP binding and solo mode, operations.md's log level
    assert UNREADABLE_REQUESTS == []  # write the body on the curl's own lines, in single quotes: -d '{...}'


@pytest.mark.parametrize("where,method,path,body", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_every_request_body_the_docs_send_is_accepted(where, method, path, body, tmp_path):
    """A body an operator copies from the docs (`curl -XPOST .../v1/vtep-bindings -d '{...}'`) is JSON and is
    accepted by that endpoint of a controller holding config/examples/demo.yaml, placeholders (`<subnet id>`) filled
    in from it; an endpoint that a setting turns on (/v1/ha/solo) is checked for its JSON only."""
    import json

    from controller.rest.api import SWITCHED_OFF

    from .helpers import Controller, running

    ctl = Controller(tmp_path)
    with running(ctl):
        demo = yamldoc.load_file(str(REPO / "config/examples/demo.yaml")).data
        assert ctl.call("POST", "/v1/apply", {"document": demo, "source": "demo"})[0] == 200
        for placeholder, (collection, ref) in BODY_PLACEHOLDERS.items():
            [obj] = [o for o in ctl.call("GET", f"/v1/{collection}")[1]["items"] if o["ref"] == ref]
            body = body.replace(placeholder, obj["id"])
        assert "<" not in body, f"{where}: a placeholder BODY_PLACEHOLDERS does not know: {body}"
        data = json.loads(body)
        assert isinstance(data, dict), f"{where}: not a JSON object"
        if path in SWITCHED_OFF:
            return
        status, reply = ctl.call(method, path, data)
        assert 200 <= status < 300, f"{where}: {method} {path} {body} -> {status} {reply}"
