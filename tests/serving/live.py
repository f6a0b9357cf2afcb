"""A real serving app on loopback, and the seed state the serving tests share.

:class:`LiveServer` runs ``create_app(config)`` under the runner ``streamsim
serve`` uses (:func:`serving.server.make_runner`), so what aiohttp answers
before the app is tested too. :func:`exchange` speaks raw HTTP, for messages
no client library would send.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time

from aiohttp import web

from serving.app import create_app
from serving.config import ServingConfig
from serving.server import make_runner
from streamsim.runtime.settings import Settings

G1 = 1_700_000_000_000
G2 = G1 + 60_000
NEIGHBOURS = {
    "a": [("b", 0.9), ("c", 0.5), ("d", 0.25)],
    "b": [("a", 0.9), ("c", 0.4), ("e", 0.3)],
    "c": [("a", 0.5), ("b", 0.4)],
}
POPULAR = [("p1", 100.0), ("c", 50.0), ("p2", 10.0)]


class LiveServer:
    """``create_app(config)`` on 127.0.0.1:<free port>, its loop in a thread."""

    def __init__(self, config: ServingConfig):
        self.config = config
        self.app = create_app(config)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the server did not start")

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        self._runner = make_runner(self.app, self.config)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, _, answer = self.request_with_headers(method, path, body, headers)
        return status, answer

    def request_with_headers(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """``(status, headers, JSON or text)``."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
            answer = json.loads(raw) if kind.startswith("application/json") else raw.decode()
            return response.status, dict(response.getheaders()), answer
        finally:
            connection.close()

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, payload, content_type: str = "application/json"):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request("POST", path, body, {"Content-Type": content_type})

    def metrics(self) -> str:
        return self.get("/metrics")[1]

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    async def _shutdown(self):
        await self._runner.cleanup()
        # As asyncio.run does: a connection still draining a refused body
        # (aiohttp lingers up to 10 s) is cancelled and waited for.
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def serve(settings: Settings, **overrides) -> LiveServer:
    return LiveServer(ServingConfig(settings=settings, **{"poll_seconds": 0.2, **overrides}))


def exchange(port: int, message: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one answer: ``(status, headers, body)``.

    Up to its Content-Length, or until the server closes: a server that
    refused a body may keep reading it a while before it does.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(message)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"]) if "content-length" in headers else None
        while (length is None or len(body) < length) and (chunk := sock.recv(65536)):
            body += chunk
    return int(status_line.split()[1]), headers, body


def wait_for(condition, timeout: float = 30.0):
    """Poll ``condition`` until it returns a truthy value (a hang guard, not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def items(answer) -> list[str]:
    return [entry["item"] for entry in answer["items"]]
