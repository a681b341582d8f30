"""A fake WhatsApp Cloud API (Meta's Graph API) on loopback: POST /{version}/{phone-number-id}/messages, the one
endpoint the bot calls (text, interactive buttons, read receipt + typing indicator). It checks the bearer token
and the payload's required fields as the real API does, records every call, can be told to fail the next sends
(429, or error 131056, the pair rate limit), and builds signed webhook deliveries as Meta sends them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.rest import FakeService, Reply, Request, wait_until

TOKEN = "EAAG-test-permanent-token"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"


@dataclass
class Call:
    phone_number_id: str
    payload: dict[str, Any]
    at: float

    @property
    def kind(self) -> str:
        """text, interactive, or status (a read receipt, with a typing indicator when it has one)."""
        return "status" if "status" in self.payload else str(self.payload.get("type"))

    @property
    def text(self) -> str:
        if self.kind == "text":
            return str(self.payload["text"]["body"])
        if self.kind == "interactive":
            return str(self.payload["interactive"]["body"]["text"])
        return ""


@dataclass
class Failure:
    status: int
    code: int
    message: str


PAIR_RATE_LIMIT = Failure(400, 131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit")
TOO_MANY = Failure(429, 130429, "(#130429) Rate limit hit")
OUTSIDE_WINDOW = Failure(400, 131047, "(#131047) Re-engagement message")


@dataclass
class FakeWhatsApp(FakeService):
    calls: list[Call] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    # --- scripting ---------------------------------------------------------------------------------------

    def fail(self, failure: Failure, times: int = 1) -> None:
        """Fail the next `times` message sends (not read receipts) with `failure`."""
        with self._lock:
            self.failures.extend([failure] * times)

    def to(self, user: str) -> list[Call]:
        return [c for c in list(self.calls) if c.payload.get("to") == user]

    def of(self, message_id: str) -> list[Call]:
        """The read receipts for one user message."""
        return [c for c in list(self.calls) if c.payload.get("message_id") == message_id]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        wait_until(predicate, timeout, lambda: [(c.kind, c.text[:60]) for c in self.calls])

    # --- the Graph API -------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        return Reply.json(*self._answer(request.path, request.headers.get("authorization", ""), request.body))

    def _answer(self, path: str, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != VERSION or parts[2] != "messages":
            return 400, _error(100, f"Unsupported post request: {path}")
        if authorization != f"Bearer {TOKEN}":
            return 401, _error(190, "Invalid OAuth access token - Cannot parse access token")
        payload = json.loads(body)
        if payload.get("messaging_product") != "whatsapp":
            return 400, _error(100, "(#100) The parameter messaging_product is required.")
        call = Call(parts[1], payload, time.monotonic())
        with self._lock:
            self.calls.append(call)
            failure = self.failures.pop(0) if self.failures and call.kind != "status" else None
        if failure is not None:
            return failure.status, _error(failure.code, failure.message)
        if call.kind == "status":
            return 200, {"success": True}
        if call.kind == "text" and len(call.text) > 4096:
            return 400, _error(100, "(#100) Param text['body'] must be at most 4096 characters long.")
        if call.kind == "interactive":
            buttons = payload["interactive"]["action"]["buttons"]
            if len(call.text) > 1024 or not 1 <= len(buttons) <= 3:
                return 400, _error(131009, "(#131009) Parameter value is not valid")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
            "messages": [{"id": f"wamid.OUT{next(self._ids)}"}],
        }


def _error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Afake"}}


# --- webhook deliveries, as Meta sends them ----------------------------------------------------------------

_message_ids = itertools.count(1)


def delivery(*messages: dict[str, Any], phone_number_id: str = PHONE_NUMBER_ID, **value: Any) -> dict[str, Any]:
    """One webhook delivery (field `messages`) carrying `messages` and any other `value` keys (statuses)."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": phone_number_id},
        **value,
    }
    if messages:
        body["contacts"] = [{"profile": {"name": "Ada"}, "wa_id": messages[0]["from"]}]
        body["messages"] = list(messages)
    change = {"value": body, "field": "messages"}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}


def message(user: str, type_: str, content: dict[str, Any], *, age: float = 0.0) -> dict[str, Any]:
    return {
        "from": user,
        "id": f"wamid.IN{next(_message_ids)}",
        "timestamp": str(int(time.time() - age)),
        "type": type_,
        type_: content,
    }


def text(user: str, body: str, *, age: float = 0.0) -> dict[str, Any]:
    return message(user, "text", {"body": body}, age=age)


def button_reply(user: str, button_id: str, title: str = "👍") -> dict[str, Any]:
    reply = message(user, "interactive", {"type": "button_reply", "button_reply": {"id": button_id, "title": title}})
    reply["context"] = {"from": DISPLAY_NUMBER, "id": "wamid.OUT1"}
    return reply


def status(user: str, state: str = "delivered") -> dict[str, Any]:
    return {"id": "wamid.OUT1", "status": state, "timestamp": str(int(time.time())), "recipient_id": user}


def echo(user: str, body: str) -> dict[str, Any]:
    """What Meta sends for a message the business sent from the WhatsApp Business app (coexistence)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
        "message_echoes": [
            {"from": DISPLAY_NUMBER, "to": user, "id": "wamid.ECHO1", "type": "text", "text": {"body": body}}
        ],
    }
    change = {"value": value, "field": "smb_message_echoes"}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}


def signed(payload: dict[str, Any] | bytes, secret: str = APP_SECRET) -> tuple[bytes, dict[str, str]]:
    """The raw body and Meta's signature header for it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
