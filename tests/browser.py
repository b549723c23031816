"""A headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``),
so that tests open the HTML reports in a real browser with nothing but the standard library.

    with Browser.start() as browser:
        page = browser.open(Path("report.html").resolve().as_uri())
        page.eval("document.images.length")
        page.console_errors, page.dialogs, page.screenshot()

Chromium reads commands from fd 3 and writes replies and events to fd 4, each a JSON message
ended by a NUL byte. :func:`find_chromium` names the executable or says why there is none.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe")


def find_chromium() -> tuple[str | None, str]:
    """(path, "") of a Chromium/Chrome executable, or (None, why not)."""
    explicit = os.environ.get("CHROMIUM")
    for name in ([explicit] if explicit else []) + list(CANDIDATES):
        path = shutil.which(name)
        if path:
            return path, ""
    return None, ("no Chromium found (tried $CHROMIUM and " + ", ".join(CANDIDATES) + "); install Debian's "
                  "'chromium' package (.ci/run does so when it runs as root)")


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, process, write_fd: int, read_fd: int, profile: str):
        self.process, self._write, self._read, self._profile = process, write_fd, read_fd, profile
        self._messages: queue.Queue = queue.Queue()
        self._next_id = 0
        self.events: list[dict] = []
        threading.Thread(target=self._reader, daemon=True).start()

    @classmethod
    def start(cls, executable: str | None = None, width: int = 1280, height: int = 900) -> "Browser":
        executable = executable or find_chromium()[0]
        if executable is None:
            raise BrowserError(find_chromium()[1])
        profile = tempfile.mkdtemp(prefix="onnx-lrp-chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def as_fd3_fd4():  # in the child: the pipe ends Chromium expects
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"]
        # fds 3 and 4 are open here (the pipes took the lowest free numbers), so they can be kept open in
        # the child, where as_fd3_fd4 has put the pipe ends on them by the time the others are closed
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   pass_fds=(3, 4, to_browser_r, from_browser_w), preexec_fn=as_fd3_fd4,
                                   close_fds=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        return cls(process, to_browser_w, from_browser_r, profile)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._write, self._read):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    # --- protocol ------------------------------------------------------------------------------
    def _reader(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._read, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self._messages.put(json.loads(message))

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60):
        self._next_id += 1
        ident = self._next_id
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline, f"{method} did not answer within {timeout} s")
            if reply.get("id") == ident:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def wait_for(self, method: str, session: str | None, timeout: float = 60) -> dict:
        """The next event ``method`` (of ``session``), after those already received."""
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session and not event.get("_seen"):
                event["_seen"] = True
                return event
        while True:
            event = self._next(deadline, f"no {method} within {timeout} s")
            self._event(event)
            if event.get("method") == method and event.get("sessionId") == session:
                event["_seen"] = True
                return event

    def _next(self, deadline: float, why: str) -> dict:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError(why) from None
        if message is None:
            raise BrowserError(f"Chromium closed the pipe ({why})")
        return message

    def _event(self, event: dict) -> None:
        self.events.append(event)
        if event.get("method") == "Page.javascriptDialogOpening":  # never let a dialog block the page
            os.write(self._write, json.dumps({"id": 10 ** 9 + len(self.events), "method": "Page.handleJavaScriptDialog",
                                              "params": {"accept": False}, "sessionId": event["sessionId"]}).encode()
                     + b"\0")

    def open(self, url: str, timeout: float = 60) -> "Page":
        """A new tab showing ``url``, once its load event fired."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        page = Page(self, session, target)
        page.navigate(url, timeout)
        return page


class Page:
    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def navigate(self, url: str, timeout: float = 60) -> float:
        """Go to ``url``; returns the seconds until its load event."""
        start = time.monotonic()
        self.browser.send("Page.navigate", {"url": url}, self.session)
        self.browser.wait_for("Page.loadEventFired", self.session, timeout)
        return time.monotonic() - start

    def eval(self, expression: str, timeout: float = 60):
        """The value of a JavaScript expression (promises are awaited)."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session, timeout)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)["data"])

    def _mine(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events if e.get("sessionId") == self.session
                and e.get("method") == method]

    @property
    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations, failed loads)."""
        errors = [" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                  for p in self._mine("Runtime.consoleAPICalled") if p.get("type") in ("error", "assert")]
        errors += [str(p.get("exceptionDetails", {}).get("exception", {}).get("description", p))
                   for p in self._mine("Runtime.exceptionThrown")]
        errors += [p["entry"].get("text", "") for p in self._mine("Log.entryAdded") if p["entry"].get("level") == "error"]
        return errors

    @property
    def dialogs(self) -> list[str]:
        """Messages of alert/confirm/prompt dialogs the page opened (a report must open none)."""
        return [p.get("message", "") for p in self._mine("Page.javascriptDialogOpening")]

