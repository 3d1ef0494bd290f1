"""A real browser for end-to-end tests: Debian's headless Chromium, driven over the
DevTools protocol, opens a page, waits until its scripts have rendered some text, and hands
back the DOM and every URL the page requested.

The page's own requests are told apart from the browser's background traffic (updates,
sign-in, time; Chromium makes some of it whatever its flags say). All of the latter goes
to a proxy on loopback that refuses it, so nothing leaves the machine either way."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

CHROMIUM = "chromium"  # tests/system-packages.txt installs it
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions")


class _Refuser(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline(4096)
        self.wfile.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n"
                         b"connection: close\r\n\r\n")


@contextlib.contextmanager
def _refusing_proxy() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Refuser)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _DevTools:
    """One page target of a browser, over its DevTools websocket (flat sessions)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.session: str | None = None
        self.requested: list[str] = []
        self.errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        await self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(await self.ws.recv())
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self._event(answer)

    def _event(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.errors.append(str(details.get("exception", {}).get("description")
                                   or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in params.get("args", [])))


async def _render(ws_url: str, url: str, until_text: str, seconds: float, height: int
                  ) -> tuple[str, list[str], list[str]]:
    async with connect(ws_url, max_size=64 * 1024 * 1024) as ws:
        tools = _DevTools(ws)
        target = await tools.call("Target.createTarget", url="about:blank")
        attached = await tools.call("Target.attachToTarget", targetId=target["targetId"],
                                    flatten=True)
        tools.session = attached["sessionId"]
        # A tall window: pages that render only what is in view (Swagger UI's long
        # operation lists) render more of themselves.
        await tools.call("Emulation.setDeviceMetricsOverride", width=1280, height=height,
                         deviceScaleFactor=1, mobile=False)
        await tools.call("Network.enable")
        await tools.call("Runtime.enable")
        await tools.call("Page.navigate", url=url)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = await tools.call(
                "Runtime.evaluate", returnByValue=True,
                expression=f"document.documentElement.outerHTML.includes({json.dumps(until_text)})")
            if found.get("result", {}).get("value") is True:
                break
            await asyncio.sleep(0.25)
        document = await tools.call("Runtime.evaluate", returnByValue=True,
                                    expression="document.documentElement.outerHTML")
        html = str(document.get("result", {}).get("value", ""))
        return html, tools.requested, tools.errors


def _devtools_url(profile: Path, proc: subprocess.Popen[bytes], seconds: float = 120) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def render(url: str, until_text: str, *, seconds: float = 90, height: int = 12000
           ) -> tuple[str, list[str], list[str]]:
    """The DOM of `url` once it contains `until_text` (or after `seconds`), every URL the
    page requested, and the errors its scripts raised or logged."""
    binary = shutil.which(CHROMIUM)
    assert binary, "Debian's chromium is missing: tests/system-packages.txt installs it"
    with _refusing_proxy() as proxy_port, \
            tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        # Its own process group: the browser's helper processes end with it.
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--proxy-server=http://127.0.0.1:{proxy_port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            ws_url = _devtools_url(Path(profile), proc)
            return asyncio.run(_render(ws_url, url, until_text, seconds, height))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
