"""Certificate files are loaded as they were checked (controller/secretfile.py ``checked_path``): a file put at the
path after the check (a FIFO that would block ssl's open, another CA or certificate) is not what ssl loads. For the
listeners' key, certificate and CA (controller/tls.py), the CLI's --ca-file, the metadata agent's and the Neutron
driver's ca_file. The swap is made by the test right after the check opened the file."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from controller import metadata_agent, secretfile, tls
from controller.cli_remote import client_tls
from tests.unit.fifo import fifo_without_writer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy import client as neutron_client  # noqa: E402 (the driver's own folder)
from networking_canopy import secretfile as neutron_secretfile  # noqa: E402


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    from tests.harness.pki import Pki

    root = tmp_path_factory.mktemp("pki")
    ours, other = Pki(root, "ours-ca"), Pki(root, "other-ca")
    return (ours, ours.issue("controller")), (other, other.issue("controller"))


def copies(tmp_path, pki) -> dict:
    """The key, certificate and CA of ``pki`` copied into ``tmp_path`` (the test swaps them)."""
    ca, own = pki
    files = {"key": own.key, "cert": own.cert, "ca_cert": ca.ca_cert}
    return {name: str(shutil.copy(path, tmp_path / f"{name}.pem")) for name, path in files.items()}


@contextlib.contextmanager
def swapped_after_check(monkeypatch, module, swaps: dict, stack: contextlib.ExitStack):
    """``module.open_regular`` (the check's open) swaps the file at each path of ``swaps`` once it has opened it:
    for another file (renamed over it), or for a FIFO without a writer ("fifo")."""

    real = module.open_regular

    def opened(path, *args):
        fd = real(path, *args)
        swap = swaps.pop(str(path), None)
        if swap == "fifo":
            os.unlink(path)
            stack.enter_context(fifo_without_writer(path))  # a blocked open of it released, and the test fails
        elif swap is not None:
            shutil.copy(swap, str(path) + ".new")
            os.replace(str(path) + ".new", path)
        return fd

    monkeypatch.setattr(module, "open_regular", opened)
    yield
    assert not swaps, f"not checked: {sorted(swaps)}"  # every file to swap was opened by the check


def ca_names(context) -> list[str]:
    return [dict(rdn[0] for rdn in cert["subject"])["commonName"] for cert in context.get_ca_certs()]


@pytest.mark.parametrize("name", ["key", "cert", "ca_cert"])
@pytest.mark.parametrize("swap", ["other", "fifo"])
def test_the_listeners_files_are_loaded_as_checked(tmp_path, monkeypatch, pkis, swap, name):
    """One file swapped at a time: another key or certificate loaded by its path would not match the one loaded as
    checked (refused), another CA would be listed, a FIFO would block the load (released: the test fails)."""
    ours, other = pkis
    files = copies(tmp_path, ours)
    theirs = {"key": other[1].key, "cert": other[1].cert, "ca_cert": other[0].ca_cert}
    with contextlib.ExitStack() as stack:
        stack.enter_context(swapped_after_check(monkeypatch, secretfile, {
            files[name]: "fifo" if swap == "fifo" else theirs[name]}, stack))
        context = tls.server_context(tls.TlsFiles(**files), mutual=True)
    assert ca_names(context) == ["ours-ca"]  # and the certificate with our key: loaded, not refused as mismatched


LOADERS = {
    "cli --ca-file": (secretfile, lambda path: client_tls(path, "--ca-file")[0]),
    "metadata agent ca_file": (secretfile, lambda path: metadata_agent.AgentSettings(
        "http://192.0.2.10:8775", "/nonexistent", ("http://192.0.2.11",), "/nonexistent", ca_file=path,
        timeout=5).tls_context()),
    "neutron ca_file": (neutron_secretfile, neutron_client.tls_context),
}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("swap", ["other", "fifo"])
def test_a_ca_file_is_loaded_as_checked(tmp_path, monkeypatch, pkis, loader, swap):
    module, load = LOADERS[loader]
    ca = copies(tmp_path, pkis[0])["ca_cert"]
    with contextlib.ExitStack() as stack:
        stack.enter_context(swapped_after_check(monkeypatch, module, {
            ca: "fifo" if swap == "fifo" else pkis[1][0].ca_cert}, stack))
        context = load(ca)
    assert ca_names(context) == ["ours-ca"]


def test_without_proc_the_check_refuses_naming_it(tmp_path, monkeypatch, pkis):
    """/proc/self/fd is how the checked file is named to ssl: where it does not name it, the file is refused (never
    loaded by its path, which another file may have taken)."""
    files = copies(tmp_path, pkis[0])
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: real_stat(
        files["key"] if str(path).startswith("/proc/self/fd/") else path, *a, **k))
    with pytest.raises(tls.TlsError) as refused:
        tls.server_context(tls.TlsFiles(**files), mutual=True)
    assert refused.value.field == "cert"  # the key named itself: stat of its /proc path was redirected to it
    assert "does not name it (is /proc mounted?)" in str(refused.value)
