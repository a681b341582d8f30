"""What the Teams bot answers, and how: activities in, Responder calls out.

Personal chats: every message is a question. Group chats and channels: only a message that @mentions the bot
(the mention is stripped from the question), and in a channel any later reply in a thread it has answered or
started answering (noted in the answer log, as Slack's followed threads are; Teams delivers such replies only
with the ChannelMessage.Read.Group permission the app manifest asks for). Replies in a channel go in the
post's thread. Redelivered activities (same conversation and activity id) are answered once, across every
process sharing the de-duplication store.

Feedback: Teams' own 👍/👎 in chats arrive as a `message/submitAction` invoke naming the message; the card
buttons in channels as a message whose `value` carries the rating and the answer id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Any

from bots.base import APOLOGY, RESET_DONE, THANKS, Responder, Stream, is_reset
from bots.render import TEAMS, render
from bots.teams.activities import FEEDBACK_KEY, STREAMING_SCOPE, Activity, Place
from bots.teams.answer_ids import AnswerIds
from bots.teams.channel import NativeStream, TeamsConversation, Updates
from bots.teams.connector import Connector
from core.answer.log import Rating

logger = logging.getLogger(__name__)

UNKNOWN_ANSWER = "Sorry, I could not find that answer any more."
FEEDBACK_INVOKE = "message/submitAction"
REACTIONS: dict[str, Rating] = {"like": "up", "dislike": "down"}


class TeamsBot:
    def __init__(self, responder: Responder, connector: Connector, answers: AnswerIds, *, native: bool):
        self.responder = responder
        self.connector = connector
        self.native = native
        self.answers = answers
        self.tasks: set[asyncio.Task[None]] = set()  # answers running after Teams got its response

    def bot_for(self, activity: Activity) -> str:
        base = activity.conversation.id.partition(";messageid=")[0]
        return self.responder.bot_for([("conversations", base), ("tenants", activity.tenant)])

    async def invoke(self, activity: Activity) -> tuple[int, dict[str, Any]]:
        """An invoke's status and body, which Teams waits for."""
        if activity.name != FEEDBACK_INVOKE:
            return 200, {}
        value: dict[str, Any] = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("actionValue")
        action = action if isinstance(action, dict) else {}
        rating = REACTIONS.get(str(action.get("reaction")))
        answer_id = await self.answers.get(activity.reply_to_id) if activity.reply_to_id else None
        if value.get("actionName") != "feedback" or rating is None or answer_id is None:
            logger.info("teams feedback for an unknown message or rating: %s", value)
            return 200, {}
        await self.responder.assistant.rate(answer_id, rating, _comment(action.get("feedback")))
        return 200, {}

    async def message(self, activity: Activity) -> None:
        """Decide whether to answer (quickly, inside the request); the answer itself runs in a task."""
        if activity.from_.id == activity.recipient.id or not activity.id:
            return
        place = Place.of(activity)
        value = activity.value if isinstance(activity.value, dict) else {}
        feedback = value.get(FEEDBACK_KEY)  # a click on the sources card's 👍/👎
        if not isinstance(feedback, str) and place.scope != STREAMING_SCOPE and not activity.mentions_bot():
            followed = place.scope == "channel" and await self.responder.engaged(place.key)
            if not followed:
                return
        if not await self.responder.first(f"{activity.conversation.id}:{activity.id}"):
            logger.info("teams activity %s already handled (a redelivery)", activity.id)
            return
        if isinstance(feedback, str):
            self._spawn(self.card_feedback(place, feedback))
        else:
            self._spawn(self.reply(place, activity.question(), self.bot_for(activity), activity.from_.id))

    async def joined(self, activity: Activity) -> None:
        """Installed in a personal chat: the bot's welcome, once."""
        added = any(member.id == activity.recipient.id for member in activity.members_added)
        if not added or activity.scope != STREAMING_SCOPE or not activity.id:
            return
        if await self.responder.first(f"{activity.conversation.id}:{activity.id}"):
            self._spawn(self.reply(Place.of(activity), "", self.bot_for(activity), activity.from_.id))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def reply(self, place: Place, text: str, bot: str, user: str) -> None:
        target = TeamsConversation(self.connector, place, self.answers)
        try:
            if is_reset(text):
                await self.responder.reset(place.key)
                await target.post(RESET_DONE)
                return
            if not text:
                await target.post(render(self.responder.welcome(bot), TEAMS))
                return
            if place.scope == "channel":  # follow-ups need no mention from now on, even while this one streams
                await self.responder.engage(place.key)
            stream: Stream = NativeStream(target) if self.native and place.scope == STREAMING_SCOPE else Updates(target)
            await self.responder.answer(
                target, text=text, conversation_id=place.key, bot=bot, user_id=user, streaming=stream
            )
        except Exception:
            logger.exception("answering on teams failed (%s)", place.key)
            with contextlib.suppress(Exception):
                await target.post(APOLOGY)

    async def card_feedback(self, place: Place, value: str) -> None:
        target = TeamsConversation(self.connector, place, self.answers)
        stored = await self.responder.feedback(value)
        with contextlib.suppress(Exception):
            await target.post(THANKS if stored else UNKNOWN_ANSWER)


def _comment(feedback: object) -> str | None:
    """The text a user typed with Teams' feedback form: JSON in a string, {"feedbackText": …}."""
    if not isinstance(feedback, str):
        return None
    try:
        text = json.loads(feedback).get("feedbackText")
    except (ValueError, AttributeError):
        return None
    return (text.strip() or None) if isinstance(text, str) else None
