"""POST /slack/events, the HTTP Events API (SLACK_MODE=http): a framework-free handler the web server mounts,
which checks Slack's signature before anything reads the body and hands the request to the bolt app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Required

from annotated_types import MinLen
from pydantic import TypeAdapter
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from bots.settings import SlackSettings
from bots.slack.app import EVENTS_PATH, required, slack_app
from bots.webhooks import UNREADABLE, WebhookHandler, WebhookReply, refuse, same_secret, unreadable
from core.answer.assistant import Assistant
from core.shared_state import SharedState

MAX_REQUEST_AGE = 5 * 60  # seconds: Slack's advice, so a captured request cannot be replayed later


_Object = dict[str, Any]
_Ref = _Object | str | None  # a team, user, channel or enterprise: the object, or its id


class _Event(TypedDict, total=False):
    type: Required[str]
    user: _Ref
    channel: _Ref
    team: _Ref
    message: _Object
    previous_message: _Object
    item: _Object


class _Action(TypedDict, total=False):
    action_id: Required[str]
    block_id: str


class _Payload(TypedDict, total=False):
    """What bolt's context extractors and listener matchers read of a payload without checking its type:
    signed but otherwise malformed bodies are refused instead of crashing bolt (a 500 and a traceback)."""

    event: _Event
    authorizations: list[_Object]
    actions: Annotated[list[_Action], MinLen(1)]
    team: _Ref
    user: _Ref
    channel: _Ref
    enterprise: _Ref
    container: _Object
    message: _Object
    view: _Object


_PAYLOAD = TypeAdapter(_Payload)


def _unsigned(verifier: SignatureVerifier, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why a request is not from Slack, or None when its signature holds. Only the raw bytes and headers are
    read: nothing is parsed before the request is known to be Slack's. (slack_sdk's own is_valid raises on a
    non-numeric timestamp or a non-ASCII signature instead of saying no.)"""
    timestamp = headers.get("x-slack-request-timestamp", "")
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "missing or malformed X-Slack-Request-Timestamp"
    if age > MAX_REQUEST_AGE:
        return "X-Slack-Request-Timestamp is too old (a replayed request?)"
    try:
        expected = verifier.generate_signature(timestamp=timestamp, body=body.decode())
    except UnicodeDecodeError:
        return "the body is not UTF-8, so it cannot be Slack's"
    if expected is None or not same_secret(headers.get("x-slack-signature"), expected):
        return "missing or wrong X-Slack-Signature"
    return None


class SlackWebhook:
    """POST /slack/events on the web server: events, interactivity (the feedback buttons) and /ask. The
    signature is checked before anything reads the body (401), a signed body bolt cannot read gets a 400;
    bolt answers Slack at once (the ack) and its listeners work afterwards, in tasks of their own."""

    path = EVENTS_PATH
    # A button click carries the whole answer message twice (text and blocks), URL-encoded: ~30 KB in a
    # non-Latin script.
    max_body_bytes: int | None = 64 * 1024

    def __init__(self, slack: SlackSettings):
        required(slack.bot_token, "SLACK_BOT_TOKEN", "xoxb-")
        self.slack = slack
        self.verifier = SignatureVerifier(required(slack.signing_secret, "SLACK_SIGNING_SECRET"))

    @asynccontextmanager
    async def open(self, assistant: Assistant, state: SharedState) -> AsyncIterator[WebhookHandler]:
        yield partial(self.handle, slack_app(self.slack, assistant, state))

    async def handle(self, app: AsyncApp, body: bytes, headers: Mapping[str, str]) -> WebhookReply:
        reason = _unsigned(self.verifier, headers, body)
        if reason is not None:
            return refuse("slack", 401, reason)
        try:
            request = AsyncBoltRequest(body=body.decode(), headers=dict(headers))
            _PAYLOAD.validate_python(request.body)
        except UNREADABLE as exc:  # a pydantic ValidationError is a ValueError
            return unreadable("slack", exc)
        response = await app.async_dispatch(request)
        # Without an OAuth flow bolt sets no cookies: its headers are all there is to pass on.
        extra = response.first_headers_without_set_cookie()
        content_type = extra.pop("content-type")
        return WebhookReply(
            status=response.status, body=response.body.encode(), content_type=content_type, headers=extra
        )
