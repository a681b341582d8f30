"""A fake Slack on loopback, speaking the real protocols: the Web API (`/api/<method>`), response_url hooks
(`/hooks/<name>`) and a Socket Mode websocket (`/link`, handed out by `apps.connections.open`).

Every call and every envelope ack is recorded; a method can be told to answer 429 with Retry-After. Tests
run it in its own thread and event loop (tests.fakes.rest.AioService).

The streaming methods (chat.startStream/appendStream/stopStream) keep each streamed message's state and check
their arguments as Slack documents them: the recipient team and user are required, Markdown is limited to
12,000 characters per call, a stream takes appends until it is stopped, section blocks hold 3,000 characters.
`refuse_streams` makes every chat.startStream answer an error, as for an app that may not stream.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.rest import AioService, wait_until

TEAM = "T0TEAM"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
MARKDOWN_LIMIT = 12_000  # characters of markdown_text in one streaming call
SECTION_LIMIT = 3000


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str
    status: int
    result: dict[str, Any]


@dataclass
class Stream:
    channel: str
    thread_ts: str
    text: str
    stopped: bool = False


@dataclass
class FakeSlack(AioService):
    calls: list[Call] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: dict[str, int] = field(default_factory=dict)  # method → how many 429s are still to come
    errors: dict[str, str] = field(default_factory=dict)  # method → the error its next call returns
    refuse_streams: str | None = None  # the error every chat.startStream returns while set
    streams: dict[str, Stream] = field(default_factory=dict)  # ts → a streamed message
    # Loopback, except for containers (tests/docker/): they reach the host on its Docker bridge address.
    host: str = "127.0.0.1"
    _sockets: set[web.WebSocketResponse] = field(default_factory=set)
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # --- scripting and inspection ------------------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1) -> None:
        self.rate_limited[method] = times

    def fail(self, method: str, error: str) -> None:
        """The next call of `method` answers {"ok": false, "error": error}, as Slack does (HTTP 200)."""
        self.errors[method] = error

    @property
    def connected(self) -> int:
        return len(self._sockets)

    def send(self, envelope: dict[str, Any]) -> None:
        """Push a Socket Mode envelope to every connected client."""
        self.run(self._broadcast(envelope))

    def of(self, method: str, **match: Any) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if c.method == method and all(c.params.get(k) == v for k, v in match.items())]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_until(predicate, timeout, lambda: [(c.method, c.params) for c in self.calls])

    # --- the server ---------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/hooks/{name}", self._hook)
        app.router.add_get("/link", self._socket)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _params(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or str(params.pop("token", ""))
        expected = "xapp-" if method == "apps.connections.open" else "xoxb-"
        status, headers = 200, {}
        if self.rate_limited.get(method):
            self.rate_limited[method] -= 1
            status, headers = 429, {"Retry-After": "0"}
            result: dict[str, Any] = {"ok": False, "error": "ratelimited"}
        elif not token.startswith(expected):
            result = {"ok": False, "error": "invalid_auth"}
        elif method in self.errors:
            result = {"ok": False, "error": self.errors.pop(method)}
        else:
            result = self._result(method, params)
            result = {"ok": "error" not in result, **result}
        with self._lock:
            self.calls.append(Call(method, params, token, status, result))
        return web.json_response(result, status=status, headers=headers)

    def _result(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"team": "Fake", "user": "switchboard", "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method == "apps.connections.open":
            return {"url": f"ws://{self.host}:{self._port}/link"}
        if method in ("chat.postMessage", "chat.update"):
            ts = params.get("ts") or f"{1_700_000_000 + next(self._ts)}.000100"
            return {"channel": params.get("channel"), "ts": ts, "message": {"text": params.get("text")}}
        if method == "chat.postEphemeral":
            return {"message_ts": f"{1_700_000_000 + next(self._ts)}.000200"}
        if method.endswith("Stream"):
            return self._stream(method, params)
        return {}

    def _stream(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        markdown = str(params.get("markdown_text") or "")
        if len(markdown) > MARKDOWN_LIMIT:
            return {"error": "invalid_arguments"}
        if method == "chat.startStream":
            if self.refuse_streams:
                return {"error": self.refuse_streams}
            if not params.get("channel") or not params.get("thread_ts"):
                return {"error": "invalid_arguments"}
            for key in ("recipient_team_id", "recipient_user_id"):
                if not params.get(key):
                    return {"error": f"missing_{key}"}
            ts = f"{1_700_000_000 + next(self._ts)}.000300"
            self.streams[ts] = Stream(channel=params["channel"], thread_ts=params["thread_ts"], text=markdown)
            return {"channel": params["channel"], "ts": ts}
        stream = self.streams.get(str(params.get("ts")))
        if stream is None or stream.channel != params.get("channel"):
            return {"error": "message_not_found"}
        if stream.stopped:
            return {"error": "message_not_in_streaming_state"}
        if method == "chat.appendStream" and not markdown:
            return {"error": "no_text"}
        blocks = params.get("blocks") or []
        if method == "chat.stopStream" and not _valid_blocks(blocks):
            return {"error": "invalid_blocks"}
        stream.text += markdown
        stream.stopped = method == "chat.stopStream"
        message = {"text": stream.text, "ts": params["ts"], "blocks": blocks}
        return {"channel": stream.channel, "ts": params["ts"]} | ({"message": message} if stream.stopped else {})

    async def _hook(self, request: web.Request) -> web.Response:
        with self._lock:
            self.calls.append(Call(f"hook:{request.match_info['name']}", await _params(request), "", 200, {}))
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0APP"}}
        await ws.send_json(hello | {"debug_info": {"host": "fake", "approximate_connection_time": 3600}})
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    with self._lock:
                        self.acks.append(json.loads(message.data))
        finally:
            self._sockets.discard(ws)
        return ws

    async def _broadcast(self, envelope: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            await ws.send_json(envelope)


def _valid_blocks(blocks: Any) -> bool:
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and b.get("type") for b in blocks):
        return False
    return all(len(b["text"]["text"]) <= SECTION_LIMIT for b in blocks if b["type"] == "section")


async def _params(request: web.Request) -> dict[str, Any]:
    """The Web API takes JSON or form bodies (and query parameters); structured form values are JSON text."""
    params: dict[str, Any] = dict(request.query)
    body = await request.read()
    if request.content_type == "application/json":
        params.update(json.loads(body or b"{}"))
    else:
        for key, value in parse_qsl(body.decode()):
            params[key] = json.loads(value) if value[:1] in "[{" else value
    return params
