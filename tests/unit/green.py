"""Green threads a test spawns and waits on, whose errors fail the test at once.

Ryu's ``hub.spawn`` logs a job's error and swallows it: the thread ends (``dead``), its ``wait()`` returns None. A test
waiting for what the job was to set (a flag, an answer, a pass) then waited its whole bound and failed on something
else, or passed (a thread ``dead`` taken for one that had finished), or, with no bound, hung. Here a job's error is
kept (``spawned``) and every wait on the hub (``turns_until``, ``turns``) raises it as soon as the job has ended."""

from __future__ import annotations

from controller.ryu_compat import hub

BOUND_TURNS = 10_000  # turns of the hub a wait takes at the most (the waits here take a few hundred)


def spawned(function, *args, **kwargs):
    """``function(*args, **kwargs)`` in a green thread of the hub's (as the product spawns them) whose error is kept:
    its ``wait()`` raises it, and so does a wait here naming the thread."""
    return hub.spawn(function, *args, raise_error=True, **kwargs)


class Jobs(list):
    """A ``spawn`` for the code under test (the app passes ``hub.spawn``): each job ``spawned`` and listed here, so
    that a wait naming this list fails at once with the error of a job spawned at any time."""

    def __call__(self, function, *args, **kwargs):
        thread = spawned(function, *args, **kwargs)
        self.append(thread)
        return thread


def raise_failed(threads) -> None:
    """The error of the first of ``threads`` (green threads, or ``Jobs`` as they are now) that ended with one,
    raised; nothing if none did (a thread killed, by the test or the code under test, ended without one)."""
    for thread in [t for each in threads for t in (each if isinstance(each, list) else [each])]:
        if thread.dead:
            try:
                thread.wait()
            except hub.TaskExit:
                pass


def turns_until(condition, *threads, bound: int = BOUND_TURNS, sleep: float = 0.0, what: str = "the condition"):
    """Turns of the hub (``hub.sleep(sleep)``) until ``condition()`` holds: at once if it does already. One of
    ``threads`` ended by an error fails the test at once with it; ``bound`` turns without ``condition`` fail it too.
    Returns what ``condition()`` returned."""
    for _ in range(bound):
        if held := condition():
            return held
        raise_failed(threads)
        hub.sleep(sleep)
    if held := condition():
        return held
    raise_failed(threads)
    raise AssertionError(f"{what} not within {bound} turns of the event loop")


def turns(count: int, *threads, sleep: float = 0.0) -> None:
    """``count`` turns of the hub, for what ``threads`` do meanwhile: one of them ended by an error fails the test
    at once with it."""
    for _ in range(count):
        raise_failed(threads)
        hub.sleep(sleep)
    raise_failed(threads)


def joined(*threads, beside=(), bound: int = BOUND_TURNS) -> list:
    """What each of ``threads`` returned, once all ended (within ``bound`` turns of the hub); an error of theirs, or
    of the threads ``beside`` them (a loop that never ends), raised as soon as its thread has ended."""
    turns_until(lambda: all(thread.dead for thread in threads), *threads, *beside, bound=bound,
                what="the threads' end")
    return [thread.wait() for thread in threads]
