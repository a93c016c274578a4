"""The forked child of the unit tests (tests/unit/forked.py): with ``own_hub`` its event loop runs only the green
threads the child's work spawns, never the test process's, which the child's copy of the test process's hub held."""

from controller.ryu_compat import hub
from tests.unit.forked import forked


def _turns_of_a_left_green_thread(own_hub: bool) -> str:
    """A green thread of the test process, waiting for its turn at the fork; what ran in the child's loop."""
    ran = []
    left = hub.spawn(lambda: ran.append("the test process's green thread"))

    def child() -> str:
        mine = hub.spawn(lambda: ran.append("the child's"))
        mine.wait()
        for _ in range(3):
            hub.sleep(0)
        return ", ".join(ran)

    try:
        return forked(child, own_hub=own_hub)
    finally:
        left.kill()


def test_a_child_on_a_hub_of_its_own_runs_only_its_own_green_threads():
    assert _turns_of_a_left_green_thread(own_hub=True) == "the child's"


def test_a_child_on_the_test_processs_hub_would_run_the_test_processs_green_threads():
    """What ``own_hub`` is for: without it, the copy of the test process's green thread ran in the child."""
    assert "the test process's green thread" in _turns_of_a_left_green_thread(own_hub=False)
