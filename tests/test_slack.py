"""The Slack bot end to end: real slack-bolt and slack_sdk (the HTTP Events API inside the real web server, and
Socket Mode through `bots.slack.run`) against a fake Slack on loopback, the real core over the real Weaviate,
the scripted fake LLM. Listeners run after the ack, so every check polls the fake's call log."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from bots.base import APOLOGY
from bots.slack import ASK_USAGE, EVENTS_PATH, RESET_DONE, THANKS, http_router, run
from core.answers import AnswerLog
from core.config import Settings
from core.embed import Embedder
from core.errors import ConfigError
from core.history import SQLiteHistory
from core.ingest import ingest
from core.kb import KBMeta
from core.rag import STORE_DOWN
from core.store import open_store
from tests.conftest import REPO, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_server import APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, TEAM, Call, FakeSlack
from tests.servers import RunningServer, run_server

SECRET = "test-signing-secret"
QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = ["The dashboard listens ", "on port 8470 [1]."]
LINKS_KB = "slack_links"
BROKEN_KB = "slack_mismatch"
_ids = itertools.count(1)


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
async def links_kb(settings: Settings, embedder: Embedder, host_site: tuple[str, Path]) -> str:
    """A web page (so its citation is a link) and a KB built by another embedder (so answering fails)."""
    origin, root = host_site
    (root / "kestrel-ports.html").write_text(
        "<html><head><title>Kestrel ports</title></head><body><h1>Kestrel ports</h1>"
        "<p>The Kestrel dashboard listens on port 8470 unless the port setting says otherwise.</p></body></html>"
    )
    async with open_store(settings) as store:
        await ingest(store, embedder, [f"{origin}/kestrel-ports.html"], kb=LINKS_KB, settings=settings)
        await store.ensure_kb(
            BROKEN_KB, KBMeta(embed_model="another-model", embed_dim=8, chunk_size=1000, chunk_overlap=0)
        )
    return f"{origin}/kestrel-ports.html"


def slack_settings(settings: Settings, fake_llm: FakeOpenAI, tmp: Path, slack: FakeSlack, **extra: Any) -> Settings:
    """The docs bot by default; channel C0OPS mapped to a bot over the web page, C0BROKEN to the broken KB."""
    base = web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp)
    assert base.bots_file is not None
    base.bots_file.write_text(
        base.bots_file.read_text()
        + f'[bots.ops]\nkb = "{LINKS_KB}"\npersona = "Ops Helper"\n[bots.ops.slack]\nchannels = ["C0OPS"]\n'
        + f'[bots.broken]\nkb = "{BROKEN_KB}"\n[bots.broken.slack]\nchannels = ["C0BROKEN"]\n'
    )
    return base.model_copy(
        update={
            "slack_bot_token": SecretStr(BOT_TOKEN),
            "slack_app_token": SecretStr(APP_TOKEN),
            "slack_signing_secret": SecretStr(SECRET),
            "slack_api_url": slack.api_url,
            "slack_bot": "docs",
            **extra,
        }
    )


@pytest.fixture(scope="module")
def server(
    settings: Settings,
    widget_kb: str,
    links_kb: str,
    fake_llm: FakeOpenAI,
    slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """`switchboard serve` with SLACK_MODE=http: the Events API at POST /slack/events."""
    http = slack_settings(settings, fake_llm, tmp_path_factory.mktemp("slack"), slack, slack_mode="http")
    with run_server(http) as running:
        yield running


# --- Slack's side: payloads, signatures, the call log -----------------------------------------------------


def new_ts() -> str:
    return f"{1_800_000_000 + next(_ids)}.000001"


def callback(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": "legacy-token",
        "team_id": TEAM,
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "event": event,
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


def mention(text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE", **extra: Any) -> dict[str, Any]:
    ts = new_ts()
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}", "ts": ts, "event_ts": ts}
    return event | {"channel": channel, **extra}


def message(text: str, *, channel: str, user: str = "U0ALICE", **extra: Any) -> dict[str, Any]:
    ts = new_ts()
    kind = "im" if channel.startswith("D") else "channel"
    event = {"type": "message", "channel_type": kind, "user": user, "text": text, "ts": ts, "event_ts": ts}
    return event | {"channel": channel, **extra}


def send(
    server: RunningServer,
    body: dict[str, Any] | str,
    *,
    form: bool = False,
    secret: str = SECRET,
    age: int = 0,
    retry: int | None = None,
) -> httpx.Response:
    """POST a signed request as Slack does: JSON events, or form-encoded commands and interactivity."""
    raw = (body if isinstance(body, str) else json.dumps(body)).encode()
    timestamp = str(int(time.time()) - age)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": str(SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=raw)),
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return httpx.post(server.url + EVENTS_PATH, content=raw, headers=headers, timeout=10)


def command(slack: FakeSlack, text: str, *, channel: str = "C0GENERAL") -> str:
    return urlencode(
        {
            "token": "legacy-token",
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": "U0ALICE",
            "command": "/ask",
            "text": text,
            "response_url": f"{slack.url}/hooks/ask{next(_ids)}",
            "trigger_id": f"trigger{next(_ids)}",
        }
    )


def in_thread(slack: FakeSlack, channel: str, thread: str) -> list[Call]:
    """What the bot posted in a thread, and every edit of those messages, in order."""
    posts = slack.of("chat.postMessage", channel=channel, thread_ts=thread)
    edited = {c.result["ts"] for c in posts if "ts" in c.result}
    return [c for c in list(slack.calls) if c in posts or (c.method == "chat.update" and c.params["ts"] in edited)]


def final(slack: FakeSlack, channel: str, thread: str) -> Call | None:
    """The end of an answer: the call that put the feedback buttons on it."""
    done = [c for c in in_thread(slack, channel, thread) if c.params.get("blocks") and c.status == 200]
    return done[-1] if done else None


def wait_final(slack: FakeSlack, channel: str, thread: str, timeout: float = 30.0) -> dict[str, Any]:
    call: Call = slack.wait_for(lambda: final(slack, channel, thread), timeout)
    return call.params


def texts(slack: FakeSlack, channel: str, thread: str) -> list[str]:
    return [str(c.params.get("text", "")) for c in in_thread(slack, channel, thread)]


def ask(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI, channel: str, answer: str = "".join(ANSWER)
) -> str:
    """A direct message answered to the end; returns its thread."""
    fake_llm.enqueue(Reply(chunks=[answer]))
    event = message(QUESTION, channel=channel)
    assert send(server, callback(event)).status_code == 200
    wait_final(slack, channel, event["ts"])
    return str(event["ts"])


# --- HTTP mode (the Events API on `switchboard serve`) -------------------------------------------------------


def test_url_verification_and_request_signatures(server: RunningServer, slack: FakeSlack) -> None:
    challenge = {"token": "legacy-token", "challenge": "c-123", "type": "url_verification"}
    response = send(server, challenge)
    assert response.status_code == 200 and "c-123" in response.text

    event = mention(QUESTION, channel="C0SIGNED")
    assert send(server, callback(event), secret="not-the-secret").status_code == 401
    assert send(server, callback(event), age=10 * 60).status_code == 401, "a replayed (stale) request"
    unsigned = httpx.post(server.url + EVENTS_PATH, json=callback(event), timeout=10)
    assert unsigned.status_code == 401
    time.sleep(1)
    assert texts(slack, "C0SIGNED", event["ts"]) == []


def test_mention_streams_the_answer_in_its_thread_with_sources_and_feedback(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=[ANSWER[0], ".", ".", ANSWER[1]], stall_after=1, stall_seconds=1.8))
    event = mention(QUESTION)
    started = time.monotonic()
    assert send(server, callback(event)).status_code == 200
    assert time.monotonic() - started < 3, "Slack's 3-second ack"
    last = wait_final(slack, "C0GENERAL", event["ts"])

    calls = in_thread(slack, "C0GENERAL", event["ts"])
    assert calls[0].method == "chat.postMessage" and "Thinking" in calls[0].params["text"]
    assert all(c.method == "chat.update" for c in calls[1:]) and len(calls) >= 3, "preview edit(s), then final"
    assert calls[1].params["text"].startswith("The dashboard listens") and "blocks" not in calls[1].params
    assert "port 8470 [1]" in last["text"] and "*Sources:*\n[1] " in last["text"]
    assert str(REPO) not in last["text"], "local files are cited by title, never by server path"
    section, context, actions = last["blocks"]
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": last["text"]}}
    assert context["elements"][0]["text"].startswith("Answered by Kestrel Helper from the _widget_kb_")
    assert [(b["text"]["text"], b["value"].split(":")[0]) for b in actions["elements"]] == [
        ("👍", "up"),
        ("👎", "down"),
    ]


def test_channel_mapping_picks_the_bot_and_web_sources_become_links(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI, links_kb: str
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    event = mention(QUESTION, channel="C0OPS")
    assert send(server, callback(event)).status_code == 200
    last = wait_final(slack, "C0OPS", event["ts"])
    assert f"[1] <{links_kb}|Kestrel ports" in last["text"]
    assert last["blocks"][1]["elements"][0]["text"].startswith("Answered by Ops Helper from the _slack_links_")


def test_direct_messages_are_answered_in_thread_and_the_dm_is_one_conversation(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    first = ask(server, slack, fake_llm, "D0ALICE")
    assert "port 8470" in texts(slack, "D0ALICE", first)[-1]
    # A new top-level DM continues the same conversation: the model sees the earlier turn.
    fake_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["It is set in `kestrel.toml` [1]."]))
    follow_up = message("And where do I change it?", channel="D0ALICE")
    assert send(server, callback(follow_up)).status_code == 200
    assert "kestrel.toml" in wait_final(slack, "D0ALICE", follow_up["ts"])["text"]
    history = [m["content"] for m in fake_llm.chat_requests()[-1]["messages"]]
    assert any("port 8470" in m for m in history)


def test_thread_follow_ups_need_no_mention_and_reset_forgets(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    start = mention(QUESTION, channel="C0THREADS")
    thread = start["ts"]
    send(server, callback(start))
    wait_final(slack, "C0THREADS", thread)

    # Not answered: a thread the bot never answered in, and a top-level channel message.
    stranger = message(QUESTION, channel="C0THREADS", thread_ts=new_ts())
    top_level = message(QUESTION, channel="C0THREADS")
    assert send(server, callback(stranger)).status_code == send(server, callback(top_level)).status_code == 200

    fake_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["Set `port` in `kestrel.toml` [1]."]))
    follow_up = message("How do I change it?", channel="C0THREADS", thread_ts=thread)
    send(server, callback(follow_up))
    slack.wait_for(lambda: len([c for c in in_thread(slack, "C0THREADS", thread) if c.params.get("blocks")]) == 2)
    assert "kestrel.toml" in texts(slack, "C0THREADS", thread)[-1]
    assert texts(slack, "C0THREADS", stranger["thread_ts"]) == texts(slack, "C0THREADS", top_level["ts"]) == []

    conversation = f"{TEAM}:C0THREADS:{thread}"
    history = SQLiteHistory(server.settings.data_dir / "history.sqlite3", 10)
    assert len(asyncio.run(history.load("slack", conversation))) == 4
    send(server, callback(message("Reset!", channel="C0THREADS", thread_ts=thread)))
    slack.wait_for(lambda: RESET_DONE in texts(slack, "C0THREADS", thread)[-1])
    assert asyncio.run(history.load("slack", conversation)) == []


def test_redelivered_events_are_answered_once(server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER, stall_before=1.5))
    asked = len(fake_llm.chat_requests())
    body = callback(mention(QUESTION, channel="C0RETRY"))
    thread = body["event"]["ts"]
    assert send(server, body).status_code == 200
    assert send(server, body, retry=1).status_code == 200, "redelivered while the first answer still runs"
    wait_final(slack, "C0RETRY", thread)
    assert send(server, body, retry=2).status_code == 200, "and after it finished"
    # The same message as a second event (a new event_id) is the same question too.
    assert send(server, callback(body["event"])).status_code == 200
    time.sleep(1.5)
    posts = slack.of("chat.postMessage", channel="C0RETRY", thread_ts=thread)
    assert len(posts) == 1 and len(fake_llm.chat_requests()) == asked + 1


def test_own_and_other_bots_messages_are_ignored(server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI) -> None:
    own = message("The dashboard listens on port 8470.", channel="D0BOTS", user=BOT_USER, bot_id=BOT_ID)
    other = message("I am another bot", channel="D0BOTS", subtype="bot_message", bot_id="B0OTHER")
    other_user = message("I am a bot with a user", channel="D0BOTS", user="U0OTHER", bot_id="B0OTHER")
    other_mention = mention(QUESTION, channel="C0BOTS", user="U0OTHER", bot_id="B0OTHER")
    for event in (own, other, other_user, other_mention):
        assert send(server, callback(event)).status_code == 200
    ask(server, slack, fake_llm, "D0BOTS")  # a person still gets an answer, after the others were dropped
    for event in (own, other, other_user, other_mention):
        assert texts(slack, event["channel"], event["ts"]) == []


def test_rate_limited_calls_are_retried_after_retry_after(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    slack.rate_limit("chat.update", times=2)
    thread = ask(server, slack, fake_llm, "D0LIMITS")
    updates = [c for c in in_thread(slack, "D0LIMITS", thread) if c.method == "chat.update"]
    assert [c.status for c in updates[:2]] == [429, 429] and updates[-1].status == 200
    assert "port 8470" in updates[-1].params["text"]


def test_feedback_buttons_are_stored_with_the_answer(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    # A long answer in a non-Latin script: the click's payload repeats it twice, URL-encoded (~30 KB).
    thread = ask(server, slack, fake_llm, "D0FEEDBACK", "Панель Kestrel слушает порт 8470 [1]. " * 60)
    answer = final(slack, "D0FEEDBACK", thread)
    assert answer is not None
    down = answer.params["blocks"][2]["elements"][1]
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": "U0ALICE"},
        "channel": {"id": "D0FEEDBACK"},
        "container": {"type": "message", "channel_id": "D0FEEDBACK", "message_ts": answer.result["ts"]}
        | {"thread_ts": thread},
        "message": {"ts": answer.result["ts"], "thread_ts": thread} | {k: answer.params[k] for k in ("text", "blocks")},
        "actions": [down | {"block_id": "b1", "action_ts": new_ts()}],
        "trigger_id": "trigger",
        "api_app_id": "A0APP",
        "token": "legacy-token",
    }
    body = urlencode({"payload": json.dumps(payload)})
    assert len(body) > server.settings.max_body_bytes
    assert send(server, body, form=True).status_code == 200
    slack.wait_for(lambda: slack.of("chat.postEphemeral", channel="D0FEEDBACK", user="U0ALICE"))
    assert slack.of("chat.postEphemeral", channel="D0FEEDBACK")[-1].params["text"] == THANKS
    feedback = asyncio.run(AnswerLog(server.settings.data_dir / "answers.sqlite3").feedback(down["value"][5:]))
    assert feedback is not None and feedback.rating == "down"


def test_ask_command_posts_the_question_and_answers_in_its_thread(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    assert ASK_USAGE in send(server, command(slack, ""), form=True).text
    assert RESET_DONE in send(server, command(slack, "reset"), form=True).text

    fake_llm.enqueue(Reply(chunks=ANSWER))
    assert send(server, command(slack, QUESTION, channel="C0ASK"), form=True).status_code == 200
    asked = slack.wait_for(lambda: slack.of("chat.postMessage", channel="C0ASK"))[0]
    assert asked.params["text"] == f"<@U0ALICE> asked: {QUESTION}" and "thread_ts" not in asked.params
    assert "port 8470" in wait_final(slack, "C0ASK", asked.result["ts"])["text"]


def test_failures_get_a_short_apology_never_silence(
    server: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    # The core fails: this channel's bot has a KB built by another embedding model.
    event = mention(QUESTION, channel="C0BROKEN")
    send(server, callback(event))
    slack.wait_for(lambda: texts(slack, "C0BROKEN", event["ts"])[-1:] == [STORE_DOWN])

    # Slack refuses: /ask in a private channel the app was not invited to.
    slack.fail("chat.postMessage", "not_in_channel")
    body = command(slack, QUESTION, channel="G0PRIVATE")
    send(server, body, form=True)
    hook = "hook:" + body.split("hooks%2F")[1].split("&")[0]
    reply = slack.wait_for(lambda: slack.of(hook))[0]
    assert reply.params["text"] == APOLOGY and reply.params["response_type"] == "ephemeral"


# --- Socket Mode (`switchboard bot slack`) ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def socket_mode(
    settings: Settings,
    widget_kb: str,
    links_kb: str,
    fake_llm: FakeOpenAI,
    slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    """`bots.slack.run`, the function behind `switchboard bot slack`, connected to the fake's websocket."""
    bot = slack_settings(settings, fake_llm, tmp_path_factory.mktemp("socket"), slack, slack_ask_ephemeral=True)
    task = asyncio.create_task(run(bot))
    await asyncio.to_thread(slack.wait_for, lambda: slack.connected, 120)
    yield bot
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def envelope(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"envelope_id": f"env-{next(_ids)}", "type": kind, "payload": payload, "accepts_response_payload": True}


async def test_socket_mode_acks_envelopes_and_answers(
    socket_mode: Settings, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    assert slack.of("apps.connections.open")[-1].token == APP_TOKEN
    fake_llm.enqueue(Reply(chunks=ANSWER))
    event = message(QUESTION, channel="D0SOCKET")
    sent = envelope("events_api", callback(event))
    slack.send(sent)
    await asyncio.to_thread(slack.wait_for, lambda: final(slack, "D0SOCKET", event["ts"]))
    assert any(a.get("envelope_id") == sent["envelope_id"] for a in slack.acks)
    assert "port 8470" in texts(slack, "D0SOCKET", event["ts"])[-1]


async def test_socket_mode_private_ask_answers_only_the_asker(
    socket_mode: Settings, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    hook = f"ask{next(_ids)}"
    payload = {"team_id": TEAM, "channel_id": "C0SOCKET", "user_id": "U0ALICE", "command": "/ask", "text": QUESTION}
    sent = envelope("slash_commands", payload | {"response_url": f"{slack.url}/hooks/{hook}", "trigger_id": "t1"})
    slack.send(sent)
    reply = await asyncio.to_thread(slack.wait_for, lambda: slack.of(f"hook:{hook}"))
    ack = next(a for a in slack.acks if a.get("envelope_id") == sent["envelope_id"])
    assert "Thinking" in ack["payload"]["text"], "acknowledged at once, visible only to the asker"
    params = reply[0].params
    assert params["response_type"] == "ephemeral" and "port 8470" in params["text"]
    assert params["blocks"][2]["elements"][0]["value"].startswith("up:")
    assert slack.of("chat.postMessage", channel="C0SOCKET") == [], "nothing public"


# --- configuration ----------------------------------------------------------------------------------------


async def test_missing_tokens_and_the_wrong_mode_are_one_line_errors(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN is not set"):
        await run(settings)
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN must start with xoxb-"):
        await run(
            settings.model_copy(update={"slack_app_token": SecretStr(APP_TOKEN), "slack_bot_token": SecretStr("x")})
        )
    with pytest.raises(ConfigError, match="switchboard serve"):
        await run(settings.model_copy(update={"slack_mode": "http"}))
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        http_router(settings.model_copy(update={"slack_mode": "http", "slack_bot_token": SecretStr(BOT_TOKEN)}))


async def test_refused_tokens_stop_the_bot_with_a_one_line_error(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, slack: FakeSlack, tmp_path: Path
) -> None:
    slack.fail("auth.test", "invalid_auth")
    with pytest.raises(ConfigError, match=r"Slack refused to connect \(invalid_auth\): check SLACK_BOT_TOKEN"):
        await run(slack_settings(settings, fake_llm, tmp_path, slack))


def test_app_manifest_asks_for_what_the_bot_uses() -> None:
    manifest = yaml.safe_load((REPO / "docs" / "slack-app-manifest.yaml").read_text())
    assert {"app_mention", "message.im", "message.channels"} <= set(
        manifest["settings"]["event_subscriptions"]["bot_events"]
    )
    assert {"app_mentions:read", "chat:write", "im:history", "channels:history", "commands"} <= set(
        manifest["oauth_config"]["scopes"]["bot"]
    )
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/ask"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
