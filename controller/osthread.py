"""Real OS threads beside the event loop, for what must keep time while the loop is busy (the HA link).

Under ryu-manager ``threading``, ``socket``, ``select`` and ``time.sleep`` are eventlet's green versions: a green
thread runs only when the one running before it yields, so a long stretch of work (a big apply, a full compile,
a read-back of 50 switches) delays it, and an HA heartbeat delayed past the dead interval looks like a dead node.
This module gives the unpatched modules (``eventlet.patcher.original``; without monkey-patching they are the
ordinary ones) and two small tools:

- ``Inbox``: hands items from OS threads to one consuming thread of the event loop (a green thread under
  eventlet), woken through a pipe: an OS thread must never touch a green lock, event or socket.
- ``Pulse``: an OS thread that beats every ``period`` and records the longest gap between two beats with the CPU
  time the process used meanwhile. It stops only when the whole process does not run (SIGSTOP, a paused VM,
  starved of CPU), never because the event loop is busy: "did this process run?" without asking the loop.

An OS thread still needs the GIL: the event loop's Python code gives it up every few milliseconds
(``sys.getswitchinterval``), but one C call that holds it (a full collection of the cyclic garbage collector
over millions of objects, one huge sort) holds the OS threads too.
"""

from __future__ import annotations

import collections
import select
import time

from eventlet import patcher

os_os = patcher.original("os")  # unpatched read/write: eventlet's wait on the hub, even for a pipe
os_threading = patcher.original("threading")
os_socket = patcher.original("socket")
os_select = patcher.original("select")


class Inbox:
    """Items put by any thread, taken in order by one consumer that waits with (possibly green) ``select``."""

    def __init__(self):
        self._items: collections.deque = collections.deque()
        self._wake_r, self._wake_w = os_os.pipe()
        os_os.set_blocking(self._wake_r, False)
        os_os.set_blocking(self._wake_w, False)

    def put(self, item) -> None:
        """From any thread: queue ``item`` and wake the consumer."""
        self._items.append(item)
        try:
            os_os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the consumer is awake already) or closed (stopping)

    @property
    def fd(self) -> int:
        """The pipe end that is readable once something was put (for a consumer that polls itself)."""
        return self._wake_r

    def pending(self) -> bool:
        return bool(self._items)

    def drain(self) -> None:
        """Empty the wake-up pipe (it never blocks)."""
        try:
            while os_os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def take(self, timeout: float) -> list:
        """On the consumer: what was put, in order, waiting up to ``timeout`` seconds for something (with
        ``select.select``: green under eventlet, so call it from the event loop's side only)."""
        if not self._items:
            try:
                select.select([self._wake_r], [], [], timeout)
            except (OSError, ValueError):
                return []
        self.drain()
        out = []
        while self._items:
            out.append(self._items.popleft())
        return out

    @property
    def closed(self) -> bool:
        return self._wake_w < 0

    def close(self) -> None:
        """Close the pipe, once no OS thread uses it any more. A put after it is a no-op (a write to descriptor -1
        fails), never a byte written into whatever file took the pipe's descriptor number meanwhile."""
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os_os.close(fd)
                except OSError:
                    pass


class Pulse:
    """An OS thread that beats every ``period`` seconds (see the module docstring). ``take()`` (any thread) gives
    the longest gap since the last ``take()`` (the stretch still open included) and the CPU seconds the process
    used during that gap, and starts a new measure."""

    def __init__(self, period: float, name: str = "canopy-pulse"):
        self.period = period
        self.name = name
        self.beats = 0
        self._last = (time.monotonic(), time.process_time())
        self._worst = (0.0, 0.0)  # (gap, CPU seconds during it) since the last take()
        self._stop = os_threading.Event()
        self._thread = None

    def start(self) -> None:
        self._last = (time.monotonic(), time.process_time())
        self._worst = (0.0, 0.0)
        self._stop.clear()
        self._thread = os_threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2 * self.period + 1)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._beat()

    def _beat(self) -> None:
        now = (time.monotonic(), time.process_time())
        gap = (now[0] - self._last[0], now[1] - self._last[1])
        if gap[0] > self._worst[0]:
            self._worst = gap
        self._last = now
        self.beats += 1

    def take(self) -> tuple[float, float]:
        """(longest gap in seconds, CPU seconds the process used in it) since the last take(), then reset."""
        last, worst = self._last, self._worst
        open_gap = (time.monotonic() - last[0], time.process_time() - last[1])
        self._worst = (0.0, 0.0)
        self._last = (time.monotonic(), time.process_time())
        return worst if worst[0] >= open_gap[0] else open_gap
