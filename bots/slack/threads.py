"""Where a Slack reply goes: a thread, through the Web API (bots.base.relay posts, then edits with chat.update),
or an ephemeral /ask answer, collected in memory and sent once."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bots.base import Channel
from bots.render import SLACK
from bots.slack.blocks import SECTION_LIMIT, answer_blocks

# chat.update is rate-limited per workspace (Tier 3, ~50 a minute): one edit per 1.5 s per answer leaves
# room for a few answers at once; a 429 beyond that waits for Retry-After.
EDIT_INTERVAL = 1.5


class SlackThread(Channel):
    """A reply in one thread, through the Web API."""

    dialect = SLACK
    limit = SECTION_LIMIT
    edit_interval = EDIT_INTERVAL

    def __init__(self, client: AsyncWebClient, *, channel: str, thread_ts: str, footer: str):
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.footer = footer

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        response = await self.client.chat_postMessage(
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=text,
            blocks=answer_blocks(text, answer_id, self.footer),
            unfurl_links=False,
            unfurl_media=False,
        )
        return str(response["ts"])

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        await self.client.chat_update(
            channel=self.channel, ts=message_id, text=text, blocks=answer_blocks(text, answer_id, self.footer)
        )


class PrivateReply(Channel):
    """An ephemeral /ask answer. Ephemeral messages cannot be edited through the Web API, so relay() streams
    into memory (previews are never shown) and the finished parts are sent once, via the response_url."""

    dialect = SLACK
    limit = SECTION_LIMIT
    edit_interval = 3600.0

    def __init__(self) -> None:
        self.parts: list[tuple[str, str | None]] = []

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        self.parts.append((text, answer_id))
        return str(len(self.parts) - 1)

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        self.parts[int(message_id)] = (text, answer_id)
