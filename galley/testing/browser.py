"""Driving Debian's headless Chromium over the DevTools protocol, for the test-page check.

No browser is downloaded: this uses the machine's ``chromium`` and a fresh profile, with the
flags that keep it from reaching for the network on its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*"]


class Browser:
    """One headless Chromium with one page, controlled through CDP commands."""

    def __init__(self, executable: str | None = None):
        found = executable or shutil.which("chromium") or shutil.which("chromium-browser")
        if not found:
            raise RuntimeError("Chromium is not installed; run scripts/install (Debian package 'chromium')")
        self.profile = tempfile.TemporaryDirectory(prefix="galley-chromium-", ignore_cleanup_errors=True)
        # Its own process group, so closing it also ends the renderer and zygote processes.
        self.process = subprocess.Popen([found, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read())
        page = next(t for t in targets if t["type"] == "page")
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self._ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one CDP command and return its result (events in between are ignored)."""
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {expression}")

    def open(self, url: str) -> None:
        self.send("Page.enable")
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def set_file(self, selector: str, path: Path) -> None:
        """Choose ``path`` in a file input, as a user picking a photo does."""
        document = self.send("DOM.getDocument")
        node = self.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector=selector)
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node["nodeId"])

    def set_file_at(self, expression: str, path: Path) -> None:
        """Choose ``path`` in the file input a JavaScript expression finds (one inside a same-origin
        iframe, for example)."""
        found = self.send("Runtime.evaluate", expression=expression, returnByValue=False)
        object_id = found.get("result", {}).get("objectId")
        if object_id is None:
            raise RuntimeError(f"{expression} found no element")
        self.send("DOM.setFileInputFiles", files=[str(path)], objectId=object_id)

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.profile.cleanup()
