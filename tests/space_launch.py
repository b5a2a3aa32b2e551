"""Shared by the Space tests: import ``space/app.py`` (not a package) and launch it on 127.0.0.1 in-process, and a
small headless-Chromium driver (the DevTools protocol over a pipe: no port, no extra Python package)."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

APP_PATH = Path(__file__).resolve().parents[1] / "space" / "app.py"
CHROMIUM = Path("/usr/bin/chromium")


def load_space_app():
    """Import space/app.py as a module (once per process)."""
    name = "resadapt_space_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched_space(env: dict[str, str], examples_dir: Path):
    """Launch the app with ``env`` set (restored afterwards); yields ``(app module, demo, url)``, closes the app."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    demo = None
    try:
        app = load_space_app()
        config = app.AppConfig.from_env()
        demo = app.build_demo(config, examples_dir=examples_dir)
        port = free_port()
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **app.launch_kwargs(demo, config))
        yield app, demo, f"http://127.0.0.1:{port}/"
    finally:
        if demo is not None:
            demo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------------------------- headless Chromium


class BrowserError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on ``--remote-debugging-pipe`` (fd 3: commands in,
    fd 4: replies out, NUL-separated JSON). Everything stays on 127.0.0.1: no first-run, sync, component-update or
    QUIC traffic. Use as a context manager; :meth:`page` opens a tab with a given viewport."""

    def __init__(self, profile: Path, executable: Path = CHROMIUM, log: Path | None = None):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # high descriptor numbers, so that the shell's "3<&a 4>&b" never overwrites one with the other
        child = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, replies_write)]
        for fd in (commands_read, replies_write):
            os.close(fd)
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--mute-audio",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
        ]
        self._log = open(log or os.devnull, "wb")
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{child[0]} 4>&{child[1]}', "chromium", str(executable), *flags, "about:blank"],
            pass_fds=child, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
        )
        for fd in child:
            os.close(fd)
        self._buffer = b""
        self._next_id = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.send("Browser.close", timeout=10)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for fd in (self._commands, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        """Send one command and return its result (events in between are skipped)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                    raise BrowserError(f"{method}: no reply within {timeout} s")
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise BrowserError(f"{method}: Chromium closed the pipe (exit code {self.process.poll()})")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def page(self, width: int, height: int, mobile: bool = False) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})
        page.send("Page.enable")
        return page


class Page:
    """One tab of :class:`Chromium`."""

    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def goto(self, url: str):
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float = 30):
        """The value of a JavaScript expression (JSON-serialisable results come back as Python values)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           timeout)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}...: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.25):
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for: {expression}")
            time.sleep(interval)

    def click(self, selector: str):
        if not self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                             "if (!e) return false; e.scrollIntoView(); e.click(); return true; })()"):
            raise BrowserError(f"nothing to click at {selector}")

    def type_into(self, selector: str, text: str):
        """Replace the text of an input or textarea as typing would (focus, select all, insert: input events fire)."""
        if not self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                             "if (!e) return false; e.scrollIntoView(); e.focus(); e.select(); return true; })()"):
            raise BrowserError(f"nothing to type into at {selector}")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params, timeout=60)["data"]))
        return path
