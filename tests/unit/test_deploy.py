"""Deployment files stay consistent with the code: systemd units, the pair's settings, the image, the locks."""

import json
import re
import shlex
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from controller import cli
from controller import settings as settings_mod
from tests.harness.systemd import assert_unit_verifies

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"


def unit(name) -> dict[str, list[str]]:
    """key -> values of a unit file (continuation lines joined)."""
    out: dict[str, list[str]] = {}
    text = (UNITS / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def canopy_args(argv, command=cli.cmd_run):
    """The canopy command line in argv parses, and is '<command> --config FILE' (run, unless told)."""
    args = cli._parser().parse_args(argv)
    assert args.func is command and args.config == "/etc/canopy/canopy.yaml"


def test_native_unit_is_notify_and_runs_canopy_with_the_system_settings():
    u = unit("canopy.service")
    assert u["Type"] == ["notify"] and u["NotifyAccess"] == ["main"] and u["User"] == ["canopy"]
    assert u["StateDirectory"] == ["canopy"]  # /var/lib/canopy: the default data_dir
    assert settings_mod.defaults().data_dir == "/var/lib/canopy"
    exe, *argv = shlex.split(u["ExecStart"][0])
    assert exe == "/opt/canopy/venv/bin/canopy"
    canopy_args(argv)
    # the event loop's share of CPUs it shares with busy neighbours: 10x their default weight (docs/operations.md)
    assert u["CPUWeight"] == ["1000"]


def test_native_unit_passes_systemd_analyze_verify(tmp_path):
    assert_unit_verifies((UNITS / "canopy.service").read_text(), "canopy.service", tmp_path)


def test_container_unit_hands_the_notify_socket_to_canopy_and_runs_it():
    u = unit("canopy-container.service")
    assert u["Type"] == ["notify"]
    argv = shlex.split(u["ExecStart"][0])
    assert argv[:2] == ["/usr/bin/podman", "run"] and "--sdnotify=container" in argv and "--pull=never" in argv
    canopy_args(argv[argv.index("${CANOPY_IMAGE}") + 1:])
    assert any("/etc/canopy:/etc/canopy:ro" in a for a in argv) and "--network" in argv


def test_container_unit_checks_health_with_the_settings_it_runs():
    """The image's own health check reads the token from the data volume; the pair's settings keep it in
    rest.token_file, so without its own check the unit's container stayed "unhealthy" (FileNotFoundError)."""
    argv = shlex.split(unit("canopy-container.service")["ExecStart"][0])
    exe, *health = json.loads(argv[argv.index("--health-cmd") + 1])  # exec form: no shell in the way
    assert exe == "/opt/canopy/venv/bin/canopy"
    canopy_args(health, cli.cmd_status)  # the same settings file as "run --config" above


def test_container_unit_takes_podman_options_from_a_drop_in():
    """With a tls section the health check needs CANOPY_CA_FILE in the container (docs/deploy.md): a drop-in sets
    CANOPY_PODMAN_ARGS, which systemd splits into podman run options before the image (empty by default)."""
    u = unit("canopy-container.service")
    assert "CANOPY_PODMAN_ARGS=" in u["Environment"]
    argv = shlex.split(u["ExecStart"][0])
    assert "$CANOPY_PODMAN_ARGS" in argv[argv.index("run"):argv.index("${CANOPY_IMAGE}")]


def test_pair_settings_load_and_mirror_each_other(tmp_path):
    secret = tmp_path / "ha-secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o640)  # as docs/deploy.md makes it (root-owned, the container user's group)

    def load(name):  # the secret file is read when settings load: point it at a real one
        text = (ROOT / "deploy" / "pair" / name).read_text()
        assert "secret_file: /etc/canopy/ha-secret" in text
        (tmp_path / name).write_text(text.replace("/etc/canopy/ha-secret", str(secret)))
        return settings_mod.load(str(tmp_path / name))

    a, b = load("ctl-a.yaml"), load("ctl-b.yaml")
    assert (a.ha.node_id, b.ha.node_id) == ("ctl-a", "ctl-b") and a.ha.peer != b.ha.peer
    assert a.ha.priority != b.ha.priority and a.ha.port == b.ha.port
    assert a.rest_token_file == b.rest_token_file  # one token for whichever node is active


def test_image_is_multi_stage_numeric_user_under_tini_without_build_tools():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2 and stages[0].startswith("${BASE} AS build")
    final = stages[1]
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy"]' in final
    assert "pip uninstall -y pip setuptools wheel" in final  # the base image's own
    assert "pip uninstall -y setuptools wheel pip" in stages[0]  # the venv's, before it is copied
    copied = re.findall(r"^COPY (?:--\S+ )*(\S+)", final, re.M)
    assert not [c for c in copied if "tests" in c]
    assert "pip install -r requirements.lock" in stages[0]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and "!tests" not in ignore and "!.venv" not in ignore


BUILD_TOOLS = {"pip", "setuptools", "wheel"}


def _lock(name):
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line.startswith(("#", "-r")):
            dist, version = line.split("==")
            pins[_norm(dist)] = version
    return pins


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_every_dependency_and_all_of_theirs():
    """requirements.lock is closed: each runtime dependency of Canopy, and each of theirs, is pinned there, at
    the version installed here (.ci/setup installs from it). Re-run .ci/lock after changing dependencies.
    Build tools are not locked: setuptools<58 and wheel come with Ryu's install step (pbr declares setuptools
    but Canopy runs without it: the image removes it, .ci/image-smoke checks that)."""
    runtime, test = _lock("requirements.lock"), _lock("requirements-test.lock")
    assert not set(runtime) & set(test)
    declared = [Requirement(r) for r in metadata.requires("canopy-sdn")]
    todo = [r for r in declared if not r.marker or r.marker.evaluate({"extra": ""})]
    seen = set()
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen or name in BUILD_TOOLS:
            continue
        seen.add(name)
        assert name in runtime, f"{req.name} is needed at run time but not in requirements.lock"
        assert metadata.version(req.name) == runtime[name], f"{req.name}: installed differs from the lock"
        todo += [Requirement(r) for r in metadata.requires(req.name) or ()
                 if not Requirement(r).marker or Requirement(r).marker.evaluate({"extra": ""})]
    for extra in [Requirement(r) for r in metadata.requires("canopy-sdn")
                  if Requirement(r).marker and Requirement(r).marker.evaluate({"extra": "test"})]:
        assert _norm(extra.name) in test, f"{extra.name} (test extra) is not in requirements-test.lock"


STUB_BUILDAH = """#!/bin/sh
echo "$*" >> "$BUILDAH_CALLS"
case "$1" in inspect) exit 0 ;; bud) exit 1 ;; esac
"""


def smoke_build_calls(tmp_path, env_extra):
    """.ci/image-smoke up to its build, through a stand-in buildah (the real build takes minutes and the
    question is only which tag it uses and removes) that records its calls and fails the build."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "buildah").write_text(STUB_BUILDAH)
    (bin_dir / "buildah").chmod(0o755)
    calls = tmp_path / f"calls{len(list(tmp_path.glob('calls*')))}"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", BUILDAH_CALLS=str(calls), BASE="base:1",
               **env_extra)
    done = subprocess.run(["bash", str(ROOT / ".ci" / "image-smoke")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "FAILED: build" in done.stderr, done.stderr
    lines = calls.read_text().splitlines()
    tag = next(line.split(" -t ")[1].split()[0] for line in lines if line.startswith("bud "))
    return tag, lines


def test_image_smoke_builds_under_a_tag_of_its_own_and_removes_it(tmp_path):
    """Two runs at the same time must not replace each other's image in the shared local storage."""
    first, first_calls = smoke_build_calls(tmp_path, {})
    second, second_calls = smoke_build_calls(tmp_path, {})
    assert first != second and first.startswith("localhost/canopy:smoke-")
    assert f"rmi {first}" in first_calls and f"rmi {second}" in second_calls  # removed, even after a failure
    named, calls = smoke_build_calls(tmp_path, {"TAG": "localhost/canopy:mine"})
    assert named == "localhost/canopy:mine" and not any(c.startswith("rmi") for c in calls)  # asked for: kept
