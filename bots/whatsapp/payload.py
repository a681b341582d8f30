"""What the WhatsApp Cloud API delivers to the webhook, read into neutral `Inbound` messages: its signature
checked on the raw body first, then the JSON validated (an authenticated body of another shape is a 400).
Only the `messages` field's messages are kept: statuses (sent, delivered, read), echoes of what the business
sent from another app, and every other field are dropped here."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bots.webhooks import same_secret

SIGNATURE_HEADER = "x-hub-signature-256"


def unsigned(app_secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a request is not Meta's, or None when X-Hub-Signature-256 (HMAC-SHA256 of the raw body with the
    app secret) holds. Nothing is parsed before that."""
    given = headers.get(SIGNATURE_HEADER)
    if not given:
        return "missing X-Hub-Signature-256"
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return None if same_secret(given, expected) else "wrong X-Hub-Signature-256"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Text(_Model):
    body: str


class _ButtonReply(_Model):
    id: str
    title: str = ""


class _Interactive(_Model):
    type: str
    button_reply: _ButtonReply | None = None


class _Audio(_Model):
    id: str  # the media id: GET /{media-id} gives its download URL
    mime_type: str = ""
    voice: bool = False  # recorded in WhatsApp (a voice note), not a forwarded audio file


class _Message(_Model):
    id: str
    sender: str = Field(alias="from")
    timestamp: int
    type: str
    text: _Text | None = None
    interactive: _Interactive | None = None
    audio: _Audio | None = None


class _Metadata(_Model):
    phone_number_id: str


class _Messages(_Model):
    metadata: _Metadata
    messages: list[_Message] = []  # absent in a statuses-only delivery


class _Change(_Model):
    field: str
    value: dict[str, object]  # read as _Messages only for field "messages": other fields have other shapes


class _Entry(_Model):
    changes: list[_Change] = []


class _Notification(_Model):
    object: Literal["whatsapp_business_account"]
    entry: list[_Entry]


Kind = Literal["text", "button", "audio", "unsupported"]


@dataclass(frozen=True, kw_only=True)
class Inbound:
    """One user message: `text` is what was written, or a reply button's id; `media_id` and `mime_type` an
    audio message's recording."""

    phone_number_id: str  # the business number it was sent to (and the reply is sent from)
    sender: str  # the user's WhatsApp id
    message_id: str
    sent_at: int  # Unix seconds
    kind: Kind
    type: str  # the Cloud API's message type (text, interactive, audio, image, …)
    text: str = ""
    media_id: str = ""
    mime_type: str = ""


# Media ids are numbers: anything else (an absolute URL, a path) would be requested with the bearer token as is.
_MEDIA_ID = re.compile(r"[0-9]+")


def _inbound(phone_number_id: str, message: _Message) -> Inbound:
    kind: Kind = "unsupported"
    text = media_id = mime_type = ""
    if message.type == "text" and message.text is not None:
        kind, text = "text", message.text.body
    elif message.type == "interactive" and message.interactive and message.interactive.button_reply:
        kind, text = "button", message.interactive.button_reply.id
    elif message.type == "audio" and message.audio is not None and _MEDIA_ID.fullmatch(message.audio.id):
        kind, media_id, mime_type = "audio", message.audio.id, message.audio.mime_type
    return Inbound(
        phone_number_id=phone_number_id,
        sender=message.sender,
        message_id=message.id,
        sent_at=message.timestamp,
        kind=kind,
        type=message.type,
        text=text,
        media_id=media_id,
        mime_type=mime_type,
    )


def parse(body: bytes) -> list[Inbound]:
    """The user messages in one delivery; raises ValueError (pydantic's ValidationError is one) for a body that
    is not a Cloud API notification."""
    notification = _Notification.model_validate(json.loads(body))
    inbound: list[Inbound] = []
    for entry in notification.entry:
        for change in entry.changes:
            if change.field != "messages":
                continue
            value = _Messages.model_validate(change.value)
            inbound.extend(_inbound(value.metadata.phone_number_id, m) for m in value.messages)
    return inbound
