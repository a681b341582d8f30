"""Telegram (python-telegram-bot): long polling (`switchboard bot telegram`) or a webhook on the web server.

Private chats: every message is a question. Groups: only when the bot is @mentioned, replied to, or asked
with /ask; each forum topic is its own conversation. Answers stream by editing one message in Telegram HTML
(fewer edits in groups, where Telegram allows ~20 messages a minute), with 👍/👎 buttons under the last part.
Flood control (429 retry_after) is retried by PTB's AIORateLimiter; a user who blocked the bot, or an edit
that changes nothing, is logged and skipped, never fatal. Voice notes (private chats, or replies to the bot in
groups) are transcribed and answered like text (bots.voicenotes, bots.telegram_voice).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    MessageEntity,
    ReplyParameters,
    Update,
)
from telegram import Message as TgMessage
from telegram.constants import ChatAction, ChatType, MessageLimit, ParseMode
from telegram.error import BadRequest, Forbidden
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.base import RESET_DONE, THANKS, Channel, Responder, feedback_value, is_reset, open_bot
from bots.render import TELEGRAM
from bots.settings import TelegramSettings, TelegramTable
from bots.telegram_voice import file_url, voice_of
from bots.voicenotes import answer_voice_note
from bots.webhooks import UNREADABLE, WebhookHandler, WebhookReply, refuse, same_secret, unreadable
from core.answer.assistant import Assistant
from core.config import Settings
from core.errors import ConfigError
from core.shared_state import SharedState
from core.shutdown import sigterm

logger = logging.getLogger(__name__)

COMMANDS = [
    BotCommand("ask", "Ask a question about the documents"),
    BotCommand("reset", "Start a new conversation"),
    BotCommand("help", "How to use this bot"),
    BotCommand("start", "Welcome message"),
]
HELP = (
    "Ask me anything about the documents I know, and I'll answer with the sources I used.\n\n"
    "In private chats just write your question. In groups, mention me, reply to one of my messages, or use "
    "/ask <question>. /reset starts a new conversation."
)
WEBHOOK_PATH = "/telegram/webhook"


class TelegramChannel(Channel):
    dialect = TELEGRAM
    limit = MessageLimit.MAX_TEXT_LENGTH

    def __init__(self, question: TgMessage):
        self.question = question
        self.chat_id = question.chat_id
        self.topic = question.message_thread_id if question.is_topic_message else None
        self.edit_interval = 1.0 if question.chat.type == ChatType.PRIVATE else 3.0

    @staticmethod
    def _buttons(answer_id: str | None) -> InlineKeyboardMarkup | None:
        if not answer_id:
            return None
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton("👍", callback_data=feedback_value("up", answer_id)),
                    InlineKeyboardButton("👎", callback_data=feedback_value("down", answer_id)),
                ]
            ]
        )

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        sent = await self.question.get_bot().send_message(
            self.chat_id,
            text,
            parse_mode=ParseMode.HTML,
            message_thread_id=self.topic,
            reply_parameters=ReplyParameters(self.question.message_id, allow_sending_without_reply=True),
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            reply_markup=self._buttons(answer_id),
        )
        return str(sent.message_id)

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        try:
            await self.question.get_bot().edit_message_text(
                text,
                chat_id=self.chat_id,
                message_id=int(message_id),
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_markup=self._buttons(answer_id),
            )
        except BadRequest as exc:
            if "message is not modified" not in exc.message.lower():
                raise

    async def typing(self) -> None:
        await self.question.get_bot().send_chat_action(self.chat_id, ChatAction.TYPING, message_thread_id=self.topic)


def conversation_id(message: TgMessage) -> str:
    if message.is_topic_message and message.message_thread_id:
        return f"{message.chat_id}:{message.message_thread_id}"
    return str(message.chat_id)


def _replies_to_bot(message: TgMessage, username: str) -> bool:
    reply = message.reply_to_message
    return reply is not None and reply.from_user is not None and reply.from_user.username == username


def _for_bot(message: TgMessage, username: str) -> bool:
    """A message with no text to mention the bot in (a voice note) is for it in private chats, or as a reply
    to one of its messages."""
    return message.chat.type == ChatType.PRIVATE or _replies_to_bot(message, username)


def _addressed_text(message: TgMessage, username: str) -> str | None:
    """The question in a message, or None when it is not for the bot (a group message without a mention
    or a reply to the bot)."""
    text = message.text or ""
    if message.chat.type == ChatType.PRIVATE:
        return text
    mention = f"@{username}".lower()
    mentioned = any(
        entity.type == MessageEntity.MENTION and text[entity.offset : entity.offset + entity.length].lower() == mention
        for entity in message.entities
    )
    if not (mentioned or _replies_to_bot(message, username)):
        return None
    return " ".join(word for word in text.split() if word.lower() != mention)


class TelegramBot:
    """The handlers: translate an update into a question for the Responder, and nothing else."""

    def __init__(self, responder: Responder):
        self.responder = responder

    def install(self, application: Application) -> None:
        application.add_handler(CommandHandler("start", self.start))
        application.add_handler(CommandHandler("help", self.help))
        application.add_handler(CommandHandler("reset", self.reset))
        application.add_handler(CommandHandler("ask", self.ask))
        application.add_handler(CallbackQueryHandler(self.feedback))
        application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND & ~filters.VIA_BOT, self.message))
        application.add_handler(MessageHandler((filters.VOICE | filters.AUDIO) & ~filters.VIA_BOT, self.voice))
        application.add_error_handler(self.error)

    def bot_for(self, message: TgMessage) -> str:
        return self.responder.bot_for([("chats", str(message.chat_id))])

    async def _first(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> bool:
        return await self.responder.first(f"{context.bot.id}:{update.update_id}")

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message and await self._first(update, context):
            await update.effective_message.reply_text(self.responder.welcome(self.bot_for(update.effective_message)))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message and await self._first(update, context):
            await update.effective_message.reply_text(HELP)

    async def reset(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message and await self._first(update, context):
            await self.responder.reset(conversation_id(message))
            await message.reply_text(RESET_DONE)

    async def ask(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not await self._first(update, context):
            return
        question = " ".join(context.args or ())
        if not question:
            await message.reply_text("Usage: /ask <your question>")
            return
        await self._answer(message, question)

    async def message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or (message.from_user and message.from_user.is_bot):
            return
        question = _addressed_text(message, context.bot.username)
        if question is None or not await self._first(update, context):
            return
        if is_reset(question):
            await self.responder.reset(conversation_id(message))
            await message.reply_text(RESET_DONE)
        elif question.strip():
            await self._answer(message, question)
        else:
            await message.reply_text(self.responder.welcome(self.bot_for(message)))

    async def voice(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A voice note: transcribed, quoted, answered as text (bots.voicenotes)."""
        message = update.effective_message
        note = voice_of(message) if message else None
        if message is None or note is None or (message.from_user and message.from_user.is_bot):
            return
        if not _for_bot(message, context.bot.username) or not await self._first(update, context):
            return
        bot, user = self.bot_for(message), message.from_user
        await answer_voice_note(
            self.responder,
            TelegramChannel(message),
            note,
            conversation_id=conversation_id(message),
            bot=bot,
            user_id=str(user.id) if user else None,
            voice_reply=self.responder.tables[bot].voice_reply,
        )

    async def _answer(self, message: TgMessage, question: str) -> None:
        user = message.from_user
        await self.responder.answer(
            TelegramChannel(message),
            text=question,
            conversation_id=conversation_id(message),
            bot=self.bot_for(message),
            user_id=str(user.id) if user else None,
        )

    async def feedback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        stored = await self.responder.feedback(query.data or "")
        await query.answer(THANKS if stored else "That answer is no longer available.")

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(context.error, Forbidden):  # blocked by the user, removed from the group
            logger.info("telegram refused a message: %s", context.error)
        else:
            logger.error("telegram update failed", exc_info=context.error)


def _application(telegram: TelegramSettings, assistant: Assistant, state: SharedState, *, polling: bool) -> Application:
    if telegram.bot_token is None:
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set: get one from @BotFather (see README)")
    builder = (
        ApplicationBuilder()
        .token(telegram.bot_token.get_secret_value())
        .base_url(telegram.api_url)
        .base_file_url(file_url(telegram.api_url))
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(True)  # answers in different chats stream side by side
    )
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    responder = Responder(assistant, state, platform="telegram", default_bot=telegram.bot, table=TelegramTable)
    TelegramBot(responder).install(application)
    return application


async def run(settings: Settings, telegram: TelegramSettings) -> None:
    """Long polling until SIGTERM (then stop polling and let the answers in flight finish) or Ctrl-C.
    Network drops are retried by PTB's updater."""
    if telegram.mode == "webhook":
        raise ConfigError(f"TELEGRAM_MODE=webhook: the webhook is served by `switchboard serve` at {WEBHOOK_PATH}")
    async with open_bot(settings) as (assistant, state):
        application = _application(telegram, assistant, state, polling=True)
        async with application:
            await application.bot.set_my_commands(COMMANDS)
            await application.bot.delete_webhook()
            assert application.updater is not None
            await application.updater.start_polling(allowed_updates=["message", "callback_query"])
            await application.start()
            logger.info("telegram bot @%s polling", application.bot.username)
            try:
                await sigterm()
                await application.updater.stop()
                await assistant.drain()
            finally:
                if application.updater.running:
                    await application.updater.stop()
                await application.stop()  # waits for every handler still running: drained (or cancelled) above


class TelegramWebhook:
    """POST /telegram/webhook on the web server; Telegram's secret-token header is required (403). Updates are
    queued and answered after Telegram got its 200."""

    path = WEBHOOK_PATH
    max_body_bytes: int | None = None

    def __init__(self, telegram: TelegramSettings):
        if telegram.webhook_secret is None:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET is required for TELEGRAM_MODE=webhook")
        self.telegram = telegram
        self.secret = telegram.webhook_secret.get_secret_value()

    @asynccontextmanager
    async def open(self, assistant: Assistant, state: SharedState) -> AsyncIterator[WebhookHandler]:
        application = _application(self.telegram, assistant, state, polling=False)
        async with application:
            await application.bot.set_my_commands(COMMANDS)
            if self.telegram.webhook_url:
                await application.bot.set_webhook(
                    self.telegram.webhook_url,
                    secret_token=self.secret,
                    allowed_updates=["message", "callback_query"],
                )
            await application.start()
            yield partial(self.handle, application)
            # Updates are answered after Telegram got its 200, outside any request the server waits for.
            await assistant.drain()
            await application.stop()

    async def handle(self, application: Application, body: bytes, headers: Mapping[str, str]) -> WebhookReply:
        if not same_secret(headers.get("x-telegram-bot-api-secret-token"), self.secret):
            return refuse("telegram", 403, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
        try:
            update = Update.de_json(json.loads(body), application.bot)
        except UNREADABLE as exc:
            return unreadable("telegram", exc)
        await application.update_queue.put(update)  # answered after Telegram gets its 200
        return WebhookReply.json(200, {"ok": True})
