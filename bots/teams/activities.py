"""Bot Framework activities: the part of an incoming one the bot reads (validated, so a signed but malformed
body is a 400, not a crash), and the outgoing ones it sends: messages, Teams' streaming updates, the
AI-generated label with `citation` entities, and the Adaptive Card with numbered sources and 👍/👎.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from bots.base import feedback_value
from core.answer.citations import sources_markdown
from core.types import Done, is_web

# Where Teams accepts its streaming protocol: personal (1:1) chats only.
STREAMING_SCOPE = "personal"
ABSTRACT_LIMIT = 160  # characters of a citation's abstract Teams shows
FEEDBACK_KEY = "switchboardFeedback"  # what an Adaptive Card's 👍/👎 carries back in `value`


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Account(_Model):
    id: str
    name: str | None = None


class Conversation(_Model):
    id: str
    conversation_type: str | None = None  # personal, groupChat, channel
    tenant_id: str | None = None


class Activity(_Model):
    type: str
    id: str | None = None
    service_url: str
    channel_id: str
    conversation: Conversation
    from_: Account = Field(alias="from")
    recipient: Account
    name: str | None = None  # an invoke's name (message/submitAction)
    text: str = ""
    reply_to_id: str | None = None
    entities: list[dict[str, Any]] = []
    channel_data: dict[str, Any] = {}
    value: Any = None
    members_added: list[Account] = []  # a conversationUpdate's

    @property
    def scope(self) -> str:
        return self.conversation.conversation_type or STREAMING_SCOPE

    @property
    def tenant(self) -> str:
        tenant = self.channel_data.get("tenant")
        from_data = tenant.get("id") if isinstance(tenant, dict) else None
        return self.conversation.tenant_id or str(from_data or "")

    def mentions_bot(self) -> bool:
        return any(_mentioned(entity) == self.recipient.id for entity in self.entities)

    def question(self) -> str:
        """The text without the bot's @mention (Teams writes it as <at>Name</at>), HTML entities undone."""
        text = self.text
        for entity in self.entities:
            if _mentioned(entity) == self.recipient.id and isinstance(entity.get("text"), str):
                text = text.replace(entity["text"], "")
        return html.unescape(re.sub(r"</?at>", "", text)).strip()


def _mentioned(entity: dict[str, Any]) -> str | None:
    mentioned = entity.get("mentioned")
    if entity.get("type") != "mention" or not isinstance(mentioned, dict):
        return None
    return str(mentioned.get("id"))


@dataclass(frozen=True)
class Place:
    """Where a reply goes and which conversation it belongs to."""

    service_url: str
    conversation: str  # the Bot Connector's id: a channel thread's carries ;messageid=ROOT
    reply_to: str | None  # in a channel: the post whose thread the reply goes in
    scope: str
    key: str  # tenant:conversation[:thread], the conversation in history and the answer log

    @classmethod
    def of(cls, activity: Activity) -> Place:
        """A channel thread is one conversation (tenant:channel:thread); a personal or group chat is one as a
        whole (tenant:chat), so "reset" starts it over."""
        base, _, thread = activity.conversation.id.partition(";messageid=")
        if activity.scope != "channel":
            return cls(
                activity.service_url, activity.conversation.id, None, activity.scope, f"{activity.tenant}:{base}"
            )
        thread = thread or activity.id or ""
        return cls(
            activity.service_url,
            f"{base};messageid={thread}",
            activity.id,
            activity.scope,
            f"{activity.tenant}:{base}:{thread}",
        )


# --- outgoing ---------------------------------------------------------------------------------------------


def message(text: str) -> dict[str, Any]:
    return {"type": "message", "textFormat": "markdown", "text": text}


def stream_info(
    kind: Literal["informative", "streaming", "final"], stream_id: str | None, sequence: int
) -> dict[str, Any]:
    """The streaminfo entity of Teams' streaming protocol (the channelData copy is what older clients read)."""
    info: dict[str, Any] = {"streamType": kind}
    if stream_id:
        info["streamId"] = stream_id
    if kind != "final":
        info["streamSequence"] = sequence
    return info


def streaming(
    kind: Literal["informative", "streaming"], text: str, stream_id: str | None, sequence: int
) -> dict[str, Any]:
    info = stream_info(kind, stream_id, sequence)
    return {"type": "typing", "text": text, "entities": [{"type": "streaminfo", **info}], "channelData": info}


def ai_entity(done: Done | None) -> dict[str, Any]:
    """Teams' AI-generated label, with the cited sources as `citation` claims the text's [n] point at."""
    entity: dict[str, Any] = {
        "type": "https://schema.org/Message",
        "@type": "Message",
        "@context": "https://schema.org",
        "@id": "",
        "additionalType": ["AIGeneratedContent"],
    }
    if done is not None and done.cited:
        entity["citation"] = [
            {
                "@type": "Claim",
                "position": c.n,
                "appearance": {
                    "@type": "DigitalDocument",
                    "name": (c.title or c.source)[:80],
                    "abstract": c.snippet[:ABSTRACT_LIMIT],
                    **({"url": c.source} if is_web(c.source) else {}),
                },
            }
            for c in done.citations
        ]
    return entity


def _button(title: str, value: str) -> dict[str, Any]:
    return {"type": "Action.Submit", "title": title, "data": {FEEDBACK_KEY: value}}


def sources_card(done: Done, answer_id: str) -> dict[str, Any]:
    """An Adaptive Card with the numbered sources (Markdown links in TextBlocks) and 👍/👎, for channels."""
    body: list[dict[str, Any]] = []
    footer = sources_markdown(done)
    if footer:
        for line in footer.split("  \n"):
            body.append({"type": "TextBlock", "text": line, "wrap": True, "spacing": "None", "size": "Small"})
    return {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.5",
            "body": body or [{"type": "TextBlock", "text": "Was this answer helpful?", "wrap": True}],
            "actions": [
                _button("👍", feedback_value("up", answer_id)),
                _button("👎", feedback_value("down", answer_id)),
            ],
        },
    }
