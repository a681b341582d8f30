"""Where a Teams reply goes, and the two ways an answer is shown while it is written.

`TeamsConversation` is the shared layer's Channel: post (in a channel: in the post's thread), update (PUT),
typing. Its final message carries the sources the way the scope supports them: in personal and group chats
the AI-generated label with `citation` entities for the answer's [n] and Teams' own 👍/👎
(channelData.feedbackLoopEnabled, answered with a `message/submitAction` invoke); in channels an Adaptive Card
with the numbered sources and 👍/👎 buttons (Action.Submit). An answer the model cited nothing in keeps the
"Sources consulted" list in its text.

`Updates` is post-then-update with the relay's throttling (every scope, or TEAMS_STREAMING=edit);
`NativeStream` is Teams' streaming protocol in personal chats: an informative typing activity, cumulative
streaming updates (typing activities with a streaminfo entity, at most one every STREAM_INTERVAL), and the
final message with streamType final. When Teams refuses a stream (403, e.g. streaming not allowed for this
bot or chat) the answer goes on as updates of one message.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from bots.base import THINKING, Channel, Followed, PostThenEdit, Stream, ending
from bots.render import TEAMS, render, split
from bots.teams.activities import Place, ai_entity, message, sources_card, stream_info, streaming
from bots.teams.answer_ids import AnswerIds
from bots.teams.connector import Connector, ConnectorError
from core.answer.citations import final_markdown
from core.types import Done

logger = logging.getLogger(__name__)

# Teams allows about one message (or update) a second per conversation; 1.5 s leaves room for a burst.
EDIT_INTERVAL = 1.5
STREAM_INTERVAL = 1.0  # Teams' own guidance for streaming updates
# Characters of rendered Markdown in one message: Teams takes ~28 KB per activity, entities and card included.
MESSAGE_LIMIT = 7000
INFORMATIVE = "Searching the knowledge base…"


class TeamsConversation(Channel):
    dialect = TEAMS
    limit = MESSAGE_LIMIT
    edit_interval = EDIT_INTERVAL

    def __init__(self, connector: Connector, place: Place, answers: AnswerIds):
        self.connector = connector
        self.place = place
        self.answers = answers
        self.done: Done | None = None  # set before the final message, whose sources it shows

    def cards(self) -> bool:
        """Channels get the sources and 👍/👎 on an Adaptive Card; chats get Teams' own citations and buttons."""
        return self.place.scope == "channel"

    def answer_text(self, done: Done) -> str:
        """The final message's Markdown: the sources stay in the text only where nothing else shows them."""
        return done.text if self.cards() or done.cited else final_markdown(done)

    def decorate(self, activity: dict[str, Any], answer_id: str) -> dict[str, Any]:
        if self.cards():
            activity["attachments"] = [sources_card(self.done, answer_id)] if self.done else []
        else:
            activity["entities"] = [*activity.get("entities", []), ai_entity(self.done)]
            activity["channelData"] = {**activity.get("channelData", {}), "feedbackLoopEnabled": True}
        return activity

    async def send(self, activity: dict[str, Any]) -> str:
        p = self.place
        if p.reply_to:
            return await self.connector.reply(p.service_url, p.conversation, p.reply_to, activity)
        return await self.connector.send(p.service_url, p.conversation, activity)

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        activity = message(text)
        activity_id = await self.send(self.decorate(activity, answer_id) if answer_id else activity)
        if answer_id:
            await self.remember(activity_id, answer_id)
        return activity_id

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        activity = {**message(text), "id": message_id}
        p = self.place
        await self.connector.update(
            p.service_url, p.conversation, message_id, self.decorate(activity, answer_id) if answer_id else activity
        )
        if answer_id:
            await self.remember(message_id, answer_id)

    async def remember(self, message_id: str, answer_id: str) -> None:
        """For the 👍/👎 invoke; a lost mapping costs that vote, not the answer."""
        if self.cards():  # the card's buttons carry the answer id themselves
            return
        try:
            await self.answers.remember(message_id, answer_id)
        except Exception:
            logger.warning("could not note which teams message holds answer %s", answer_id, exc_info=True)

    async def typing(self) -> None:
        await self.send({"type": "typing"})


class Updates(PostThenEdit):
    """Post-then-update, whose final message shows the sources the scope's way (TeamsConversation.decorate)."""

    channel: TeamsConversation

    def __init__(self, channel: TeamsConversation):
        super().__init__(channel)

    async def finish(self, result: Followed) -> None:
        done = result.done
        if done is None or result.cancelled is not None:
            await super().finish(result)
            return
        self.channel.done = done
        try:
            await self.reply.show(self.channel.answer_text(done), answer_id=done.answer_id)
        except Exception:
            logger.exception("could not deliver the final answer to teams")


class NativeStream(Stream):
    """Teams' streaming protocol in a personal chat."""

    interval = STREAM_INTERVAL

    def __init__(self, channel: TeamsConversation):
        self.channel = channel
        self.stream_id: str | None = None
        self.sequence = 0
        self.ended = False  # Teams ended the stream early: the final message comes on its own
        self.fallback: Updates | None = None  # Teams refused the stream: post-then-update instead

    async def _send(self, kind: Literal["informative", "streaming"], text: str) -> str:
        self.sequence += 1
        return await self.channel.send(streaming(kind, text, self.stream_id, self.sequence))

    async def start(self) -> bool:
        try:
            self.stream_id = await self._send("informative", INFORMATIVE)
            return True
        except ConnectorError as exc:
            logger.warning("teams refused to start a stream (%s): updating one message instead", exc)
        self.fallback = Updates(self.channel)
        return await self.fallback.start()

    async def update(self, text: str) -> None:
        if self.fallback is not None:
            await self.fallback.update(text)
            return
        if self.ended:
            return
        # Cumulative text, as the protocol wants; a preview past one message's size shows its beginning.
        preview = (split(text, TEAMS, MESSAGE_LIMIT) or [""])[0]
        try:
            await self._send("streaming", preview)
        except ConnectorError as exc:
            if exc.status != 403:
                raise
            # 403: the user stopped the stream, or it ran too long. The answer still arrives, as a message.
            logger.info("teams ended the stream early (%s)", exc)
            self.ended = True

    async def finish(self, result: Followed) -> None:
        if self.fallback is not None:
            await self.fallback.finish(result)
            return
        done = result.done if result.cancelled is None else None
        if done is not None:
            self.channel.done = done
        markdown = self.channel.answer_text(done) if done else ending(result)
        first, *rest = split(markdown, TEAMS, MESSAGE_LIMIT) or [render(THINKING, TEAMS)]
        final = message(first)
        if not self.ended:
            info = stream_info("final", self.stream_id, self.sequence)
            final |= {"entities": [{"type": "streaminfo", **info}], "channelData": info}
        answer_id = done.answer_id if done else None
        try:
            if answer_id and not rest:
                final = self.channel.decorate(final, answer_id)
            final_id = await self.channel.send(final)
            if answer_id and not rest:
                await self.channel.remember(final_id, answer_id)
            for i, part in enumerate(rest, 1):  # a long answer goes on in more messages, the sources under the last
                await self.channel.post(part, answer_id=answer_id if i == len(rest) else None)
        except Exception:
            logger.exception("could not deliver the final answer to teams")
