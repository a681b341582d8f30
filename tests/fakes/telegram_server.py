"""A fake Telegram Bot API on loopback: `/bot<token>/<method>`, enough for python-telegram-bot's real polling
loop and the calls the bot makes. It records every call, queues updates for getUpdates (honouring offset and
timeout), builds realistic update JSON, and can be told to fail a method (429 with retry_after, 403, 502)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.rest import FakeService, Reply, Request, wait_until

BOT = {"id": 999, "is_bot": True, "first_name": "Kestrel", "username": "kestrel_bot"}
TOKEN = "999:TEST-token"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None = None


@dataclass
class FakeTelegram(FakeService):
    calls: list[Call] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))  # type: ignore[type-arg]

    def stop(self) -> None:
        with self._cond:  # wakes the long polls, so the server can shut down
            self._cond.notify_all()
        super().stop()

    @property
    def base_url(self) -> str:
        return f"{super().base_url}/bot"

    # --- scripting ---------------------------------------------------------------------------------------

    def fail(self, method: str, failure: Failure, times: int = 1) -> None:
        with self._cond:
            self.failures.setdefault(method, []).extend([failure] * times)

    def push(self, update: dict[str, Any]) -> int:
        with self._cond:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self._cond.notify_all()
        return int(update["update_id"])

    def message(
        self,
        text: str,
        *,
        chat_id: int = 42,
        chat_type: str = "private",
        user_id: int = 7,
        topic: int | None = None,
        reply_to_bot: bool = False,
        from_bot: bool = False,
    ) -> dict[str, Any]:
        """A message update as Telegram sends it, with entities for /commands and @mentions."""
        entities = []
        if text.startswith("/"):
            entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
        at = text.find("@kestrel_bot")
        if at >= 0:
            entities.append({"type": "mention", "offset": at, "length": len("@kestrel_bot")})
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type != "private":
            chat["title"] = "Team chat"
        if topic is not None:
            chat["is_forum"] = True
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": from_bot, "first_name": "Ada"},
            "text": text,
            "entities": entities,
        }
        if topic is not None:
            message.update(message_thread_id=topic, is_topic_message=True)
        if reply_to_bot:
            message["reply_to_message"] = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": chat,
                "from": BOT,
                "text": "an earlier answer",
            }
        return {"message": message}

    def callback(self, data: str, *, chat_id: int = 42) -> dict[str, Any]:
        return {
            "callback_query": {
                "id": str(next(self._ids)),
                "from": {"id": 7, "is_bot": False, "first_name": "Ada"},
                "chat_instance": "ci",
                "data": data,
                "message": {
                    "message_id": next(self._ids),
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private"},
                    "from": BOT,
                    "text": "an answer",
                },
            }
        }

    def of(self, method: str, **match: Any) -> list[Call]:
        return [
            c for c in list(self.calls) if c.method == method and all(c.params.get(k) == v for k, v in match.items())
        ]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        wait_until(predicate, timeout, lambda: [(c.method, str(c.params.get("text", ""))[:60]) for c in self.calls])

    # --- the Bot API ---------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        method = request.path.rsplit("/", 1)[-1]
        return Reply.json(*self._answer(method, _params(request.headers.get("content-type", ""), request.body)))

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            queued = self.failures.get(method)
            failure = queued.pop(0) if queued else None
        if method != "getUpdates":
            self.calls.append(Call(method, params, time.monotonic()))
        if failure is not None:
            body: dict[str, Any] = {"ok": False, "error_code": failure.status, "description": failure.description}
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return failure.status, body
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(params)}
        if method == "getMe":
            return 200, {"ok": True, "result": {**BOT, "can_join_groups": True, "supports_inline_queries": False}}
        if method in ("sendMessage", "editMessageText"):
            return 200, {"ok": True, "result": self._sent(method, params)}
        return 200, {"ok": True, "result": True}

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._cond:
            while True:
                pending = [u for u in self.updates if u["update_id"] >= offset]
                if pending or time.monotonic() >= deadline:
                    return pending
                self._cond.wait(deadline - time.monotonic())

    def _sent(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        message_id = int(params["message_id"]) if method == "editMessageText" else next(self._ids)
        chat_id = int(params["chat_id"])
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": BOT,
            "text": params.get("text", ""),
        }


def _params(content_type: str, body: bytes) -> dict[str, Any]:
    """PTB posts JSON-encoded values (objects, lists, numbers) inside a form, strings as they are."""
    if not body:
        return {}
    if content_type.startswith("application/json"):
        return dict(json.loads(body))
    params: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        try:
            params[key] = json.loads(value) if key != "text" else value
        except ValueError:
            params[key] = value
    return params
