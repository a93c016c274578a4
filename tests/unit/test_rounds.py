"""controller/rounds.py: once a round of the event loop has taken its budget of CPU, paused work waits for the next
round, so a green thread woken by a timer waits for one budget of others' turns, not for all of them; paused work
still goes on in the order it paused. The loop thread's CPU is a fake clock the workers move: no wall clock."""

import eventlet
import pytest
from eventlet import hubs

from controller.rounds import Rounds

TURN = 0.005  # fake CPU seconds of each worker's turn
WORKERS, TURNS = 20, 6


@pytest.fixture
def cpu():
    return [0.0]


def run(rounds: Rounds | None, cpu) -> dict:
    """WORKERS green threads of TURNS turns each, pausing through ``rounds`` (plain ``sleep(0)`` without), and a
    probe woken once a round: the most CPU the workers took between two of the probe's turns, and the order the
    workers finished in."""
    seen = {"since": 0.0, "most": 0.0, "finished": [], "done": False}

    def worker(n):
        for _ in range(TURNS):  # a pause, then a turn: the first turns of all of them are paced too
            rounds.give_way(eventlet.sleep) if rounds else eventlet.sleep(0)
            cpu[0] += TURN
            seen["since"] += TURN
        seen["finished"].append(n)

    def probe():
        while not seen["done"]:
            seen["most"] = max(seen["most"], seen["since"])
            seen["since"] = 0.0
            eventlet.sleep(0)

    if rounds:
        rounds.install()
    try:
        watcher = eventlet.spawn(probe)
        eventlet.sleep(0)
        workers = [eventlet.spawn(worker, n) for n in range(WORKERS)]
        for thread in workers:
            thread.wait()
        seen["done"] = True
        watcher.wait()
    finally:
        if rounds:
            rounds.uninstall()
    return seen


def test_without_a_budget_a_woken_green_thread_waits_for_every_ready_turn(cpu):
    seen = run(None, cpu)
    assert seen["most"] == pytest.approx(WORKERS * TURN)  # 50 ms: the whole round


def test_with_a_budget_it_waits_for_about_one_budget(cpu):
    rounds = Rounds(budget=0.02, clock=lambda: cpu[0])
    seen = run(rounds, cpu)
    assert seen["most"] <= 2 * (0.02 + TURN) + 1e-9  # the ends of two rounds, each one budget: not 100 ms
    assert rounds.waited > 0
    assert sorted(seen["finished"]) == list(range(WORKERS))  # every worker's work done
    assert hubs.get_hub().fire_timers.__func__ is type(hubs.get_hub()).fire_timers  # uninstalled


def test_paused_work_resumes_in_the_order_it_paused(cpu):
    rounds = Rounds(budget=0.02, clock=lambda: cpu[0])
    seen = run(rounds, cpu)
    assert seen["finished"] == list(range(WORKERS))  # none passed over: they finish in the order they started


def test_a_green_thread_killed_in_its_pause_leaves_no_ticket_behind(cpu):
    rounds = Rounds(budget=0.0, clock=lambda: cpu[0])  # every round spent: every pause waits
    rounds.install()
    try:
        stuck = eventlet.spawn(rounds.give_way, eventlet.sleep)
        eventlet.sleep(0)
        stuck.kill()
        assert rounds._waiting == set()
    finally:
        rounds.uninstall()
