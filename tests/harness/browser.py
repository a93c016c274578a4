"""A real headless Chromium, driven inside a network namespace (the controller's, where its REST API is).

The test process cannot open sockets into a namespace's loopback with Selenium, so the browser is driven by
this module run as a child inside the namespace (``python -m tests.harness.browser``), which talks to the
test over JSON lines on stdin/stdout: ``{"op": "open", "url": ...}``, ``{"op": "js", "expr": ...}``,
``{"op": "wait_js", "expr": ..., "timeout": s}``, ``{"op": "size", "width", "height"}``,
``{"op": "screenshot", "path": ...}``, ``{"op": "quit"}``; each answered by ``{"ok": true, "value": ...}``
or ``{"ok": false, "error": ...}``. Chromium and chromedriver are Debian's (``chromium``, ``chromium-driver``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ANSWER_GRACE = 15.0  # seconds a browser command may take beyond its own timeout


def browser_unavailable() -> str | None:
    """Why a browser test cannot run here (None: it can)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} missing (Debian package {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing (pip install -e '.[test]')"
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """Test side: starts the driver child in ``ns`` and sends it commands."""

    def __init__(self, ns: str, log_path: Path, record=None):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.harness.browser"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
            cwd=Path(__file__).resolve().parents[2])
        if record is not None:
            from tests.harness.process import start_time

            record.add_process(self.popen.pid, start_time(self.popen.pid))

    def call(self, op: str, timeout: float = 10.0, **args):
        line = json.dumps({"op": op, "timeout": timeout, **args}) + "\n"
        self.popen.stdin.write(line.encode())
        self.popen.stdin.flush()
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout + ANSWER_GRACE)
        if not ready:
            raise BrowserError(f"the browser did not answer {op!r} within {timeout + ANSWER_GRACE:.0f} s")
        answer = self.popen.stdout.readline()
        if not answer:
            raise BrowserError(f"the browser driver exited during {op!r}")
        reply = json.loads(answer)
        if not reply["ok"]:
            raise BrowserError(f"{op}: {reply['error']}")
        return reply.get("value")

    def close(self):
        if self.popen.poll() is None:
            try:
                self.call("quit", timeout=5)
            except (BrowserError, OSError, ValueError):
                pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)  # its own session: the driver, chromedriver, Chromium
            self.popen.wait(10)
        self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------- driver side (in the namespace)
def _start_driver(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking",
                 "--enable-precise-memory-info", f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _serve(driver, command: dict):
    op, timeout = command["op"], float(command.get("timeout", 10))
    if op == "open":
        driver.get(command["url"])
        return driver.current_url
    if op == "js":
        return driver.execute_script("return (" + command["expr"] + ");")
    if op == "wait_js":
        deadline = time.monotonic() + timeout
        while True:
            value = driver.execute_script("return (" + command["expr"] + ");")
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout} s: {command['expr']}")
            time.sleep(0.1)
    if op == "size":
        driver.set_window_size(int(command["width"]), int(command["height"]))
        return driver.get_window_size()
    if op == "screenshot":
        return driver.save_screenshot(command["path"])
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    profile = tempfile.mkdtemp(prefix="canopy-chromium-")
    driver = None
    try:
        driver = _start_driver(profile)
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return 0
            try:
                reply = {"ok": True, "value": _serve(driver, command)}
            except Exception as exc:  # reported to the test, which decides
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply, default=str), flush=True)
        return 0
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
