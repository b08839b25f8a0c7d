"""A real browser for the book tests: Debian's Chromium driven through its ChromeDriver.

No Python package is needed: ChromeDriver speaks the W3C WebDriver protocol (JSON over HTTP on
a local port), and this module is a small client for the few commands the tests use, on
``urllib`` alone, plus ChromeDriver's ``goog/cdp/execute`` passthrough to the DevTools protocol.

* :func:`find_browser` -> ``(chromium, chromedriver)`` paths, or ``None`` where either is missing
  (Debian: ``apt-get install chromium chromium-driver``; ``.ci/run`` installs both).
* :class:`StaticServer` serves the built book on ``127.0.0.1`` (a web page loads its fonts and
  scripts as on a real site; ``file://`` pages may not load fonts at all).
* :class:`Browser` opens one headless Chromium with **the network off**: every host name except
  ``127.0.0.1`` fails to resolve (``--host-resolver-rules``), so whatever a page needs from a CDN
  is simply missing, as for a reader offline.
"""
from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["find_browser", "StaticServer", "Browser", "WebDriverError"]

# Every host name resolves to nothing except the local server: the page is as offline as a
# reader on a train (IP literals never resolve through DNS, and the book names none).
OFFLINE_RULES = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def find_browser() -> tuple[str, str] | None:
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - keep the test output clean
        pass


class _Server(http.server.ThreadingHTTPServer):
    # A page asks for some 30 files at once; the default listen backlog of 5 makes a loaded
    # machine drop connections, and with them a script the page needs.
    request_queue_size = 128
    daemon_threads = True


class StaticServer:
    """Serve ``root`` on ``http://127.0.0.1:<free port>/`` from a thread (use as a context manager)."""

    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class WebDriverError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium session (``with Browser() as b: b.open(url, width=390)``)."""

    def __init__(self, chromium: str, chromedriver: str, *, width: int = 1280, height: int = 1000, timeout: float = 120):
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="segbook-chromium-"))
        port = _free_port()
        self.log = open(self.profile / "chromedriver.log", "w")
        self.driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=self.log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "HOME": str(self.profile)})
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self._request("GET", "/status")
                break
            except (OSError, WebDriverError):
                if time.monotonic() > deadline or self.driver.poll() is not None:
                    self.close()
                    raise WebDriverError(f"chromedriver did not start (log: {self.profile / 'chromedriver.log'})")
                time.sleep(0.2)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-extensions", "--disable-background-networking", "--force-device-scale-factor=1",
                f"--host-resolver-rules={OFFLINE_RULES}", f"--user-data-dir={self.profile / 'profile'}",
                f"--window-size={width},{height}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "pageLoadStrategy": "normal",
                                                 "goog:chromeOptions": {"binary": chromium, "args": args}}}}
        try:
            self.session = self._request("POST", "/session", caps)["sessionId"]
        except Exception:
            self.close()
            raise
        self._request("POST", f"/session/{self.session}/timeouts",
                      {"pageLoad": int(timeout * 1000), "script": int(timeout * 1000), "implicit": 0})

    # -- protocol --------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + 30) as resp:
                payload = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            payload = json.loads(err.read() or b"{}")
            value = payload.get("value", {})
            raise WebDriverError(f"{method} {path}: {value.get('error')}: {str(value.get('message'))[:600]}") from None
        return payload.get("value", payload)

    def _session(self, method: str, path: str, body: dict | None = None):
        return self._request(method, f"/session/{self.session}{path}", body)

    def cdp(self, cmd: str, **params):
        """One DevTools protocol command (e.g. ``Emulation.setDeviceMetricsOverride``)."""
        return self._session("POST", "/goog/cdp/execute", {"cmd": cmd, "params": params})

    # -- what the tests use ----------------------------------------------------------------
    def set_viewport(self, width: int, height: int) -> None:
        """The page's layout viewport, in CSS px (a phone is about 390 x 844)."""
        self.cdp("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                 mobile=width < 600)

    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def run(self, script: str, *args):
        """Run ``script`` (a function body: ``return ...``) in the page; JSON-serialisable result."""
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script: str, *args):
        """Like :meth:`run`; the script ends by calling ``arguments[arguments.length - 1](result)``."""
        return self._session("POST", "/execute/async", {"script": script, "args": list(args)})

    def find(self, css: str) -> list[str]:
        return [e[W3C_ELEMENT] for e in self._session("POST", "/elements", {"using": "css selector", "value": css})]

    def click(self, element: str) -> None:
        """A real click at the element's centre (fails when something else covers it)."""
        self._session("POST", f"/element/{element}/click", {})

    def screenshot(self, out: Path) -> Path:
        out.write_bytes(base64.b64decode(self._session("GET", "/screenshot")))
        return out

    def close(self) -> None:
        try:
            if getattr(self, "session", None):
                self._request("DELETE", f"/session/{self.session}")
        except Exception:
            pass
        finally:
            if self.driver.poll() is None:
                self.driver.terminate()
                try:
                    self.driver.wait(10)
                except subprocess.TimeoutExpired:
                    self.driver.kill()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
