"""The Slack bot end to end: real slack-bolt and slack_sdk (the HTTP Events API inside the real web server, and
Socket Mode through `bots.slack.run`) against a fake Slack on loopback, the real core over the real Weaviate,
the scripted fake LLM. Listeners run after the ack, so every check polls the fake's call log.

Two web servers: `server` streams post-then-edit (SLACK_STREAMING=edit), `native` with Slack's streaming API
(the default); Socket Mode runs with the default too."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier

from bots.base import APOLOGY, THANKS
from bots.settings import SlackSettings
from bots.slack import EVENTS_PATH, SlackWebhook, run
from bots.slack.listeners import ASK_USAGE, RESET_DONE
from bots.slack.streaming import FENCE, STREAM_LIMIT
from core.answer.assistant import STORE_DOWN
from core.answer.history import SQLiteHistory
from core.answer.log import AnswerLog
from core.config import Settings
from core.embed import Embedder
from core.errors import ConfigError
from core.ingest.pipeline import ingest
from core.kb import KBMeta
from core.store.client import open_store
from tests.conftest import loopback_allowed, real_errors, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_server import APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, TEAM, Call, FakeSlack
from tests.servers import RunningServer, run_server
from tests.support import REPO
from tests.support.adapters import adapter_settings
from widget.webhooks import Webhooks

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
        await ingest(
            store, embedder, [f"{origin}/kestrel-ports.html"], kb=LINKS_KB, settings=loopback_allowed(settings)
        )
        await store.ensure_kb(
            BROKEN_KB, KBMeta(embed_model="another-model", embed_dim=8, chunk_size=1000, chunk_overlap=0)
        )
    return f"{origin}/kestrel-ports.html"


def bot_settings(settings: Settings, fake_llm: FakeOpenAI, tmp: Path) -> Settings:
    """Channel C0OPS mapped to a bot over the web page, C0BROKEN to the broken KB."""
    base = web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp)
    assert base.bots_file is not None
    base.bots_file.write_text(
        base.bots_file.read_text()
        + f'[bots.ops]\nkb = "{LINKS_KB}"\npersona = "Ops Helper"\n[bots.ops.slack]\nchannels = ["C0OPS"]\n'
        + f'[bots.broken]\nkb = "{BROKEN_KB}"\n[bots.broken.slack]\nchannels = ["C0BROKEN"]\n'
    )
    return base


def slack_settings(slack: FakeSlack, **extra: Any) -> SlackSettings:
    """The app's tokens, against the fake; the docs bot by default."""
    return adapter_settings(
        SlackSettings,
        bot_token=SecretStr(BOT_TOKEN),
        app_token=SecretStr(APP_TOKEN),
        signing_secret=SecretStr(SECRET),
        api_url=slack.api_url,
        bot="docs",
        **extra,
    )


@pytest.fixture(scope="module")
def servers(
    settings: Settings,
    widget_kb: str,
    links_kb: str,
    fake_llm: FakeOpenAI,
    slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, RunningServer]]:
    """`switchboard serve` with SLACK_MODE=http (the Events API at POST /slack/events), once per
    SLACK_STREAMING: post-then-edit, and Slack's streaming API (the default)."""
    with ExitStack() as stack:

        def start(mode: str) -> RunningServer:
            tmp = tmp_path_factory.mktemp(mode)
            http = Webhooks(slack=slack_settings(slack, mode="http", streaming=mode))
            return stack.enter_context(run_server(bot_settings(settings, fake_llm, tmp), http))

        yield {mode: start(mode) for mode in ("edit", "native")}


@pytest.fixture(scope="module")
def server(servers: dict[str, RunningServer]) -> RunningServer:
    return servers["edit"]


@pytest.fixture(scope="module")
def native(servers: dict[str, RunningServer]) -> RunningServer:
    return servers["native"]


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


def streamed(slack: FakeSlack, channel: str, thread: str) -> list[tuple[list[str], Call | None]]:
    """Each message streamed into a thread: the Markdown of its appends, and the call that stopped it."""
    messages = []
    for start in slack.of("chat.startStream", channel=channel, thread_ts=thread):
        if start.result["ok"]:
            ts = start.result["ts"]
            appends = [c.params["markdown_text"] for c in slack.of("chat.appendStream", ts=ts) if c.result["ok"]]
            stops = [c for c in slack.of("chat.stopStream", ts=ts) if c.result["ok"]]
            messages.append((appends, stops[0] if stops else None))
    return messages


def wait_streamed(
    slack: FakeSlack, channel: str, thread: str, *, feedback: bool = True
) -> list[tuple[list[str], Call | None]]:
    """The streamed messages once the last one is stopped (with the feedback buttons, unless told otherwise)."""

    def finished() -> list[tuple[list[str], Call | None]] | None:
        messages = streamed(slack, channel, thread)
        stop = messages[-1][1] if messages else None
        return messages if stop and (stop.params.get("blocks") or not feedback) else None

    result: list[tuple[list[str], Call | None]] = slack.wait_for(finished)
    return result


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


def test_forged_and_malformed_requests_are_refused_with_one_log_line_and_no_traceback(
    server: RunningServer, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    url, now = server.url + EVENTS_PATH, str(int(time.time()))
    actionless = urlencode({"payload": json.dumps({"type": "block_actions", "actions": None, "user": {"id": "U0"}})})
    with caplog.at_level(logging.INFO):
        unauthenticated = [
            httpx.post(url, content=b"{}", headers={"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=0"}),
            httpx.post(
                url,
                content=b"{}",
                headers=[(b"X-Slack-Request-Timestamp", now.encode()), (b"X-Slack-Signature", "v0=ü".encode())],
            ),
            httpx.post(url, content=b"[1,2", headers={"Content-Type": "application/json"}),
            httpx.post(url, content=b"\xff{}", headers={"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=0"}),
        ]
        malformed = [send(server, body) for body in ('{"event":null}', "[1,2", "[1]", "null")]
        malformed.append(send(server, actionless, form=True))
    assert [r.status_code for r in unauthenticated] == [401] * 4
    assert [r.status_code for r in malformed] == [400] * 5
    assert "event: Input should be a valid dictionary" in malformed[0].json()["detail"]
    refusals = [r for r in caplog.records if r.name == "bots.webhooks"]
    assert len(refusals) == 9 and all("slack webhook: refused" in r.getMessage() for r in refusals)
    assert not real_errors(caplog.records)  # no record carries a traceback (exc_info) or is an error


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
    assert slack.of("chat.startStream", thread_ts=event["ts"]) == [], "SLACK_STREAMING=edit"
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


# --- Slack's streaming API (SLACK_STREAMING=native, the default) ---------------------------------------------


def test_an_org_wide_install_streams_with_the_organisation_as_the_recipient_team(
    native: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    """Enterprise Grid: an org-wide install's events name the organisation, not a team, in their
    authorizations, so bolt's context has no team_id."""
    org = "E0GRID"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    event = mention(QUESTION, channel="C0GRID")
    grant = {"enterprise_id": org, "team_id": None, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": True}
    body = callback(event) | {"enterprise_id": org, "authorizations": [grant]}
    assert send(native, body).status_code == 200
    [(appends, _)] = wait_streamed(slack, "C0GRID", event["ts"])

    start = slack.of("chat.startStream", channel="C0GRID")[0].params
    assert (start["recipient_team_id"], start["recipient_user_id"]) == (org, "U0ALICE")
    assert "".join(appends) == "".join(ANSWER) and in_thread(slack, "C0GRID", event["ts"]) == []
    answers = AnswerLog(native.settings.data_dir / "answers.sqlite3")
    assert len(asyncio.run(answers.conversation("slack", f"{org}:C0GRID:{event['ts']}"))) == 1
    assert asyncio.run(answers.conversation("slack", f":C0GRID:{event['ts']}")) == []


def test_native_streaming_appends_the_answer_and_stops_with_sources_and_feedback(
    native: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    assert SlackSettings.model_fields["streaming"].default == "native", "the default"
    chunks = [ANSWER[0], *ANSWER[1]]  # then one character a chunk, after a pause
    fake_llm.enqueue(Reply(chunks=chunks, stall_after=1, stall_seconds=1.5))
    event = mention(QUESTION, channel="C0NATIVE")
    assert send(native, callback(event)).status_code == 200
    [(appends, stop)] = wait_streamed(slack, "C0NATIVE", event["ts"])

    start = slack.of("chat.startStream", channel="C0NATIVE")[0].params
    assert (start["recipient_team_id"], start["recipient_user_id"]) == (TEAM, "U0ALICE")
    assert appends[0] == ANSWER[0], "streamed while the model was still writing"
    assert "".join(appends) == "".join(ANSWER), "each append carries only what is new"
    assert len(appends) < len(chunks) // 2, "appends are batched, not one per token"
    assert stop is not None and "markdown_text" not in stop.params
    assert stop.result["message"]["text"] == "".join(ANSWER)
    sources, context, actions = stop.params["blocks"]
    assert sources["text"]["text"].startswith("*Sources:*\n[1] ") and str(REPO) not in sources["text"]["text"]
    assert context["elements"][0]["text"].startswith("Answered by Kestrel Helper from the _widget_kb_")
    assert [(b["text"]["text"], b["value"].split(":")[0]) for b in actions["elements"]] == [
        ("👍", "up"),
        ("👎", "down"),
    ]
    answer_id = actions["elements"][0]["value"].removeprefix("up:")
    assert asyncio.run(AnswerLog(native.settings.data_dir / "answers.sqlite3").get(answer_id)) is not None
    assert in_thread(slack, "C0NATIVE", event["ts"]) == [], "no post-then-edit"


def test_native_streaming_continues_a_long_answer_in_new_messages(
    native: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    prose = "\n\n".join(f"Paragraph {i}: the dashboard listens on port 8470 by default [1]." for i in range(140))
    code = "\n".join(f"port_{i} = 8470  # {'x' * 40}" for i in range(80))
    answer = f"{prose}\n\n{FENCE}toml\n{code}\n{FENCE}\n\nThat is all [1]."
    assert 9000 < len(prose) < STREAM_LIMIT < len(answer), "the cut falls inside the code block"
    fake_llm.enqueue(Reply(chunks=[answer[i : i + 700] for i in range(0, len(answer), 700)]))
    event = mention(QUESTION, channel="C0LONG")
    send(native, callback(event))
    messages = wait_streamed(slack, "C0LONG", event["ts"])

    assert len(messages) == 2
    texts = ["".join(appends) for appends, _ in messages]
    assert all(len(t) <= STREAM_LIMIT for t in texts)
    assert all(sum(line.startswith(FENCE) for line in t.split("\n")) % 2 == 0 for t in texts), "code blocks closed"
    assert "".join(texts).replace(FENCE + FENCE + "\n", "", 1) == answer, "nothing lost, nothing repeated"
    first_stop, last_stop = messages[0][1], messages[1][1]
    assert first_stop is not None and "blocks" not in first_stop.params
    assert last_stop is not None and last_stop.params["blocks"][-1]["type"] == "actions"


def test_native_streaming_failures_end_with_the_reason_and_a_broken_stream_is_finished_by_chat_update(
    native: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    # The core fails before any text: the reason is streamed, without sources or buttons.
    event = mention(QUESTION, channel="C0BROKEN")
    send(native, callback(event))
    [(appends, stop)] = wait_streamed(slack, "C0BROKEN", event["ts"], feedback=False)
    assert appends == [STORE_DOWN] and stop is not None and "blocks" not in stop.params

    # Slack ends the stream early (it expired): the message is replaced with the whole answer, as edited.
    slack.fail("chat.stopStream", "message_not_in_streaming_state")
    fake_llm.enqueue(Reply(chunks=ANSWER))
    event = mention(QUESTION, channel="C0EXPIRED")
    send(native, callback(event))
    [ts] = [c.result["ts"] for c in slack.wait_for(lambda: slack.of("chat.startStream", channel="C0EXPIRED"))]
    update = slack.wait_for(lambda: slack.of("chat.update", channel="C0EXPIRED", ts=ts))[-1].params
    assert "port 8470 [1]" in update["text"] and "*Sources:*\n[1] " in update["text"]
    assert update["blocks"][-1]["elements"][0]["value"].startswith("up:")


def test_a_follow_up_while_the_first_answer_still_streams_is_answered(
    native: RunningServer, slack: FakeSlack, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER, stall_after=1, stall_seconds=2.5))  # < llm_timeout (3 s)
    start = mention(QUESTION, channel="C0BUSY")
    thread = start["ts"]
    send(native, callback(start))
    slack.wait_for(lambda: any(appends for appends, _ in streamed(slack, "C0BUSY", thread)))

    fake_llm.enqueue(Reply(chunks=["Set `port` in `kestrel.toml` [1]."]))
    follow_up = message(f"Also: {QUESTION}", channel="C0BUSY", thread_ts=thread)  # no history yet to lean on
    send(native, callback(follow_up))
    slack.wait_for(lambda: len(streamed(slack, "C0BUSY", thread)) == 2)
    assert streamed(slack, "C0BUSY", thread)[0][1] is None, "answered while the first answer was still streaming"
    slack.wait_for(lambda: all(stop for _, stop in streamed(slack, "C0BUSY", thread)))
    [(first, _), (second, _)] = wait_streamed(slack, "C0BUSY", thread)
    assert ("".join(first), "".join(second)) == ("".join(ANSWER), "Set `port` in `kestrel.toml` [1].")

    # A thread another process started answering in counts too: the mark is in the shared answer log.
    other = new_ts()
    asyncio.run(AnswerLog(native.settings.data_dir / "answers.sqlite3").engage("slack", f"{TEAM}:C0BUSY:{other}"))
    fake_llm.enqueue(Reply(chunks=ANSWER))
    send(native, callback(message(QUESTION, channel="C0BUSY", thread_ts=other)))
    wait_streamed(slack, "C0BUSY", other)
    assert not fake_llm.script, "every scripted reply was asked for"


def test_a_refused_stream_falls_back_to_post_and_edit_for_the_rest_of_the_process(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    slack: FakeSlack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its own server: the refusal is remembered by the process's bot."""
    slack.refuse_streams = "unknown_method"
    try:
        http = Webhooks(slack=slack_settings(slack, mode="http"))
        core = bot_settings(settings, fake_llm, tmp_path)
        with run_server(core, http) as refused, caplog.at_level(logging.WARNING, logger="bots.slack"):
            for channel in ("C0REFUSED", "C0REFUSED2"):
                fake_llm.enqueue(Reply(chunks=ANSWER))
                event = mention(QUESTION, channel=channel)
                send(refused, callback(event))
                assert "port 8470 [1]" in wait_final(slack, channel, event["ts"])["text"]
                assert "Thinking" in texts(slack, channel, event["ts"])[0], "post-then-edit"
    finally:
        slack.refuse_streams = None
    assert len(slack.of("chat.startStream", channel="C0REFUSED")) == 1
    assert slack.of("chat.startStream", channel="C0REFUSED2") == [], "not asked again"
    assert [r.getMessage() for r in caplog.records if "refused to stream" in r.getMessage()] == [
        "Slack refused to stream answers (unknown_method): using post-then-edit from now on"
    ]


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
    bot = bot_settings(settings, fake_llm, tmp_path_factory.mktemp("socket"))
    task = asyncio.create_task(run(bot, slack_settings(slack, ask_ephemeral=True)))
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
    [(appends, _)] = await asyncio.to_thread(wait_streamed, slack, "D0SOCKET", event["ts"])
    assert any(a.get("envelope_id") == sent["envelope_id"] for a in slack.acks)
    assert "".join(appends) == "".join(ANSWER), "streamed with Slack's API, the default"


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
    assert slack.of("chat.startStream", channel="C0SOCKET") == [], "ephemeral answers cannot stream"


# --- configuration ----------------------------------------------------------------------------------------


async def test_missing_tokens_and_the_wrong_mode_are_one_line_errors(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN is not set"):
        await run(settings, adapter_settings(SlackSettings))
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN must start with xoxb-"):
        await run(settings, adapter_settings(SlackSettings, app_token=SecretStr(APP_TOKEN), bot_token=SecretStr("x")))
    with pytest.raises(ConfigError, match="switchboard serve"):
        await run(settings, adapter_settings(SlackSettings, mode="http"))
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET is not set"):
        SlackWebhook(adapter_settings(SlackSettings, mode="http", bot_token=SecretStr(BOT_TOKEN)))


async def test_refused_tokens_stop_the_bot_with_a_one_line_error(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, slack: FakeSlack, tmp_path: Path
) -> None:
    slack.fail("auth.test", "invalid_auth")
    with pytest.raises(ConfigError, match=r"Slack refused to connect \(invalid_auth\): check SLACK_BOT_TOKEN"):
        await run(bot_settings(settings, fake_llm, tmp_path), slack_settings(slack))


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
