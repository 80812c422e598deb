"""A small scripted OpenAI-compatible HTTP server on a real loopback socket, for the fault
paths (429, 5xx, timeouts, garbage, dropped connections) and the detection probes.

Each POST to /v1/chat/completions takes the next `Reply` of `script` (a success once the
script runs out); GETs answer from `routes` (path → (status, JSON)), 404 otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from gra_local.backends.endpoint import Tuning
from gra_local.core.backend import ChatRequest

FAST = Tuning(backoff_base_s=0.02, backoff_cap_s=0.1, bench_base_s=0.3, bench_cap_s=1.0,
              min_deadline_s=0.5, assumed_tok_s=1000.0, connect_timeout_s=1.0, probe_timeout_s=2.0)
"""Retries, benches and deadlines in tenths of seconds."""


def request(text: str = "hi", max_tokens: int = 32, grammar: str | None = None) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], temperature=0.2, top_p=0.9,
                       max_tokens=max_tokens, seed=7, grammar=grammar)


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None
    """Raw body; None: a chat completion of `text`."""
    text: str = '{"reasonable": "pass", "complete": "pass", "clear": "pass"}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    """Close the connection without answering (a reset as the client sees it)."""


def completion(text: str, finish_reason: str = "stop", usage: dict | None = None) -> bytes:
    return orjson.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish_reason}],
        "usage": usage if usage is not None else
        {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    })


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    at: float


class FakeServer:
    def __init__(self, models: tuple[str, ...] = ("fake-model",), owned_by: str = "organization",
                 routes: dict[str, tuple[int, object]] | None = None,
                 respond: Callable[[dict], Reply] | None = None) -> None:
        self.script: list[Reply] = []
        """Replies taken in arrival order; once empty, `respond(body)` (or a success)."""
        self.respond = respond
        self.seen: list[Seen] = []
        self.routes = {"/v1/models": (200, {"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": owned_by} for m in models]})}
        self.routes.update(routes or {})
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections: set[socket.socket] = set()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def posts(self) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.method == "POST"]

    def next_reply(self, body: dict) -> Reply:
        with self.lock:
            if self.script:
                return self.script.pop(0)
        return self.respond(body) if self.respond else Reply()

    def close(self) -> None:
        """Stop listening and drop every open connection (kept-alive ones too): a server
        that died, as its clients see it."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            open_now, self.connections = list(self.connections), set()
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with server.lock:
                server.connections.add(self.connection)

        def finish(self) -> None:
            with server.lock:
                server.connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _record(self, body: dict | None) -> None:
            with server.lock:
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body,
                                        time.monotonic()))

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._record(None)
            status, data = server.routes.get(self.path, (404, {"detail": "Not Found"}))
            self._send(status, orjson.dumps(data))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            body = orjson.loads(raw) if raw else {}
            self._record(body)
            reply = server.next_reply(body)
            with server.lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = reply.body if reply.body is not None else completion(reply.text)
                self._send(reply.status, body, reply.headers)
            except OSError:
                pass  # the client gave up (deadline or cancel)
            finally:
                with server.lock:
                    server.in_flight -= 1

    return Handler


def refused_url() -> str:
    """A loopback URL nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"
