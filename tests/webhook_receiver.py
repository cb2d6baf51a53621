"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 (a free port) in a thread, with a script
of replies per path, a log of every request, and dedup by `webhook-id` as a careful receiver would do."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    #: Hang this long before answering (released early by `Receiver.close`).
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


class Receiver:
    """Per path, replies are taken from its script in order; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    script = receiver.scripts.get(self.path) or [Reply()]
                    reply = script.pop(0) if len(script) > 1 else script[0]
                    received = Received(
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.monotonic(),
                        reply.status,
                    )
                    receiver.requests.append(received)
                if reply.delay_s:
                    receiver.release.wait(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client gave up (timeout): nothing to answer
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def processed(self, path: str) -> dict[str, Received]:
        """What a receiver that dedupes by `webhook-id` acted on: the first 2xx request per id."""
        out: dict[str, Received] = {}
        for r in self.at(path):
            if 200 <= r.status < 300:
                out.setdefault(r.headers["webhook-id"], r)
        return out

    def wait_for(self, path: str, count: int, timeout_s: float) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.at(path)
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.at(path))} request(s) after {timeout_s} s, wanted {count}")

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
