"""tests/harness/ovsdb_driver.py's ``ManagerDriver`` start: it waits for its child to listen for as long as the child
takes to start (``LISTEN_TIMEOUT``, generous: not the short wait for a command's answer, which a child starting under
load outlived), and fails at once, saying why, when the child exits before it listens. A real child (~1 s of CPU)."""

import pytest

from tests.harness import ovsdb_driver
from tests.harness.ovsdb_driver import ManagerDriver


def test_a_child_is_waited_for_until_it_listens_not_for_the_commands_wait(monkeypatch, tmp_path):
    monkeypatch.setattr(ovsdb_driver, "START_TIMEOUT", 0.01)  # no interpreter starts (eventlet, ovs) in 10 ms
    driver = ManagerDriver(tmp_path, ["--no-tunnel"])
    try:
        assert driver.port > 0
    finally:
        driver.close()


def test_a_child_that_exits_before_listening_fails_the_start_at_once_with_its_status_and_log(tmp_path):
    with pytest.raises(AssertionError) as failed:
        ManagerDriver(tmp_path, ["--no-such-option"])  # argparse: exit status 2 before any import
    message = str(failed.value)
    assert "exited (status 2) before listening" in message and "--no-such-option" in message, message
