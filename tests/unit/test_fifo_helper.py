"""The FIFO of tests/unit/fifo.py fails a reader that blocks in its open, and releases it, so that such a reader
fails the test instead of hanging the run, whatever the kernel shows in wchan; ``fifo_without_reader`` the same for a
writer."""

import contextlib
import os

import pytest

from tests.unit import fifo

RESCUE = fifo.BOUND + 30.0  # seconds: this test's own release, only for a helper that did not release the reader


@contextlib.contextmanager
def rescued(path, release=lambda path: fifo._release(path, b"")):
    """Releases a reader of ``path`` still waiting after RESCUE seconds: only a helper that failed leaves one that
    long, and this test then fails (the helper said nothing) instead of hanging. An OS thread, as the helper's."""
    done, ended = [False], fifo._thread.allocate_lock()
    ended.acquire()

    def rescue():
        try:
            until = fifo._time.monotonic() + RESCUE
            while not done[0] and (fifo._time.monotonic() < until or not release(path)):
                fifo._time.sleep(0.01)
        finally:
            ended.release()

    fifo._thread.start_new_thread(rescue, ())
    try:
        yield
    finally:
        done[0] = True
        ended.acquire()


def blocking_open(path):
    """What a secret file's reader must not do: open it waiting for a writer (then read it to its end)."""
    with open(path, "rb") as fh:
        return fh.read()


def test_a_reader_waiting_in_the_open_fails_the_test(tmp_path):
    """At once where wchan shows the wait (this kernel), else after BOUND (the next test)."""
    path = tmp_path / "fifo"
    with rescued(path), pytest.raises(AssertionError, match=r"\(released by the test\)$"):
        with fifo.fifo_without_writer(path) as name:
            assert blocking_open(name) == b"released\nby the test\n"


def test_a_reader_waiting_in_the_open_is_released_after_the_bound_where_wchan_does_not_show_it(tmp_path, monkeypatch):
    """Another kernel, or a hidden wchan ("0"): the watcher never sees the wait; the reader blocked the run for
    good. BOUND is made short here: a wrong reader's hang is what it bounds, the test only needs it to end."""
    monkeypatch.setattr(fifo, "BLOCKED_IN_OPEN", "a wait no kernel shows")
    monkeypatch.setattr(fifo, "BOUND", 0.05)
    path = tmp_path / "fifo"
    with rescued(path), pytest.raises(AssertionError, match=r"fifo still held it open after 0.05 s, when a writer"):
        with fifo.fifo_without_writer(path) as name:
            assert blocking_open(name) == b"released\nby the test\n"


def test_a_reader_that_opens_without_waiting_passes_however_long_the_block_lasts(tmp_path, monkeypatch):
    """What a right reader does (controller/secretfile.py): open without blocking, look, close. Past the bound the
    watcher's tries find no reader, and a slow run alone is no failure. The bound is not 0: the watcher's first try
    then came the moment it started, when this reader's open did (the try found it open under load: a failure)."""
    monkeypatch.setattr(fifo, "BOUND", 2 * fifo.TRY_EVERY)
    with fifo.fifo_without_writer(tmp_path / "fifo") as name:
        os.close(os.open(name, os.O_RDONLY | os.O_NONBLOCK))
        fifo._time.sleep(fifo.BOUND + 3 * fifo.TRY_EVERY)  # slower than the bound: the watcher tries, finds no reader


def blocking_write(path):
    """What the flags' writer must not do (controller/writebehind.py): open a FIFO for writing, waiting for a reader."""
    with open(path, "wb") as fh:
        fh.write(b"flags")


@pytest.mark.parametrize("wchan", [True, False], ids=["wchan", "bound"])
def test_a_writer_waiting_in_the_open_fails_the_test(tmp_path, monkeypatch, wchan):
    """At once where wchan shows the wait, else after BOUND (made short here)."""
    if not wchan:
        monkeypatch.setattr(fifo, "BLOCKED_IN_OPEN", "a wait no kernel shows")
        monkeypatch.setattr(fifo, "BOUND", 0.05)
    path = tmp_path / "fifo"
    with rescued(path, fifo._release_writer), pytest.raises(AssertionError, match=r"\(released by the test\)$"):
        with fifo.fifo_without_reader(path) as name:
            with contextlib.suppress(BrokenPipeError):  # unless the write came before the reader closed
                blocking_write(name)


def test_a_writer_that_never_opens_it_passes_however_long_the_block_lasts(tmp_path, monkeypatch):
    monkeypatch.setattr(fifo, "BOUND", 0.0)
    with fifo.fifo_without_reader(tmp_path / "fifo") as name:
        os.unlink(name)  # what controller/writebehind.py does with whatever is at its .part path
        fifo._time.sleep(3 * fifo.TRY_EVERY)
