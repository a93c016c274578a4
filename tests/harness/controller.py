"""A Canopy controller process run by the harness inside a controller host's namespace."""

from __future__ import annotations

import copy
import http.client
import signal
from pathlib import Path
from typing import Callable

from tests.harness import process
from tests.harness.http import RestClient
from tests.harness.process import Child
from tests.harness.wait import wait_until

READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
LOG_TAIL_LINES = 40


class ControllerStartError(RuntimeError):
    """The controller exited or did not answer GET /v1/status in time; carries its log tail."""


def default_settings(workdir: Path, name: str) -> dict:
    """The settings every test controller starts from (callers' settings are merged over them)."""
    return {
        "data_dir": str(workdir / f"{name}-data"),
        "log_level": "info",
        "openflow": {"listen": "0.0.0.0", "port": 6653},
        "ovsdb": {"listen": "0.0.0.0", "port": 6640},
        "rest": {"listen": "127.0.0.1", "port": 8080, "token": "test-token"},
    }


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in; nested dicts merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class ControllerProcess:
    """One controller: started, stopped, killed and restarted with the same config and log file.

    ``spawn(name, argv, log_path, ns)`` starts (and records) the process; ``api`` is a REST
    client for the controller's own namespace.
    """

    def __init__(self, name: str, ns: str, argv: list[str], config_path: Path, log_path: Path,
                 api: RestClient, spawn: Callable[..., Child]):
        self.name = name
        self.ns = ns
        self.argv = argv
        self.config_path = config_path
        self.log_path = log_path
        self.api = api
        self._spawn = spawn
        self.child: Child | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the process and wait until GET /v1/status answers 200."""
        if self.alive():
            raise RuntimeError(f"controller {self.name} is already running (pid {self.pid})")
        self.child = self._spawn(self.name, self.argv, self.log_path, self.ns)
        try:
            self._wait_ready(timeout)
        except ControllerStartError:
            self.kill()
            raise

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds."""
        if self.child is not None:
            process.stop([self.child], grace)

    def kill(self) -> None:
        """SIGKILL at once (a crash), and reap."""
        if self.child is not None:
            self.child.send(signal.SIGKILL)
            self.child.popen.wait(timeout=5)

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """Stop gracefully, then start again with the same config and wait until ready."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return process.log_tail(self.log_path, lines)

    def _wait_ready(self, timeout: float) -> None:
        probe = RestClient(self.api.ns, self.api.host, self.api.port, timeout=2.0, tls=self.api.tls)
        last = ["no answer yet"]

        def ready() -> bool:
            if not self.child.alive():
                self._fail(f"exited with code {self.child.popen.returncode}")
            try:
                status = probe.get("/v1/status", token=self.api.token).status
            except (OSError, http.client.HTTPException) as exc:
                last[0] = f"GET /v1/status failed: {exc!r}"
                return False
            last[0] = f"GET /v1/status answered {status}"
            return status == 200

        try:
            wait_until(ready, timeout, interval=0.2, what="GET /v1/status to answer 200")
        except AssertionError as exc:
            self._fail(f"not ready: {exc} ({last[0]})")

    def _fail(self, reason: str) -> None:
        raise ControllerStartError(
            f"controller {self.name} in {self.ns} {reason}; last lines of {self.log_path}:\n"
            f"{self.log_tail()}")
