"""A loopback stand-in for a reranker speaking the common `/rerank` API (Cohere, Jina, Infinity, vLLM).

POST /v1/rerank {model, query, documents, top_n} → {results: [{index, relevance_score}]}, best first. The score
is the share of the query's words a document contains, so tests know the order; a document containing the
`favourite` word always wins, whatever the hybrid order was. `mode` scripts a failure for every call that
follows: "error" (HTTP 500), "slow" (answers after `delay` seconds), "garbage" (not JSON), "bad-index".
Every request is recorded.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.rest import serve, shut


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass
class FakeReranker:
    favourite: str = "rerank-me"
    mode: str = "ok"
    delay: float = 0.0
    requests: list[tuple[str, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def score(self, query: str, document: str) -> float:
        if self.favourite in document:
            return 1.0
        asked = _words(query)
        return 0.9 * len(asked & _words(document)) / (len(asked) or 1)

    def start(self) -> FakeReranker:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                fake.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path != "/v1/rerank":
                    return self._send(404, b'{"detail": "not found"}')
                if fake.mode == "error":
                    return self._send(500, b'{"detail": "model crashed"}')
                if fake.mode == "garbage":
                    return self._send(200, b"<html>gateway</html>")
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                scored = [(i, fake.score(body["query"], d)) for i, d in enumerate(body["documents"])]
                scored.sort(key=lambda pair: -pair[1])
                if fake.mode == "bad-index":
                    scored[0] = (len(scored), scored[0][1])
                results = [{"index": i, "relevance_score": s} for i, s in scored[: body.get("top_n") or len(scored)]]
                self._send(200, json.dumps({"model": body.get("model"), "results": results}).encode())

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    self.wfile.write(payload)

        self.server = serve(Handler)
        return self

    def stop(self) -> None:
        if self.server is not None:
            shut(self.server)
