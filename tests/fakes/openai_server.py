"""A loopback stand-in for an OpenAI-compatible API, speaking the real HTTP protocol.

Embeddings are deterministic hashed bags of words, so keyword overlap means vector similarity. Chat
completions follow a script: `enqueue(Reply(...))` for each expected call (stream chunks, stall, fail,
send garbage); with nothing queued the `responder` (a function of the request body) replies, or else the reply is
"I don't know.". Every request is recorded.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DIM = 64


def hashed_embedding(text: str) -> list[float]:
    vector = [0.0] * DIM
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


@dataclass
class Reply:
    chunks: list[str] = field(default_factory=lambda: ["I don't know."])
    status: int = 200  # non-200: an OpenAI-shaped error body
    stall_before: float = 0.0  # seconds of silence before the first chunk
    stall_after: int | None = None  # go silent (for `stall_seconds`) after this many chunks
    stall_seconds: float = 30.0
    interval: float = 0.0  # seconds between chunks: a slow, steady stream
    malformed: bool = False  # a data line that is not JSON
    finish_reason: str = "stop"  # "length": as if the reply hit max_tokens
    usage: dict[str, int] | None = None  # reported after the last chunk, as servers asked for usage do


@dataclass
class FakeOpenAI:
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None
    script: deque[Reply] = field(default_factory=deque)
    # Loopback, except for containers (tests/docker/): they reach the host on its Docker bridge address.
    host: str = "127.0.0.1"
    # Replies computed from the request (many calls whose order a test does not know), when nothing is queued.
    responder: Callable[[dict[str, Any]], Reply] | None = None

    def enqueue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [body for path, _, body in self.requests if path == "/v1/chat/completions"]

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, {}))
                if self.path != "/v1/models":
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                model = {"id": "fake-chat", "object": "model", "created": 0, "owned_by": "switchboard-tests"}
                self._send(200, {"object": "list", "data": [model]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path == "/v1/chat/completions":
                    return self._chat(body, fake.script.popleft() if fake.script else fake.respond(body))
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                data = []
                for i, text in enumerate(inputs):
                    vector = hashed_embedding(text)
                    encoded: Any = vector
                    if body.get("encoding_format") == "base64":
                        encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                    data.append({"object": "embedding", "index": i, "embedding": encoded})
                tokens = sum(len(t.split()) for t in inputs)
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    },
                )

            def _chat(self, body: dict[str, Any], reply: Reply) -> None:
                if reply.status != 200:
                    return self._send(reply.status, {"error": {"message": "scripted failure", "type": "server_error"}})
                if not body.get("stream"):
                    message = {"role": "assistant", "content": "".join(reply.chunks)}
                    return self._send(
                        200,
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                            **({"usage": reply.usage} if reply.usage else {}),
                        },
                    )
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                time.sleep(reply.stall_before)
                try:
                    for i, piece in enumerate(reply.chunks):
                        if reply.stall_after is not None and i == reply.stall_after:
                            time.sleep(reply.stall_seconds)
                        elif i:
                            time.sleep(reply.interval)
                        if reply.malformed:
                            self._event("{not json")
                        self._event(json.dumps(_chunk(body["model"], {"content": piece}, None)))
                    self._event(json.dumps(_chunk(body["model"], {}, reply.finish_reason)))
                    if reply.usage:
                        usage = {**_chunk(body["model"], {}, None), "choices": [], "usage": reply.usage}
                        self._event(json.dumps(usage))
                    self._event("[DONE]")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout under test)

            def _event(self, data: str) -> None:
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def respond(self, body: dict[str, Any]) -> Reply:
        return self.responder(body) if self.responder is not None else Reply()

    def stop(self) -> None:
        self.script.clear()
        if self.server is not None:
            self.server.shutdown()


def _chunk(model: str, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
