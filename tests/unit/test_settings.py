"""Controller settings: defaults, refusals with file and line, and the REST tokens (the write token and the
read-only one follow one rule: each token test runs for both keys; tests/unit/test_read_token.py has the rest)."""

import os
import stat

import pytest

from controller import resttoken, yamldoc
from controller import settings as settings_mod


def load(tmp_path, text):
    path = tmp_path / "canopy.yaml"
    path.write_text(text)
    return settings_mod.load(str(path))


TOKEN_KEYS = pytest.mark.parametrize("key", ["token", "read_token"])
FILE_KEYS = pytest.mark.parametrize("key", ["token_file", "read_token_file"])


def resolved_token(settings, key):
    """The token the file of ``key`` (rest.token_file or rest.read_token_file) gave the resolved settings."""
    resolved = resttoken.resolved(settings)
    return resolved.rest_token if key == "token_file" else resolved.rest_read_token


def test_defaults(tmp_path):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\n")
    assert (s.openflow_port, s.ovsdb_port, s.rest_listen, s.rest_port) == (6653, 6640, "127.0.0.1", 8080)
    assert s.bridge == "br-int" and s.rest_token is None and s.rest_token_file == f"{tmp_path}/d/rest-token"
    assert (s.restart_hold, s.restart_hold_max) == (15.0, 60.0)
    assert load(tmp_path, "restart: {hold_time: 0}\n").restart_hold == 0.0



def test_a_hold_time_raised_before_hold_max_existed_still_loads(tmp_path):
    """restart.hold_time could be raised to 600 s before restart.hold_max (default 60 s) came: a settings file that
    raised it above 60 and names no hold_max must load as it did (the hold ends hold_time after the start at the
    latest), not stop the controller on an upgrade with an error about a field it never set."""
    s = load(tmp_path, "restart: {hold_time: 90}\n")
    assert (s.restart_hold, s.restart_hold_max) == (90.0, 90.0)
    assert load(tmp_path, "restart: {hold_time: 20}\n").restart_hold_max == 60.0


@pytest.mark.parametrize("text, expected", [
    ("rest:\n  port: 80000\n", "canopy.yaml:2: rest.port: must be between 1 and 65535"),
    ("rest:\n  listen: localhost\n", "canopy.yaml:2: rest.listen: 'localhost' is not an IP address"),
    ("rest:\n  listen: 'fe80::1%eth0'\n", "canopy.yaml:2: rest.listen: 'fe80::1%eth0' is a scoped IPv6 address: its "
     "zone (after '%') names an interface of one host; give the address without it"),
    ("openflow: {listen: '::1%x'}\n", "canopy.yaml:1: openflow.listen: '::1%x' is a scoped IPv6 address"),
    ("ovsdb: {listen: 'fe80::1%0'}\n", "canopy.yaml:1: ovsdb.listen: 'fe80::1%0' is a scoped IPv6 address"),
    ("bgp: {listen: 'fe80::1%eth0'}\n", "canopy.yaml:1: bgp.listen: 'fe80::1%eth0' is a scoped IPv6 address"),
    ("ha: {listen: 'fe80::1%eth0'}\n", "canopy.yaml:1: ha.listen: 'fe80::1%eth0' is a scoped IPv6 address"),
    ("openflow: {port: 6653}\nbogus: 1\n", "canopy.yaml:2: bogus: unknown field"),
    ("allocation: {vni_min: 500, vni_max: 100}\n", "canopy.yaml:1: allocation.vni_min: must not be above vni_max"),
    ("log_level: loud\n", "canopy.yaml:1: log_level: must be one of debug, info, warning, error"),
    ("ha:\n  store_renewal_wait_ms: 500\n", "canopy.yaml:2: ha.store_renewal_wait_ms: must be between 1000 and 3600000"),
    ("ha: {store_renewal_wait_ms: 1.5}\n", "canopy.yaml:1: ha.store_renewal_wait_ms: must be an integer"),
    ("vrs:\n  tunnel_probe_rate: 0\n", "canopy.yaml:2: vrs.tunnel_probe_rate: must be between 1 and 100000"),
    ("vrs: {tunnel_probe_retry_ms: -1}\n", "canopy.yaml:1: vrs.tunnel_probe_retry_ms: must be between 0 and 3600000"),
    ("data_dir: /tmp\nrestart:\n  hold_time: 601\n", "canopy.yaml:3: restart.hold_time: must be between 0 and 600"),
    ("restart: {hold_time: soon}\n", "canopy.yaml:1: restart.hold_time:"),
    ("restart:\n  hold_time: 30\n  hold_max: 20\n",
     "canopy.yaml:3: restart.hold_max: must be at least restart.hold_time (30 s)"),
])
def test_bad_settings_name_file_line_and_reason(tmp_path, text, expected):
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def test_settings_must_be_a_mapping(tmp_path):
    with pytest.raises(settings_mod.SettingsError, match="must be a mapping"):
        load(tmp_path, "- a\n- b\n")
    with pytest.raises(yamldoc.DocError, match="canopy.yaml:2: expected the node content"):
        load(tmp_path, "a: [\n")


def test_generated_token_is_private_and_stable(tmp_path):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\n")
    first = resttoken.resolved(s)
    assert first.rest_token and len(first.rest_token) >= 32
    # hex, so never a leading "-" (1 in 64 urlsafe tokens had one: `canopy apply --token TOKEN` took it as an option)
    assert all(c in "0123456789abcdef" for c in first.rest_token)
    mode = stat.S_IMODE(os.stat(s.rest_token_file).st_mode)
    assert mode == 0o600
    assert resttoken.resolved(s).rest_token == first.rest_token


def test_a_token_generated_before_hex_keeps_working(tmp_path):
    """Tokens were urlsafe before: one already on disk is read as it is, '-' and '_' included."""
    s = load(tmp_path, f"data_dir: {tmp_path}/d\n")
    os.makedirs(f"{tmp_path}/d")
    fd = os.open(s.rest_token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"-Ab_9xYz-old-urlsafe-token_0123456789\n")
    os.close(fd)
    assert resttoken.resolved(s).rest_token == "-Ab_9xYz-old-urlsafe-token_0123456789"


@FILE_KEYS
def test_a_token_file_other_users_can_read_is_refused_naming_it_and_its_mode(tmp_path, key):
    token = tmp_path / "token"
    token.write_text("some-token\n")
    token.chmod(0o644)
    s = load(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{{key}: {token}}}\n")
    with pytest.raises(settings_mod.SettingsError) as refused:
        resttoken.resolved(s)
    assert f"rest.{key}: {token} has mode 0644" in str(refused.value)
    token.chmod(0o600)
    assert resolved_token(s, key) == "some-token"


@pytest.mark.parametrize("mode, uid, refused", [
    (0o600, 1000, None), (0o400, 1000, None), (0o640, 0, None), (0o440, 0, None),  # deploy.md: root:10001 0640
    (0o644, 0, "every user"), (0o604, 1000, "every user"), (0o602, 0, "every user"),
    (0o640, 1000, "its group can read it"), (0o660, 10001, "its group can read it"),
])
def test_which_secret_files_are_private(mode, uid, refused):
    """Others never; the group only when root owns the file (root handing it to a service's group)."""
    from controller.secretfile import too_open

    st = os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, 10001, 33, 0, 0, 0))
    problem = too_open(st)
    assert (problem is None) if refused is None else (refused in problem and f"{mode:04o}" in problem)


@pytest.mark.parametrize("token, reason", [
    ('"abc\\ndef"', "holds '\\n' at character 4"), ('"abc\\0def"', "holds '\\x00' at character 4"),
    ('"two words"', "holds ' ' at character 4"), ('"tab\\tafter"', "holds '\\t' at character 4"),
    ('"caf\u00e9-token"', "holds '\u00e9' at character 4"),
    ('""', "must not be empty (leave rest.{key} out for "),
])
@TOKEN_KEYS
def test_a_rest_token_that_is_no_http_header_value_is_refused_naming_field_and_reason(tmp_path, token, reason, key):
    """The token travels in 'Authorization: Bearer TOKEN': a newline or NUL in it was taken and matched no header."""
    with pytest.raises(settings_mod.SettingsError) as refused:
        load(tmp_path, f"data_dir: {tmp_path}/d\nrest:\n  {key}: {token}\n")
    assert f"canopy.yaml:3: rest.{key}: {reason.format(key=key)}" in str(refused.value)
    fine = load(tmp_path, f"data_dir: {tmp_path}/d\nrest:\n  {key}: a-B_c.d~e+f/g=\n")
    assert (fine.rest_token if key == "token" else fine.rest_read_token) == "a-B_c.d~e+f/g="


@pytest.mark.parametrize("text, reason", [
    ("tok\n\n", "holds '\\n' at character 4"), ("tok\nen\n", "holds '\\n' at character 4"),
    ("tok\0junk\n", "holds '\\x00' at character 4"), ("tok \n", "holds ' ' at character 4"),
    ("  tok\n", "holds ' ' at character 1"), ("\n", "is empty"),
])
@FILE_KEYS
def test_a_token_file_holding_more_than_the_token_and_one_newline_is_refused(tmp_path, text, reason, key):
    """It was stripped: a second line or a NUL and what followed became part of the token, silently."""
    token = tmp_path / "token"
    token.write_text(text)
    token.chmod(0o600)
    s = load(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{{key}: {token}}}\n")
    with pytest.raises(settings_mod.SettingsError) as refused:
        resttoken.resolved(s)
    assert str(refused.value).startswith(f"{s.source}:2: rest.{key}: {token}: the token in it {reason}")
    for fine in ("tok\n", "tok"):  # one trailing newline, or none
        token.write_text(fine)
        assert resolved_token(s, key) == "tok"


@FILE_KEYS
def test_configured_token_file_must_exist(tmp_path, key):
    s = load(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{{key}: {tmp_path}/missing}}\n")
    with pytest.raises(settings_mod.SettingsError, match=f"^{s.source}:2: rest.{key}: {tmp_path}/missing does not "
                       "exist$"):
        resttoken.resolved(s)


BGP = """bgp:
  asn: 65010
  router_id: 10.250.0.1
  neighbors:
    - {address: 10.250.0.2, asn: 65020, md5_password: s3cret, hold_time: 30}
    - {address: 10.250.0.3, asn: 65010, rr_client: true, port: 1179, local_address: 10.250.0.1}
"""


def test_bgp_settings(tmp_path):
    s = load(tmp_path, BGP)
    assert s.bgp.enabled and s.asn == 65010 and s.bgp.router_id == "10.250.0.1" and s.bgp.listen is None
    first, second = s.bgp.neighbors
    assert (first.asn, first.md5_password, first.hold_time, first.port, first.rr_client) == (65020, "s3cret", 30,
                                                                                             179, False)
    assert (second.port, second.rr_client, second.local_address) == (1179, True, "10.250.0.1")
    assert not settings_mod.defaults().bgp.enabled  # no neighbors: no BGP speaker at all
    assert s.bgp.graceful_restart == settings_mod.GracefulRestartSettings(True, 120, 360)  # on by default


def test_graceful_restart_settings(tmp_path):
    s = load(tmp_path, "bgp:\n  graceful_restart: {enabled: false, restart_time: 30, stale_time: 90}\n")
    assert s.bgp.graceful_restart == settings_mod.GracefulRestartSettings(False, 30, 90)


@pytest.mark.parametrize("text", [
    "graceful_restart: {restart_time: 60}",  # restart.hold_max's default: End-of-RIB cannot go before the hold ends
    "graceful_restart: {enabled: false, restart_time: 30}",  # no End-of-RIB of Canopy's waited for
])
def test_restart_time_at_least_the_hold_max_or_without_graceful_restart(tmp_path, text):
    s = load(tmp_path, f"bgp: {{router_id: 1.1.1.1, neighbors: [{{address: 10.0.0.1, asn: 1}}], {text}}}\n")
    assert s.bgp.graceful_restart.restart_time in (60, 30)


def test_a_short_restart_time_is_taken_without_a_start_up_hold(tmp_path):
    s = load(tmp_path, "bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1}], graceful_restart: "
                       "{restart_time: 10}}\nrestart: {hold_time: 0}\n")
    assert s.bgp.graceful_restart.restart_time == 10 and s.restart_hold == 0


def test_duplicate_mac_detection_settings_default_to_rfc_7432(tmp_path):
    """bgp.duplicate_mac (RFC 7432 section 15.1: M = 5 moves within N = 180 s) reaches the Federation's Mobility."""
    from bgp.federation import Federation

    assert settings_mod.defaults().bgp.duplicate_mac == settings_mod.DuplicateMacSettings(True, 5, 180)
    s = load(tmp_path, "bgp: {duplicate_mac: {enabled: false, max_moves: 3, window: 60}}\n")
    duplicates = Federation(s.bgp, str(tmp_path), object.__new__(FakeState)).mobility.duplicates
    assert (duplicates.enabled, duplicates.max_moves, duplicates.window) == (False, 3, 60.0)


class FakeState:
    def subscribe(self, _callback):
        pass

    def listen_leaving(self, _leaving, _left):
        pass


def test_exabgp_watchdog_bounds_reach_the_speaker(tmp_path):
    """bgp.api_timeout and bgp.api_restart_after (bgp/watchdog.py) are the speaker's, defaults 5 and 30 s."""
    from bgp.federation import speaker_config

    default = speaker_config(settings_mod.defaults().bgp, str(tmp_path))
    assert (default.api_timeout, default.api_restart_after) == (5.0, 30.0)
    s = load(tmp_path, "bgp: {api_timeout: 12, api_restart_after: 120}\n")
    config = speaker_config(s.bgp, str(tmp_path))
    assert (config.api_timeout, config.api_restart_after) == (12.0, 120.0)


@pytest.mark.parametrize("text, expected", [
    ("bgp: {neighbors: [{address: 10.0.0.1}]}\n", "bgp.neighbors[0].asn: is required"),
    ("bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1, hold_time: 2}]}\n",
     "bgp.neighbors[0].hold_time: must be 0 or at least 3 seconds"),
    ("bgp: {neighbors: [{address: 10.0.0.1, asn: 1}]}\n", "bgp.router_id: required when neighbors are configured"),
    ("bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1, passive: true}]}\n",
     "bgp.neighbors[0].passive: a passive neighbor needs bgp.listen"),
    ("bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1, rr_client: true}]}\n",
     "bgp.neighbors[0].rr_client: a route reflector session is iBGP"),
    ("bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1}, {address: 10.0.0.1, asn: 2}]}\n",
     "bgp.neighbors[1].address: 10.0.0.1 is listed twice"),
    ("bgp: {asn: 0}\n", "bgp.asn: must be between 1 and 4294967295"),
    ("bgp:\n  duplicate_mac: {max_moves: 1}\n", "canopy.yaml:2: bgp.duplicate_mac.max_moves: must be between 2 and "
     "1000"),  # one move is a live migration, never a duplicate
    ("bgp:\n  duplicate_mac: {window: 0}\n", "bgp.duplicate_mac.window: must be between 1 and 86400"),
    ("bgp:\n  duplicate_mac: {moves: 3}\n", "bgp.duplicate_mac.moves: unknown field"),
    ("bgp:\n  graceful_restart:\n    restart_time: 5000\n", ":3: bgp.graceful_restart.restart_time: must be "
     "between 1 and 4095"),
    ("bgp:\n  router_id: 1.1.1.1\n  neighbors: [{address: 10.0.0.1, asn: 1}]\n  graceful_restart: {restart_time: 59}\n",
     ":4: bgp.graceful_restart.restart_time: must be at least restart.hold_max (60 s)"),
    ("bgp: {router_id: 1.1.1.1, neighbors: [{address: 10.0.0.1, asn: 1}], graceful_restart: {restart_time: 90}}\n"
     "restart: {hold_time: 15, hold_max: 100}\n", "bgp.graceful_restart.restart_time: must be at least "
     "restart.hold_max (100 s)"),
    ("bgp:\n  graceful_restart: {enable: true}\n", "bgp.graceful_restart.enable: unknown"),
    ("bgp:\n  graceful_restart: {enabled: 3}\n", "bgp.graceful_restart.enabled:"),
    ("bgp: {api_timeout: 0}\n", "bgp.api_timeout: must be between 1 and 600"),
    ("bgp: {api_timeout: 30, api_restart_after: 30}\n", "bgp.api_restart_after: must be more than bgp.api_timeout"),
    ("bgp: {api_restart_after: fast}\n", "bgp.api_restart_after:"),
])
def test_bad_bgp_settings(tmp_path, text, expected):
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def test_ha_settings(tmp_path):
    s = load(tmp_path, "ha: {node_id: ctl1, peer: 10.250.0.2, priority: 200, heartbeat_interval_ms: 100,\n"
        "     secret: 0123456789abcdef}\n")
    assert s.ha.enabled and (s.ha.node_id, s.ha.peer, s.ha.peer_port, s.ha.priority) == ("ctl1", "10.250.0.2",
                                                                                       6690, 200)
    assert (s.ha.heartbeat_interval, s.ha.dead_interval) == (0.1, 1.0)
    assert not settings_mod.defaults().ha.enabled
    with pytest.raises(settings_mod.SettingsError, match="ha.dead_interval_ms: must be at least three heartbeat"):
        load(tmp_path, "ha: {peer: 10.250.0.2, heartbeat_interval_ms: 500, dead_interval_ms: 1000}\n")


@pytest.mark.parametrize("value, ok", [(0, True), (2000, True), (30000, True), (1, False), (1999, False),
                                       (3600001, False)])
def test_openflow_dead_after_is_never_or_at_least_two_seconds(tmp_path, value, ok):
    """openflow.dead_after_ms (TCP keepalive and user timeout on switch connections): a bound under 2 s would drop
    switches on a merely busy network."""
    text = f"openflow: {{dead_after_ms: {value}}}\n"
    if ok:
        assert load(tmp_path, text).limits.openflow_dead_after == value / 1000
    else:
        with pytest.raises(settings_mod.SettingsError, match="openflow.dead_after_ms: must"):
            load(tmp_path, text)


@pytest.mark.parametrize("value, ok", [(None, True), (1000, True), (30000, True), (0, False), (999, False),
                                       (3600001, False), ("5s", False)])
def test_ovsdb_probe_interval_is_one_second_to_an_hour(tmp_path, value, ok):
    """ovsdb.probe_interval_ms (the echo a silent OVSDB peer is sent; two intervals silent drop its session): the
    ``ovs`` library raises anything under a second to one, so a shorter one is refused rather than not applied."""
    text = "ovsdb: {}\n" if value is None else f"ovsdb: {{probe_interval_ms: {value}}}\n"
    if ok:
        assert load(tmp_path, text).limits.ovsdb_probe_interval == (5.0 if value is None else value / 1000)
    else:
        with pytest.raises(settings_mod.SettingsError, match="ovsdb.probe_interval_ms: must"):
            load(tmp_path, text)


@pytest.mark.parametrize("text, expected", [
    ('data_dir: ""\n', "canopy.yaml:1: data_dir: must be a path, not empty (it meant the directory canopy started "
     "in: write that directory, or leave data_dir out for /var/lib/canopy)"),
    ('data_dir: "/var/lib/a\\0b"\n', "canopy.yaml:1: data_dir: must not contain a NUL character"),
    ('rest:\n  token_file: ""\n', "canopy.yaml:2: rest.token_file: must be a path, not empty (leave token_file out "
     "for rest.token, else the token generated into data_dir/rest-token)"),
    ('ha:\n  secret_file: ""\n', "canopy.yaml:2: ha.secret_file: must be a path, not empty (leave secret_file out "
     "and give ha.secret)"),
    ('ha:\n  node_id: a\n  peer: 10.0.0.2\n  secret_file: "/etc/\\0"\n',
     "canopy.yaml:4: ha.secret_file: must not contain a NUL character"),
    ('tls:\n  key: "/etc/\\0"\n  cert: /etc/c\n  ca_cert: /etc/ca\n', "canopy.yaml:2: tls.key: must not contain a NUL"),
    ('tls:\n  key: /etc/k\n  cert: ""\n  ca_cert: /etc/ca\n', "canopy.yaml:3: tls.cert: must be a path, not empty "
     "(leave the whole tls section out for plain listeners)"),
    ('bgp:\n  neighbors:\n    - {address: 10.0.0.1, asn: 1, md5_password: ""}\n',
     "canopy.yaml:3: bgp.neighbors[0].md5_password: must not be empty (leave md5_password out for a session "
     "without TCP MD5)"),
    ('vrs:\n  hosts:\n    - {chassis: "", vtep_ip: 10.0.0.1}\n',
     "canopy.yaml:3: vrs.hosts[0].chassis: must not be empty (the hypervisor's system-id: ovs-vsctl get "
     "Open_vSwitch . external_ids:system-id)"),  # required: "leave it out" is no way out
])
def test_paths_passwords_and_chassis_are_not_empty_and_paths_hold_no_nul(tmp_path, text, expected):
    """An empty data_dir put the store in whatever directory canopy started in, an empty md5_password meant none
    and an empty chassis matched no hypervisor, all silently; a NUL byte in any path stopped `canopy check-settings`
    and `canopy run` with a ValueError traceback instead of naming the setting. A deployed file may hold such an
    empty value: each refusal says what to write instead."""
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, text)
    assert expected in str(info.value)


def _leaf_keys(fields, prefix=""):
    for spec in fields:
        inner = spec.fields or (spec.items.fields if spec.items is not None and spec.items.fields else None)
        if inner:
            yield from _leaf_keys(inner, f"{prefix}{spec.name}.")
        else:
            yield prefix + spec.name


def test_config_canopy_yaml_names_every_setting_in_its_section():
    """README: "Every setting is in config/canopy.yaml". bgp.neighbors[].passive and ha.peer_port were not."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "config" / "canopy.yaml").read_text()
    sections = {}  # top-level key -> its lines (commented or not), up to the next top-level key
    for line in text.splitlines():
        top = re.match(r"^#? ?([a-z_]+):", line)
        if top:
            current = sections.setdefault(top.group(1), [])
        if top or line.startswith(" ") or line.startswith("#  "):
            current.append(line)
    missing = [key for key in _leaf_keys(settings_mod.SETTINGS)
               if not any(re.search(rf"(^|[\s#{{,-])\s*{re.escape(key.rsplit('.', 1)[-1])}:", line)
                          for line in sections.get(key.split(".")[0], ()))]
    assert missing == []


def test_tunnel_probes_are_paced_at_500_a_second_unless_set(tmp_path):
    assert settings_mod.defaults().tunnel_probe_rate == 500
    assert load(tmp_path, "vrs: {tunnel_probe_rate: 50}\n").tunnel_probe_rate == 50


def test_a_tunnel_probe_is_sent_once_more_after_10_s_unless_set(tmp_path):
    assert settings_mod.defaults().tunnel_probe_retry == 10.0
    assert load(tmp_path, "vrs: {tunnel_probe_retry_ms: 2500}\n").tunnel_probe_retry == 2.5
    assert load(tmp_path, "vrs: {tunnel_probe_retry_ms: 0}\n").tunnel_probe_retry == 0.0


NEIGHBOR = "bgp:\n  router_id: 10.0.0.9\n  neighbors:\n    - address: 10.0.0.1\n      asn: 1\n      md5_password: "


def test_an_inline_secret_given_as_a_block_scalar_is_the_secret_its_file_would_hold(tmp_path):
    """``secret: |`` (a YAML block scalar) ends with a line end: it was kept as part of the HA secret, so a node with
    the same secret in ha.secret_file (where the file's line end is dropped) disagreed with it on the link's secret.
    The block scalar's one line end is dropped as the file's; so is an inline md5_password's (a peer given the
    password without it refused the session)."""
    path = tmp_path / "secret"
    path.write_text("0123456789abcdef\n")
    path.chmod(0o600)
    from_file = load(tmp_path, f"ha: {{peer: 127.0.0.2, secret_file: {path}}}\n").ha.secret
    inline = load(tmp_path, "ha:\n  peer: 127.0.0.2\n  secret: |\n    0123456789abcdef\n").ha.secret
    assert inline == from_file == "0123456789abcdef"
    bgp = load(tmp_path, f"{NEIGHBOR}|\n        s3cret\n").bgp
    assert bgp.neighbors[0].md5_password == "s3cret"


@pytest.mark.parametrize("value, lines", [  # {i}: the block's indentation
    ("|\n{i}0123456789abcdef\n{i}and a second line\n", 2), ("|+\n{i}0123456789abcdef\n\n", 2),
    ('"0123456789abcdef\\r"\n', 2), ('"0123456789abcdef\\rand more\\n"\n', 2), ('"01234567\\u2028\\n89abcdef\\n"\n', 3),
], ids=["two-lines", "kept-blank-line", "trailing-CR", "CR-inside", "unicode-line-separator"])
def test_an_inline_secret_over_more_than_one_line_is_refused_naming_the_key_and_the_lines(tmp_path, value, lines):
    """A line break inside ha.secret (or an md5_password) was kept as part of it with no word: the nodes (or the
    BGP peer) then disagreed on the secret. A secret file over more than one line was refused already."""
    why = f"holds {lines} lines: a secret is one line (a line break inside is no part of a secret; the one line end"
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, "ha:\n  peer: 127.0.0.2\n  secret: " + value.format(i="    "))
    assert f"canopy.yaml:3: ha.secret: {why}" in str(info.value)
    with pytest.raises(settings_mod.SettingsError) as info:
        load(tmp_path, NEIGHBOR + value.format(i="        "))
    assert f"canopy.yaml:6: bgp.neighbors[0].md5_password: {why}" in str(info.value)


def test_an_md5_password_too_long_is_refused_naming_its_limit(tmp_path):
    """The limit is 80 characters, a block scalar's line end not counted: a longer password was refused as "must be at
    most 81 characters" (the limit of the text before that line end was dropped)."""
    assert load(tmp_path, f"{NEIGHBOR}|\n        {'p' * 80}\n").bgp.neighbors[0].md5_password == "p" * 80
    for length in (81, 82, 200):
        with pytest.raises(settings_mod.SettingsError) as info:
            load(tmp_path, NEIGHBOR + "p" * length + "\n")
        assert "canopy.yaml:6: bgp.neighbors[0].md5_password: must be at most 80 characters" in str(info.value)


def test_the_store_renewal_wait_reaches_the_store_and_defaults_to_a_minute(tmp_path):
    """ha.store_renewal_wait_ms (was the constant DEFER_BOUND): how long a standby's renewal may wait for backups
    before health says so, and a backup waits for it (controller/storefile.py)."""
    from controller.core import build_core

    assert load(tmp_path, "ha: {store_renewal_wait_ms: 5000}\n").ha.store_renewal_wait == 5.0
    settings = load(tmp_path, f"data_dir: {tmp_path / 'data'}\nha: {{store_renewal_wait_ms: 2500}}\n")
    store, _, _ = build_core(settings)
    try:
        assert store.renewal_wait == 2.5
    finally:
        store.close()
    assert load(tmp_path, "{}\n").ha.store_renewal_wait == 60.0
