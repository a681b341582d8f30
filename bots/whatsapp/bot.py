"""Answering WhatsApp messages on the shared chat-bot layer: a `Channel` that sends through the Cloud API and a
`Stream` for a platform that cannot edit messages.

WhatsApp shows no streaming and cannot edit a sent message, so while the answer is written the user sees the
question marked read and "typing…" (renewed before WhatsApp's 25 s expire), then the whole answer, split at
4,096 characters between blocks, with 👍/👎 reply buttons on its last part. Voice notes are transcribed, quoted
and answered the same way (bots.voicenotes). An answer goes out only inside the 24-hour customer-service window
that the user's message opened: for a message delivered later (a redelivery after an outage) the Cloud API
would refuse it, so the approved template WHATSAPP_TEMPLATE is sent instead when there is one, else it is
logged and left unanswered.
"""

from __future__ import annotations

import logging
import time

from bots.base import RESET_DONE, THANKS, Channel, Followed, Reply, Responder, Stream, ending, feedback_value, is_reset
from bots.render import WHATSAPP
from bots.voicenotes import answer_voice_note
from bots.whatsapp.graph import Graph
from bots.whatsapp.payload import Inbound
from bots.whatsapp.voice import WhatsAppVoiceNote

logger = logging.getLogger(__name__)

WINDOW = 24 * 3600  # seconds: the customer-service window a user's message opens
TEXT_LIMIT = 4096
BUTTONS_BODY_LIMIT = 1024  # an interactive message's body; a longer last part gets its buttons underneath
TYPING_RENEWAL = 20.0  # seconds: WhatsApp drops the typing indicator after 25 s or at the reply
HELP = (
    "Ask me anything about the documents I know, and I'll answer with the sources I used.\n\n"
    "Write *reset* to start a new conversation, *help* for this message. "
    "Tap 👍 or 👎 under an answer to tell us whether it helped."
)
HELP_PHRASES = frozenset({"help", "/help", "?"})
TEXT_ONLY = "Sorry, I can only read text and voice messages for now. Please type your question."
FEEDBACK_PROMPT = "Was this answer helpful?"
UNKNOWN_ANSWER = "That answer is no longer available."


class WhatsAppChannel(Channel):
    """One user's chat with one business number; every message quotes the user's question."""

    dialect = WHATSAPP
    limit = TEXT_LIMIT
    edit_interval = TYPING_RENEWAL

    def __init__(self, graph: Graph, question: Inbound):
        self.graph = graph
        self.question = question

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        number, to, quoted = self.question.phone_number_id, self.question.sender, self.question.message_id
        if answer_id is None:
            return await self.graph.send_text(number, to, text, reply_to=quoted)
        buttons = [(feedback_value("up", answer_id), "👍"), (feedback_value("down", answer_id), "👎")]
        if len(text) <= BUTTONS_BODY_LIMIT:
            return await self.graph.send_buttons(number, to, text, buttons, reply_to=quoted)
        await self.graph.send_text(number, to, text, reply_to=quoted)
        return await self.graph.send_buttons(number, to, FEEDBACK_PROMPT, buttons)

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        """WhatsApp cannot edit a sent message: the text is sent anew (`WholeAnswer` never asks for an edit)."""
        await self.post(text, answer_id=answer_id)

    async def typing(self) -> None:
        await self.graph.read_and_type(self.question.phone_number_id, self.question.message_id)


class WholeAnswer(Stream):
    """Nothing shown while the answer is written but "typing…" (renewed), then the whole answer at once."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.interval = channel.edit_interval
        self.typed_at = 0.0

    async def start(self) -> bool:
        self.typed_at = time.monotonic()  # relay() has just marked the question read and shown "typing…"
        return True

    async def update(self, text: str) -> None:
        # relay() calls this at the first words too: only renew what is about to expire.
        if time.monotonic() - self.typed_at >= self.interval:
            self.typed_at = time.monotonic()
            await self.channel.typing()

    async def finish(self, result: Followed) -> None:
        try:
            await Reply(self.channel).show(ending(result), answer_id=result.done.answer_id if result.done else None)
        except Exception:
            logger.exception("could not deliver the answer to a whatsapp user")


class WhatsAppBot:
    """Turns one user message into an answer, a reset, help or stored feedback."""

    def __init__(
        self, responder: Responder, graph: Graph, phone_number_id: str, template: tuple[str, str] | None = None
    ):
        self.responder = responder
        self.graph = graph
        self.phone_number_id = phone_number_id
        self.template = template  # (name, language code) sent outside the 24-hour window

    def bot_for(self, message: Inbound) -> str | None:
        """The bot answering on the number the message was sent to; None for a number this server does not
        answer (neither WHATSAPP_PHONE_NUMBER_ID nor in a bot's `[bots.NAME.whatsapp]` phone_numbers)."""
        number = message.phone_number_id
        mapped = any(number in table.scope("phone_numbers") for table in self.responder.tables.values())
        if number != self.phone_number_id and not mapped:
            return None
        return self.responder.bot_for([("phone_numbers", number)])

    async def handle(self, message: Inbound) -> None:
        bot = self.bot_for(message)
        if bot is None:
            logger.info("whatsapp: ignored a message to phone number id %s (not configured)", message.phone_number_id)
            return
        if not await self.responder.first(message.message_id):
            return  # a redelivery, answered by whichever process saw it first
        age = time.time() - message.sent_at
        if age > WINDOW:
            await self._outside_window(message, age)
            return
        channel = WhatsAppChannel(self.graph, message)
        if message.kind == "button":
            stored = await self.responder.feedback(message.text)
            await channel.post(THANKS if stored else UNKNOWN_ANSWER)
        elif message.kind == "audio":
            await answer_voice_note(
                self.responder,
                channel,
                WhatsAppVoiceNote(self.graph, message, max_bytes=int(self.responder.assistant.voice.max_mb * 1048576)),
                conversation_id=conversation_id(message),
                bot=bot,
                user_id=message.sender,
                voice_reply=self.responder.tables[bot].voice_reply,
                streaming=WholeAnswer(channel),
            )
        elif message.kind == "unsupported":
            await channel.post(TEXT_ONLY)
        elif is_reset(message.text):
            await self.responder.reset(conversation_id(message))
            await channel.post(RESET_DONE)
        elif message.text.strip().lower() in HELP_PHRASES:
            await channel.post(f"{self.responder.welcome(bot)}\n\n{HELP}")
        elif message.text.strip():
            await self.responder.answer(
                channel,
                text=message.text,
                conversation_id=conversation_id(message),
                bot=bot,
                user_id=message.sender,
                streaming=WholeAnswer(channel),
            )

    async def _outside_window(self, message: Inbound, age: float) -> None:
        """No free-form reply is allowed any more: the approved template, or a log line. The template is billed:
        one per user and business number per de-dup retention (24 h) however many stale messages arrive (a
        redelivery after an outage brings them all), and none for a stale tap on 👍/👎."""
        hours = age / 3600
        if message.kind == "button":
            logger.info("whatsapp: feedback tap %s is %.1f h old: not answered", message.message_id, hours)
            return
        if self.template is None:
            logger.warning(
                "whatsapp: message %s is %.1f h old, outside the 24-hour customer-service window: not answered "
                "(set WHATSAPP_TEMPLATE to send a template instead)",
                message.message_id,
                hours,
            )
            return
        name, language = self.template
        if not await self.responder.first(f"template:{conversation_id(message)}"):
            logger.info(
                "whatsapp: message %s is %.1f h old: its sender already got the template", message.message_id, hours
            )
            return
        logger.info("whatsapp: message %s is %.1f h old: sent the template %r instead", message.message_id, hours, name)
        await self.graph.send_template(message.phone_number_id, message.sender, name, language)


def conversation_id(message: Inbound) -> str:
    """One conversation per user and business number."""
    return f"{message.phone_number_id}:{message.sender}"
