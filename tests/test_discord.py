"""The Discord bot end to end: real discord.py against a loopback Discord (REST + gateway), the real assistant
(Weaviate, the offline embedder) and the scripted LLM. Each test talks in its own channels, so one running bot
serves them all."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from pydantic import SecretStr

from bots.base import APOLOGY, CURSOR
from bots.discord import NOT_ALLOWED, RESET_DONE, THANKS, UNKNOWN_ANSWER, DiscordRules, run
from bots.settings import DiscordSettings
from core.answer.log import AnswerLog
from core.answer.profiles import load_profiles, load_tables
from core.config import Settings
from core.embed import Embedder
from core.errors import ConfigError
from core.ingest.pipeline import ingest
from core.store.client import open_store
from tests.conftest import loopback_allowed
from tests.fakes.discord_server import (
    BOT_ID,
    BOT_ROLE,
    BOT_USER,
    MESSAGE_CONTENT,
    SUPPRESS_EMBEDS,
    TOKEN,
    Call,
    FakeDiscord,
    Payload,
    user,
)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support.adapters import adapter_settings

GUILD = 100
MAIN, THREADS, LONG, IGNORED, SLASH, SLASH_LONG, RESET, BROKEN, REPLAYED, ROLE, WELCOME, FALLBACK = range(200, 212)
STAFF_ONLY, STAFF_CLOSED = 300, 301
STAFF_ROLE = 900
DM, DM_AFTER_REPLAY, DM_FALLBACK = 500, 501, 502  # any channel outside the guild is a DM
ALICE = user(7001, "alice")
NO_CONTENT_TOKEN = "token-of-an-app-without-message-content"
REVOKED_TOKEN = "revoked-token"

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = ["The dashboard ", "listens on ", "port 8470 [1]."]
PAGE = """<html><head><title>Kestrel dashboard</title></head><body>
<h1>Kestrel dashboard</h1>
<h2>Ports</h2><p>The Kestrel dashboard listens on port 8470. Change the dashboard port with dashboard.port
in kestrel.toml and restart the service.</p>
<h2>Sign-in</h2><p>The dashboard signs users in with the accounts of the Kestrel server.</p>
</body></html>"""
BOTS = f"""
[bots.docs]
kb = "discord_kb"
persona = "Kestrel Helper"
welcome = "Hi! Ask me about **Kestrel**."
[bots.docs.discord]
guilds = [{GUILD}]

[bots.support]
kb = "discord_kb"
[bots.support.discord]
channels = [{THREADS}, {BROKEN}]
threads = true

[bots.staff]
kb = "discord_kb"
[bots.staff.discord]
channels = [{STAFF_ONLY}, "{STAFF_CLOSED}"]
allowed_channels = [{STAFF_ONLY}]
allowed_roles = [{STAFF_ROLE}]
"""


@dataclass
class Bot:
    fake: FakeDiscord
    llm: FakeOpenAI
    answers: AnswerLog


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def discord_kb(settings: Settings, embedder: Embedder, host_site: tuple[str, Path]) -> str:
    """A knowledge base from a web page, so citations are links."""
    origin, root = host_site
    (root / "kestrel-dashboard.html").write_text(PAGE)
    async with open_store(settings) as store:
        await ingest(
            store, embedder, [f"{origin}/kestrel-dashboard.html"], kb="discord_kb", settings=loopback_allowed(settings)
        )
    return "discord_kb"


@pytest.fixture(scope="module")
def bot_settings(
    settings: Settings, fake_llm: FakeOpenAI, discord_kb: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    bots = tmp_path_factory.mktemp("discord") / "bots.toml"
    bots.write_text(BOTS)
    return settings.model_copy(
        update={
            "bots_file": bots,
            "default_kb": discord_kb,
            "llm_base_url": fake_llm.base_url,
            "llm_api_key": SecretStr("sk-test"),
            "llm_model": "fake-chat",
            "llm_timeout": 5.0,
        }
    )


def discord_settings(token: str | None = TOKEN) -> DiscordSettings:
    """The bot's token (None: unset); the docs bot by default."""
    return adapter_settings(DiscordSettings, bot_token=SecretStr(token) if token else None, bot="docs")


@pytest.fixture(scope="module")
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(
        guild_id=GUILD,
        channels=[*range(MAIN, FALLBACK + 1), STAFF_ONLY, STAFF_CLOSED],
        roles=[STAFF_ROLE],
        no_message_content={NO_CONTENT_TOKEN},
        forbid_threads={BROKEN},
        revoked={REVOKED_TOKEN},
    )
    await fake.start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(discord.http.Route, "BASE", fake.api_base)
        patch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
        yield fake
    await fake.stop()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _grpc_wakeup(context: dict[str, Any]) -> bool:
    """grpc.aio wakes every event loop that uses it (here: the test's and the servers' threads) for each
    completion and only one reads the byte, so the others log a harmless BlockingIOError (grpc/grpc#25364;
    weaviate-client silences it the same way on its own loops)."""
    return isinstance(context.get("exception"), BlockingIOError) and "PollerCompletionQueue" in str(
        context.get("handle") or context.get("message")
    )


@contextlib.contextmanager
def no_unhandled_errors() -> Iterator[None]:
    """Fails on exceptions nobody handled: asyncio's "Task exception was never retrieved" and discord.py's
    "Ignoring exception in ..." (its last-resort handlers log at ERROR under the `discord` logger)."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: None if _grpc_wakeup(context) else unhandled.append(context))
    library = _Errors()
    logging.getLogger("discord").addHandler(library)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
        logging.getLogger("discord").removeHandler(library)
    assert unhandled == []
    assert [r.getMessage() for r in library.records] == []


@contextlib.asynccontextmanager
async def running(settings: Settings, fake: FakeDiscord, token: str = TOKEN) -> AsyncIterator[None]:
    """`run()` as `switchboard bot discord` runs it, until the bot is connected; cancelled at the end."""
    task = asyncio.create_task(run(settings, discord_settings(token)))
    try:
        await fake.until(lambda: fake.connected(token) or task.done())
        if task.done():
            task.result()  # start-up failed: raise its error here
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="module")
async def bot(bot_settings: Settings, fake_discord: FakeDiscord, fake_llm: FakeOpenAI) -> AsyncIterator[Bot]:
    with no_unhandled_errors():
        async with running(bot_settings, fake_discord):
            yield Bot(fake_discord, fake_llm, AnswerLog(bot_settings.data_dir / "answers.sqlite3"))


# --- helpers ------------------------------------------------------------------------------------------------


async def mention(bot: Bot, channel: int, text: str, *, author: Payload = ALICE, **kwargs: Any) -> Payload:
    message = bot.fake.message(channel, f"<@{BOT_ID}> {text}", author=author, mentions=[BOT_USER], **kwargs)
    await bot.fake.dispatch("MESSAGE_CREATE", message)
    return message


def with_buttons(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.body and c.body.get("components")]


def custom_ids(call: Call) -> list[str]:
    return [button["custom_id"] for row in call.body["components"] for button in row["components"]]


def replied_to(call: Call) -> str:
    return str(call.body["message_reference"]["message_id"])


def answer_id(call: Call) -> str:
    return custom_ids(call)[0].rpartition(":")[2]


async def final_answer(bot: Bot, channel: int, count: int = 1) -> Call:
    """The `count`-th answer in a channel: the one post or edit that put feedback buttons under it."""
    fake = bot.fake

    def finals() -> list[Call]:
        return sorted(with_buttons(fake.posted(channel) + fake.edited(channel)), key=fake.calls.index)

    await fake.until(lambda: len(finals()) >= count)
    return finals()[count - 1]


# --- tests --------------------------------------------------------------------------------------------------


async def test_mention_streams_typing_then_placeholder_edits_and_final_answer_with_links_and_buttons(
    bot: Bot,
) -> None:
    fake = bot.fake
    bot.llm.enqueue(Reply(chunks=ANSWER, stall_after=2, stall_seconds=1.5))
    question = await mention(bot, MAIN, QUESTION)
    final = await final_answer(bot, MAIN)

    typing = fake.rest("POST", f"/channels/{MAIN}/typing")
    (placeholder,) = fake.posted(MAIN)
    assert typing and fake.calls.index(typing[0]) < fake.calls.index(placeholder)
    assert "Thinking" in placeholder.body["content"]
    assert replied_to(placeholder) == question["id"]
    assert placeholder.body["allowed_mentions"] == {"parse": []}  # pings nobody, not even the asker
    # No link previews, on the placeholder and on every edit (discord.py clears the flag unless told not to).
    assert all(c.body["flags"] & SUPPRESS_EMBEDS for c in [placeholder, *fake.edited(MAIN)])
    previews = fake.edited(MAIN)[:-1]
    assert previews and all(p.body["content"].endswith(CURSOR.strip()) for p in previews)

    text = final.body["content"]
    assert text.startswith("The dashboard listens on port 8470 \\[1\\].")
    assert "**Sources:**" in text and "[Kestrel dashboard › Ports](<http://127.0.0.1:" in text  # <url>: no embed
    assert custom_ids(final) == [f"fb:up:{answer_id(final)}", f"fb:down:{answer_id(final)}"]
    record = await bot.answers.get(answer_id(final))
    assert record is not None and record.question == QUESTION  # without the mention
    assert (record.channel, record.conversation, record.bot) == ("discord", str(MAIN), "docs")


async def test_messages_not_meant_for_the_bot_are_ignored(bot: Bot) -> None:
    fake = bot.fake
    other_bot = user(7002, "otherbot", bot=True)
    for message in (
        fake.message(IGNORED, QUESTION, author=ALICE),  # no mention
        fake.message(IGNORED, f"@everyone {QUESTION}", author=ALICE, mention_everyone=True),
        fake.message(IGNORED, f"<@{BOT_ID}> {QUESTION}", author=other_bot, mentions=[BOT_USER]),
        fake.message(IGNORED, f"<@{BOT_ID}> {QUESTION}", author=BOT_USER, mentions=[BOT_USER]),
    ):
        await fake.dispatch("MESSAGE_CREATE", message)
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    sentinel = await mention(bot, IGNORED, QUESTION)  # answered after the ignored ones were handled
    await final_answer(bot, IGNORED)
    (post,) = fake.posted(IGNORED)
    assert replied_to(post) == sentinel["id"]


async def test_bot_role_mention_counts_as_a_mention(bot: Bot) -> None:
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    message = bot.fake.message(ROLE, f"<@&{BOT_ROLE}> {QUESTION}", author=ALICE, mention_roles=[BOT_ROLE])
    await bot.fake.dispatch("MESSAGE_CREATE", message)
    await final_answer(bot, ROLE)
    assert bot.llm.chat_requests()[-1]["messages"][-1]["content"].count(QUESTION) == 1
    assert f"<@&{BOT_ROLE}>" not in bot.llm.chat_requests()[-1]["messages"][-1]["content"]


async def test_dm_is_answered_without_a_mention(bot: Bot) -> None:
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await bot.fake.dispatch("MESSAGE_CREATE", bot.fake.message(DM, QUESTION, author=ALICE))
    final = await final_answer(bot, DM)
    record = await bot.answers.get(answer_id(final))
    assert record is not None and (record.conversation, record.bot) == (str(DM), "docs")


async def test_thread_mode_answers_in_a_new_thread_where_follow_ups_need_no_mention(bot: Bot) -> None:
    fake = bot.fake
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    question = await mention(bot, THREADS, QUESTION)
    thread = int(question["id"])  # a thread started from a message has the message's id
    first = await final_answer(bot, thread)
    (created,) = fake.rest("POST", rf"/channels/{THREADS}/messages/{thread}/threads")
    assert created.body["name"] == QUESTION
    assert fake.posted(THREADS) == []  # nothing in the channel itself

    bot.llm.enqueue(Reply(chunks=["Kestrel dashboard port change"]), Reply(chunks=["Set dashboard.port [1]."]))
    await fake.dispatch("MESSAGE_CREATE", fake.message(thread, "Can I change it?", author=ALICE))
    second = await final_answer(bot, thread, count=2)
    assert "dashboard.port" in second.body["content"]
    # the thread's history came along, to the condensation of the question and to the answer
    assert all("Port 8470" in str(request["messages"]) for request in bot.llm.chat_requests()[-2:])
    for call in (first, second):
        record = await bot.answers.get(answer_id(call))
        assert record is not None and (record.conversation, record.bot) == (str(thread), "support")


async def test_slash_ask_is_deferred_then_answered_in_the_original_response(bot: Bot) -> None:
    fake = bot.fake
    sync = fake.rest("PUT", r"/applications/\d+/commands")[0]
    commands = {c["name"]: c for c in sync.body}
    assert set(commands) == {"ask", "reset"} and commands["ask"]["options"][0]["name"] == "question"

    bot.llm.enqueue(Reply(chunks=ANSWER, stall_after=2, stall_seconds=1.5))
    command = fake.command("ask", SLASH, author=ALICE, question=QUESTION)
    await fake.dispatch("INTERACTION_CREATE", command)
    original = rf"/webhooks/\d+/{command['token']}/messages/{command['id']}"  # the first follow-up's id
    await fake.until(lambda: with_buttons(fake.rest("PATCH", original)))
    (callback,) = fake.rest("POST", rf"/interactions/{command['id']}/.+/callback")
    assert callback.body["type"] == 5  # deferred: "thinking…", within Discord's 3 s
    # The first part is a follow-up, which replaces "thinking…" and, unlike an edit of it, can suppress previews.
    (first,) = fake.rest("POST", rf"/webhooks/\d+/{command['token']}")
    assert "Thinking" in first.body["content"] and first.body["flags"] & SUPPRESS_EMBEDS
    assert fake.rest("PATCH", rf"/webhooks/\d+/{command['token']}/messages/@original") == []
    edits = fake.rest("PATCH", original)
    assert fake.calls.index(callback) < fake.calls.index(first) < fake.calls.index(edits[0]) and len(edits) >= 2
    assert fake.flags(command["id"]) & SUPPRESS_EMBEDS, "still without previews after every edit"
    final = edits[-1]
    assert "port 8470" in final.body["content"] and "(<http://127.0.0.1:" in final.body["content"]
    record = await bot.answers.get(answer_id(final))
    assert record is not None and record.conversation == str(SLASH)


async def test_feedback_buttons_are_stored_even_on_messages_from_before_a_restart(bot: Bot) -> None:
    fake = bot.fake
    answer = await bot.answers.record(
        channel="discord",
        conversation=str(MAIN),
        bot="docs",
        question=QUESTION,
        answer="8470",
        citations=(),
        cited=False,
        fallback=False,
    )

    def posted_earlier(answer_id: str) -> Payload:
        """An answer this bot posted before it was restarted: no view of it is left in memory."""
        message = fake.message(MAIN, "8470", author=BOT_USER)
        buttons = [
            {"type": 2, "style": 2, "custom_id": f"fb:{rating}:{answer_id}", "emoji": {"name": emoji}}
            for rating, emoji in (("up", "👍"), ("down", "👎"))
        ]
        return {**message, "components": [{"type": 1, "components": buttons}]}

    replies = []
    for message, custom_id in ((posted_earlier(answer), f"fb:down:{answer}"), (posted_earlier("0ff"), "fb:up:0ff")):
        click = fake.click(message, custom_id, author=ALICE)
        await fake.dispatch("INTERACTION_CREATE", click)
        callback = rf"/interactions/{click['id']}/.+/callback"
        await fake.until(lambda callback=callback: fake.rest("POST", callback))
        replies.append(fake.rest("POST", callback)[0].body)
    assert [(r["type"], r["data"]["content"], r["data"]["flags"]) for r in replies] == [
        (4, THANKS, 64),  # ephemeral: only the person who clicked sees it
        (4, UNKNOWN_ANSWER, 64),
    ]
    feedback = await bot.answers.feedback(answer)
    assert feedback is not None and feedback.rating == "down"


async def test_long_answers_continue_in_new_messages_of_at_most_2000_characters(bot: Bot) -> None:
    fake = bot.fake
    text = "\n\n".join(
        f"Paragraph {i}: the dashboard listens on port 8470 [1]. " + "More detail. " * 40 for i in range(9)
    )
    bot.llm.enqueue(Reply(chunks=[text[i : i + 400] for i in range(0, len(text), 400)]))
    await mention(bot, LONG, QUESTION)
    final = await final_answer(bot, LONG)
    posts = fake.posted(LONG)
    everything = posts + fake.edited(LONG)
    assert len(posts) >= 3 and all(len(c.body["content"]) <= 2000 for c in everything)
    assert with_buttons(everything) == [final]  # buttons only under the last part
    assert "Paragraph 8" in final.body["content"] and "Sources" in final.body["content"]


async def test_long_slash_answers_continue_in_follow_up_messages(bot: Bot) -> None:
    fake = bot.fake
    text = "\n\n".join(f"Part {i}: the dashboard listens on port 8470 [1]. " + "More detail. " * 40 for i in range(6))
    bot.llm.enqueue(Reply(chunks=[text[i : i + 400] for i in range(0, len(text), 400)]))
    command = fake.command("ask", SLASH_LONG, author=ALICE, question=QUESTION)
    await fake.dispatch("INTERACTION_CREATE", command)
    followups = rf"/webhooks/\d+/{command['token']}(/messages/\d+)?"
    await fake.until(lambda: with_buttons(fake.rest("POST", followups) + fake.rest("PATCH", followups)))
    original = fake.rest("PATCH", rf"/webhooks/\d+/{command['token']}/messages/{command['id']}")
    assert "Part 0" in original[-1].body["content"] and not with_buttons(original)
    parts = fake.rest("POST", rf"/webhooks/\d+/{command['token']}")
    assert len(parts) >= 2 and all(p.body["flags"] & SUPPRESS_EMBEDS for p in parts)
    (final,) = with_buttons(fake.rest("POST", followups) + fake.rest("PATCH", followups))
    assert "Part 5" in final.body["content"] and "Sources" in final.body["content"]
    assert all(len(c.body["content"]) <= 2000 for c in fake.calls if c.path.startswith("/webhooks/"))


async def test_allowlists_refuse_other_channels_and_members_without_the_role(bot: Bot) -> None:
    fake = bot.fake
    requests = len(bot.llm.chat_requests())
    closed = await mention(bot, STAFF_CLOSED, QUESTION, roles=[STAFF_ROLE])
    no_role = await mention(bot, STAFF_ONLY, QUESTION)
    await fake.until(lambda: len(fake.posted(STAFF_CLOSED)) + len(fake.posted(STAFF_ONLY)) == 2)
    for channel, message in ((STAFF_CLOSED, closed), (STAFF_ONLY, no_role)):
        (refusal,) = fake.posted(channel)
        assert refusal.body["content"] == NOT_ALLOWED
        assert replied_to(refusal) == message["id"]

    command = fake.command("ask", STAFF_CLOSED, author=ALICE, roles=[STAFF_ROLE], question=QUESTION)
    await fake.dispatch("INTERACTION_CREATE", command)
    callback = rf"/interactions/{command['id']}/.+/callback"
    await fake.until(lambda: fake.rest("POST", callback))
    (refused,) = fake.rest("POST", callback)
    assert refused.body["data"]["content"] == NOT_ALLOWED and refused.body["data"]["flags"] & 64
    assert len(bot.llm.chat_requests()) == requests

    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await mention(bot, STAFF_ONLY, QUESTION, roles=[STAFF_ROLE])
    final = await final_answer(bot, STAFF_ONLY)
    record = await bot.answers.get(answer_id(final))
    assert record is not None and record.bot == "staff"


async def test_reset_forgets_the_conversation(bot: Bot) -> None:
    fake = bot.fake
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await mention(bot, RESET, QUESTION)
    await final_answer(bot, RESET)

    command = fake.command("reset", RESET, author=ALICE)
    await fake.dispatch("INTERACTION_CREATE", command)
    callback = rf"/interactions/{command['id']}/.+/callback"
    await fake.until(lambda: fake.rest("POST", callback))
    (done,) = fake.rest("POST", callback)
    assert done.body["data"]["content"] == RESET_DONE and done.body["data"]["flags"] & 64

    requests = len(bot.llm.chat_requests())
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await mention(bot, RESET, QUESTION)
    await final_answer(bot, RESET, count=2)
    assert len(bot.llm.chat_requests()) == requests + 1  # no condensation: no history left

    await mention(bot, RESET, "start over")  # the phrase works too
    await fake.until(lambda: any(c.body["content"] == RESET_DONE for c in fake.posted(RESET)))


async def test_a_mention_alone_gets_the_welcome(bot: Bot) -> None:
    await mention(bot, WELCOME, "")
    await bot.fake.until(lambda: bot.fake.posted(WELCOME))
    (welcome,) = bot.fake.posted(WELCOME)
    assert welcome.body["content"] == "Hi! Ask me about **Kestrel**."  # the bots file's welcome, rendered


async def test_an_error_while_answering_gets_a_short_apology(bot: Bot) -> None:
    await mention(bot, BROKEN, QUESTION)  # thread mode, but the bot may not create threads here (403)
    await bot.fake.until(lambda: bot.fake.posted(BROKEN))
    (apology,) = bot.fake.posted(BROKEN)
    assert apology.body["content"] == APOLOGY


async def test_a_message_replayed_after_resume_is_answered_once(bot: Bot) -> None:
    fake = bot.fake
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    message = await mention(bot, REPLAYED, QUESTION)
    await final_answer(bot, REPLAYED)
    resumes = len(fake.resumes)
    await fake.reconnect()
    await fake.until(lambda: len(fake.resumes) > resumes)
    await fake.dispatch("MESSAGE_CREATE", message)  # Discord replays what it thinks was missed
    bot.llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await bot.fake.dispatch("MESSAGE_CREATE", fake.message(DM_AFTER_REPLAY, QUESTION, author=ALICE))
    await final_answer(bot, DM_AFTER_REPLAY)  # handled after the replay
    assert len(fake.posted(REPLAYED)) == 1


async def test_without_the_message_content_intent_mentions_and_dms_still_work(
    bot_settings: Settings, fake_discord: FakeDiscord, fake_llm: FakeOpenAI
) -> None:
    fake = fake_discord
    with no_unhandled_errors():
        async with running(bot_settings, fake, NO_CONTENT_TOKEN):
            refused, accepted = [i for i in fake.identifies if i["token"] == NO_CONTENT_TOKEN]
            assert refused["intents"] & MESSAGE_CONTENT and not accepted["intents"] & MESSAGE_CONTENT
            bot = Bot(fake, fake_llm, AnswerLog(bot_settings.data_dir / "answers.sqlite3"))
            for channel, text in ((FALLBACK, f"<@{BOT_ID}> {QUESTION}"), (DM_FALLBACK, QUESTION)):
                fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
                message = fake.message(channel, text, author=ALICE, mentions=[BOT_USER] if "<@" in text else [])
                await fake.dispatch("MESSAGE_CREATE", message, token=NO_CONTENT_TOKEN)
                final = await final_answer(bot, channel)
                assert "8470" in final.body["content"]


async def test_a_missing_or_refused_token_fails_with_one_line(
    bot_settings: Settings, fake_discord: FakeDiscord
) -> None:
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN is not set"):
        await run(bot_settings, discord_settings(None))
    with pytest.raises(ConfigError, match="Discord refused DISCORD_BOT_TOKEN"):
        await run(bot_settings, discord_settings(REVOKED_TOKEN))


def test_discord_tables_are_validated_and_threads_default_to_the_setting(
    bot_settings: Settings, tmp_path: Path
) -> None:
    profiles = load_profiles(bot_settings)
    assert load_tables(profiles, "discord", DiscordRules, threads=True)["docs"].threads  # DISCORD_THREADS=true
    rules = load_tables(profiles, "discord", DiscordRules, threads=False)
    assert rules["support"].threads and not rules["docs"].threads
    assert rules["staff"].channels == {str(STAFF_ONLY), str(STAFF_CLOSED)}  # TOML integers or strings
    bots = tmp_path / "bots.toml"
    for table, error in (
        ('allowed_roles = ["@mods"]', r"\[bots.docs.discord\] allowed_roles.0: String should match"),
        ("allowed_role = [1]", r"\[bots.docs.discord\] allowed_role: Extra inputs are not permitted"),
        ('threads = "sometimes"', r"\[bots.docs.discord\] threads: Input should be a valid boolean"),
    ):
        bots.write_text(f'[bots.docs]\nkb = "discord_kb"\n[bots.docs.discord]\n{table}\n')
        with pytest.raises(ConfigError, match=error):
            profiles = load_profiles(bot_settings.model_copy(update={"bots_file": bots}))
            load_tables(profiles, "discord", DiscordRules, threads=False)
