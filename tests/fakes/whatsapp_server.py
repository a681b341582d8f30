"""A fake WhatsApp Cloud API (Meta's Graph API) on loopback: POST /{version}/{phone-number-id}/messages (text,
interactive buttons, audio, template, read receipt + typing indicator), and for voice notes GET /{version}/{media-id}
(a download URL, here on the fake), the download itself, and POST /{version}/{phone-number-id}/media (multipart
upload). It checks the bearer token and the payload's required fields as the real API does, records every call,
can be told to fail the next sends (429, or error 131056, the pair rate limit), refuses anything but a template
to a user outside the 24-hour window (131047), and builds signed webhook deliveries as Meta sends them."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_audio_server import parse_multipart
from tests.fakes.rest import FakeService, Reply, Request, wait_until

TOKEN = "EAAG-test-permanent-token"
APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_NUMBER = "15550783881"
TEMPLATES = {("write_again", "en_US")}  # the approved templates: (name, language code)


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
        if self.kind == "template":
            return str(self.payload["template"]["name"])
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
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # media id → (bytes, MIME type)
    uploads: list[bytes] = field(default_factory=list)  # recordings the bot uploaded
    outside_window: set[str] = field(default_factory=set)  # users whose 24-hour window has closed
    media_urls: dict[str, str] = field(default_factory=dict)  # media id → the download URL its lookup gives instead
    unsized: dict[str, int] = field(default_factory=dict)  # media id → size of a recording its lookup says no size of
    streamed: int = 0  # bytes of unsized recordings written so far
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]

    # --- scripting ---------------------------------------------------------------------------------------

    def fail(self, failure: Failure, times: int = 1) -> None:
        """Fail the next `times` message sends (not read receipts) with `failure`."""
        with self._lock:
            self.failures.extend([failure] * times)

    def add_media(self, audio: bytes, mime_type: str = "audio/ogg; codecs=opus") -> str:
        """A recording a user sent: its media id, as an `audio` message carries it."""
        media_id = f"{next(self._ids)}0000000000"
        with self._lock:
            self.media[media_id] = (audio, mime_type)
        return media_id

    def add_unsized_media(self, size: int) -> str:
        """A recording whose GET /{media-id} gives no file_size, downloaded as `size` bytes written 64 KB at a
        time (paced, counted in `streamed`): a client that stops early is seen to."""
        media_id = self.add_media(b"")
        self.unsized[media_id] = size
        return media_id

    def _stream(self, size: int) -> Iterator[bytes]:
        for _ in range(0, size, 1 << 16):
            time.sleep(0.005)
            self.streamed += 1 << 16
            yield bytes(1 << 16)

    def to(self, user: str) -> list[Call]:
        return [c for c in list(self.calls) if c.payload.get("to") == user]

    def of(self, message_id: str) -> list[Call]:
        """The read receipts for one user message."""
        return [c for c in list(self.calls) if c.payload.get("message_id") == message_id]

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        wait_until(predicate, timeout, lambda: [(c.kind, c.text[:60]) for c in self.calls])

    # --- the Graph API -------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        if request.headers.get("authorization", "") != f"Bearer {TOKEN}":
            return Reply.json(401, _error(190, "Invalid OAuth access token - Cannot parse access token"))
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts[0] == "download" and len(parts) == 2 and parts[1] in self.media:
            audio, mime_type = self.media[parts[1]]
            size = self.unsized.get(parts[1])
            stream = (size, self._stream(size)) if size is not None else None
            return Reply(200, audio, mime_type.split(";")[0], stream=stream)
        if request.method == "GET" and len(parts) == 2 and parts[0] == VERSION:
            return Reply.json(*self._media_info(parts[1]))
        if len(parts) == 3 and parts[0] == VERSION and parts[2] == "media":
            return Reply.json(*self._upload(request))
        return Reply.json(*self._answer(request.path, request.body))

    def _media_info(self, media_id: str) -> tuple[int, dict[str, Any]]:
        if media_id not in self.media:
            return 400, _error(100, f"Unsupported get request. Object with ID '{media_id}' does not exist")
        audio, mime_type = self.media[media_id]
        info = {
            "messaging_product": "whatsapp",
            "url": self.media_urls.get(media_id, f"{self.base_url}/download/{media_id}"),
            "mime_type": mime_type,
            "sha256": hashlib.sha256(audio).hexdigest(),
            "file_size": len(audio),
            "id": media_id,
        }
        if media_id in self.unsized:
            del info["file_size"]
        return 200, info

    def _upload(self, request: Request) -> tuple[int, dict[str, Any]]:
        """POST /{phone-number-id}/media: messaging_product, type and the file are required; a voice message
        must be OGG with the Opus codec."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return 400, _error(100, "(#100) The parameter file is required.")
        upload = parse_multipart(request)
        if upload.fields.get("messaging_product") != "whatsapp" or not upload.fields.get("type"):
            return 400, _error(100, "(#100) The parameter messaging_product is required.")
        if upload.fields["type"] == "audio/ogg" and not (
            upload.audio.startswith(b"OggS") and b"OpusHead" in upload.audio[:200]
        ):
            return 400, _error(131053, "(#131053) Media upload error: audio/ogg must be Opus")
        media_id = self.add_media(upload.audio, upload.fields["type"])
        with self._lock:
            self.uploads.append(upload.audio)
        return 200, {"id": media_id}

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != VERSION or parts[2] != "messages":
            return 400, _error(100, f"Unsupported post request: {path}")
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
        if call.kind != "template" and payload.get("to") in self.outside_window:
            return OUTSIDE_WINDOW.status, _error(OUTSIDE_WINDOW.code, OUTSIDE_WINDOW.message)
        if call.kind == "template":
            template = payload.get("template") or {}
            if (template.get("name"), (template.get("language") or {}).get("code")) not in TEMPLATES:
                return 404, _error(132001, "(#132001) Template name does not exist in the translation")
        if call.kind == "audio" and (payload.get("audio") or {}).get("id") not in self.media:
            return 400, _error(131053, "(#131053) Media upload error: unknown media id")
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


def audio(user: str, media_id: str, *, age: float = 0.0) -> dict[str, Any]:
    """A voice note recorded in WhatsApp: the webhook gives its media id, not its bytes."""
    return message(
        user, "audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "x", "id": media_id, "voice": True}, age=age
    )


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
