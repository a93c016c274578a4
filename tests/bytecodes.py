"""The work of Python code counted, not timed (whatever the load): the bytecodes a function runs, every frame it
calls traced (``sys.settrace`` with opcode events), or the lines of one source file it runs. One counter for every
test and benchmark that bounds work by counts (tests/unit: test_duplicate_macs_pass, test_originator_forget,
test_report_retake, test_remote_ip_holder_cost, test_punt_meters, ...; tests/benchmarks: evpn_withdraw,
evpn_announce); ``ByFunction`` counts by function too (evpn_withdraw --functions).

Counts are of Python only: work in C (a dict copied, a regular expression, the JSON decoder) counts as the one
bytecode that calls it, so a bound in bytecodes goes with a CPU figure where C work moves (docs/benchmarks.md)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class Bytecodes:
    """A running count of the Python bytecodes run under ``run``; ``count`` may be read and set meanwhile (a pacer's
    pause that records the stretch since the one before and starts the next at 0), and ``untraced`` leaves a stretch
    out (a check that is not the work)."""

    def __init__(self):
        self.count = 0

    def _trace(self, frame, event, _arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            self.count += 1
        return self._trace

    def run(self, function):
        """``function()`` traced, every frame it calls (the tracer in place before, if any, put back after); what it
        returns."""
        before = sys.gettrace()
        sys.settrace(self._trace)
        try:
            return function()
        finally:
            sys.settrace(before)

    def __enter__(self):
        """``with Bytecodes() as counted:`` counts the frames the block calls (not the block's own bytecodes)."""
        self._before = sys.gettrace()
        sys.settrace(self._trace)
        return self

    def __exit__(self, *_exc):
        sys.settrace(self._before)

    @staticmethod
    @contextmanager
    def untraced():
        """Nothing counted inside (the tracer put back after)."""
        tracer = sys.gettrace()
        sys.settrace(None)
        try:
            yield
        finally:
            sys.settrace(tracer)


class ByFunction(Bytecodes):
    """A ``Bytecodes`` that also counts each function's own bytecodes (not those of the functions it calls):
    ``functions`` maps a code object to its count; ``top(n)`` names the ``n`` largest (which function's work grew
    between two checkouts)."""

    def __init__(self):
        super().__init__()
        self.functions: dict = {}

    def _trace(self, frame, event, _arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            self.count += 1
            code = frame.f_code
            self.functions[code] = self.functions.get(code, 0) + 1
        return self._trace

    def top(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` functions that ran the most bytecodes of their own, as ("file:line qualified name", count)."""
        ranked = sorted(self.functions.items(), key=lambda item: -item[1])[:n]
        return [(f"{name_of(code)}", count) for code, count in ranked]


def name_of(code) -> str:
    """``path/to/module.py:line Class.function`` of a code object, the path from the package (tests, openflow, ...)."""
    parts = code.co_filename.split("/")
    tail = "/".join(parts[-2:]) if len(parts) > 1 else code.co_filename
    return f"{tail}:{code.co_firstlineno} {getattr(code, 'co_qualname', code.co_name)}"


def opcodes(function) -> int:
    """The Python bytecodes ``function()`` runs (every frame it calls, traced): its work, whatever the load."""
    counter = Bytecodes()
    counter.run(function)
    return counter.count


def lines_of(path: str, function) -> int:
    """The lines of the source file ``path`` run while ``function()`` runs (a loop's line counts once an iteration):
    only frames of that file are traced."""
    lines = [0]

    def local(_frame, event, _arg):
        if event == "line":
            lines[0] += 1
        return local

    def calls(frame, _event, _arg):
        return local if frame.f_code.co_filename == path else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        function()
    finally:
        sys.settrace(before)
    return lines[0]
