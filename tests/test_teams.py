"""The Teams bot end to end: real signed activities POSTed to /teams/messages on the real web server, its
replies going to a fake Teams on loopback (token endpoint, OpenID metadata + JWKS, Bot Connector REST API), the
real core over the real Weaviate, the scripted fake LLM. Messages are answered after the 200, so checks poll
the fake's call log."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import struct
import subprocess
import tarfile
import time
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from pydantic import SecretStr

from bots.base import THANKS
from bots.settings import TeamsSettings
from bots.teams import MESSAGES_PATH
from bots.teams.activities import FEEDBACK_KEY
from bots.teams.answer_ids import create_answer_ids
from bots.teams.auth import InboundAuth, Unauthorized
from bots.teams.bot import RESET_DONE
from bots.teams.channel import MESSAGE_LIMIT
from core.answer.log import AnswerLog
from core.config import Settings
from core.errors import ConfigError
from tests.conftest import StateBackend, real_errors, shared, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.teams_server import (
    APP_ID,
    APP_PASSWORD,
    BOT,
    MALFORMED_KEY_ID,
    TENANT,
    WEBCHAT_KEY_ID,
    Call,
    FakeTeams,
    _key,
)
from tests.servers import RunningServer, run_server
from tests.support import REPO
from tests.support.adapters import adapter_settings
from widget.webhooks import Webhooks

QUESTION = "Which port does the Kestrel dashboard listen on?"
MAPPED = "19:ops@thread.tacv2"  # a channel the bots file maps to the `ops` bot
ANSWER = ["The dashboard listens ", "on port 8470 [1]."]


@pytest.fixture(scope="module")
def teams() -> Iterator[FakeTeams]:
    fake = FakeTeams().start()
    yield fake
    fake.stop()


def teams_settings(teams: FakeTeams, **extra: Any) -> TeamsSettings:
    return adapter_settings(
        TeamsSettings,
        app_id=APP_ID,
        app_password=SecretStr(APP_PASSWORD),
        tenant_id=TENANT,
        login_url=teams.url,
        openid_url=teams.openid_url,
        bot="docs",
        **extra,
    )


@pytest.fixture(scope="module")
def servers(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, teams: FakeTeams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningServer]]:
    """`switchboard serve` with TEAMS_* set, once per TEAMS_STREAMING: Teams' streaming protocol (the default)
    and post-then-update."""
    with ExitStack() as stack:

        def start(mode: str) -> RunningServer:
            tmp = tmp_path_factory.mktemp(f"teams-{mode}")
            base = web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp)
            assert base.bots_file is not None
            base.bots_file.write_text(
                base.bots_file.read_text()
                + f'[bots.ops]\nkb = "{widget_kb}"\nwelcome = "Ops desk here."\n'
                + f'[bots.ops.teams]\nconversations = ["{MAPPED}"]\n'
            )
            return stack.enter_context(run_server(base, Webhooks(teams=teams_settings(teams, streaming=mode))))

        yield {mode: start(mode) for mode in ("native", "edit")}


@pytest.fixture(scope="module")
def server(servers: dict[str, RunningServer]) -> RunningServer:
    return servers["native"]


# --- Teams' side: activities, tokens, the call log -----------------------------------------------------------


def send(
    server: RunningServer, teams: FakeTeams, body: dict[str, Any] | bytes, token: str | None = ""
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    token = teams.token() if token == "" else token
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.url + MESSAGES_PATH, content=raw, headers=headers, timeout=30)


def final(teams: FakeTeams, conversation: str) -> Call | None:
    """The last message carrying 👍/👎 in a conversation: Teams' feedback loop or the sources card."""
    done = [
        c
        for c in teams.of(conversation)
        if c.status == 200 and (c.body.get("channelData", {}).get("feedbackLoopEnabled") or c.body.get("attachments"))
    ]
    return done[-1] if done else None


def wait_final(teams: FakeTeams, conversation: str) -> Call:
    call: Call = teams.wait_for(lambda: final(teams, conversation))
    return call


def ask(server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI) -> tuple[dict[str, Any], Call]:
    fake_llm.enqueue(Reply(chunks=["".join(ANSWER)]))
    event = teams.activity(QUESTION)
    assert send(server, teams, event).status_code == 200
    return event, wait_final(teams, event["conversation"]["id"])


# --- authentication --------------------------------------------------------------------------------------------


def test_unsigned_wrongly_signed_expired_or_misaddressed_tokens_are_refused_before_the_body_is_read(
    server: RunningServer, teams: FakeTeams, caplog: pytest.LogCaptureFixture
) -> None:
    event = teams.activity(QUESTION)
    claims = {"iss": "https://api.botframework.com", "aud": APP_ID, "exp": time.time() + 60}
    unsigned = jwt.encode(claims, "", "none")
    hmac = jwt.encode(claims, "x" * 32, "HS256")
    with caplog.at_level(logging.INFO):
        refused = {
            "no token": send(server, teams, event, token=None),
            "not a JWT": send(server, teams, event, token="garbage"),
            "unsigned": send(server, teams, event, token=unsigned),
            "HMAC": send(server, teams, event, token=hmac),
            "another key": send(server, teams, event, token=teams.token(key=_key())),
            "unknown key id": send(server, teams, event, token=teams.token(kid="other")),
            "expired": send(server, teams, event, token=teams.token(expires_in=-3600)),
            "another bot": send(server, teams, event, token=teams.token(audience="another-app")),
            "another issuer": send(server, teams, event, token=teams.token(issuer="https://evil.example")),
            "another service": send(server, teams, event, token=teams.token(service_url="http://127.0.0.1:9/")),
            "unreadable, unsigned": send(server, teams, b"{not json", token=None),
        }
        unreadable = send(server, teams, b"{not json")
        wrong_shape = send(server, teams, {"type": "message", "conversation": None})
    assert {name: r.status_code for name, r in refused.items()} == {name: 401 for name in refused}
    fetched = teams.keys_fetched
    made_up = [send(server, teams, event, token=teams.token(kid=f"made-up-{i}")).status_code for i in range(5)]
    assert made_up == [401] * 5 and teams.keys_fetched <= fetched + 1, "unknown key ids refetch once per cooldown"
    assert "expired" in refused["expired"].json()["detail"]
    assert unreadable.status_code == 400 and wrong_shape.status_code == 400
    time.sleep(1)
    assert teams.of(event["conversation"]["id"]) == [], "nothing answered"
    assert not real_errors(caplog.records)


def test_an_activity_from_a_channel_its_signing_key_is_not_endorsed_for_is_refused(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    """The fake's webchat key is a published Bot Framework key, endorsed only for webchat: it signs for that
    channel, not for msteams."""
    webchat = teams.token(key=teams.webchat_key, kid=WEBCHAT_KEY_ID)
    event = teams.activity(QUESTION)
    refused = send(server, teams, event, token=webchat)
    assert refused.status_code == 401
    assert "not endorsed for channel 'msteams'" in refused.json()["detail"]
    fake_llm.enqueue(Reply(chunks=["".join(ANSWER)]))
    own = teams.activity(QUESTION, channelId="webchat")
    assert send(server, teams, own, token=webchat).status_code == 200
    wait_final(teams, own["conversation"]["id"])
    assert teams.of(event["conversation"]["id"]) == [], "the refused activity is not answered"


def test_a_key_with_malformed_endorsements_signs_for_no_channel(server: RunningServer, teams: FakeTeams) -> None:
    """`endorsements` that is not a list is not read as "no restriction": the check fails closed."""
    event = teams.activity(QUESTION)
    refused = send(server, teams, event, token=teams.token(key=teams.malformed_key, kid=MALFORMED_KEY_ID))
    assert refused.status_code == 401
    assert "not endorsed for channel 'msteams'" in refused.json()["detail"]


async def test_a_key_missing_from_the_endorsements_map_is_refused(teams: FakeTeams) -> None:
    """The map is replaced when the key set is refetched in a worker thread: a key id absent from it (a
    refetch that raced the lookup) must not pass as unrestricted."""
    async with httpx.AsyncClient() as http:
        auth = InboundAuth(http, openid_url=teams.openid_url, app_id=APP_ID)
        headers = {"authorization": f"Bearer {teams.token()}"}
        assert (await auth.verify(headers)).endorsements == frozenset({"msteams"})
        keys = await auth._jwks()
        keys.endorsements = {}  # as a concurrent refetch leaves it when the key set changed under the lookup
        with pytest.raises(Unauthorized, match="no known endorsements"):
            await auth.verify(headers)


# --- answering ------------------------------------------------------------------------------------------------


def test_personal_chat_streams_the_answer_then_a_final_message_with_citations_and_feedback(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=[ANSWER[0], ".", ".", ANSWER[1]], stall_after=1, stall_seconds=1.5))
    event = teams.activity(QUESTION)
    started = time.monotonic()
    assert send(server, teams, event).status_code == 200
    assert time.monotonic() - started < 2, "answered after the 200"
    last = wait_final(teams, event["conversation"]["id"])

    calls = [c for c in teams.of(event["conversation"]["id"]) if c.body.get("entities")]
    infos = [next(e for e in c.body["entities"] if e["type"] == "streaminfo") for c in calls]
    assert infos[0]["streamType"] == "informative" and infos[-1]["streamType"] == "final"
    assert "streaming" in [i["streamType"] for i in infos], "at least one streaming update"
    assert all(c.status == 200 for c in calls), "the fake accepted every step of the protocol"
    updates = [c.body["text"] for c, i in zip(calls, infos, strict=True) if i["streamType"] == "streaming"]
    assert updates[0].startswith("The dashboard listens")
    assert last.body["type"] == "message" and "port 8470 [1]" in last.body["text"]
    assert "Sources" not in last.body["text"], "cited sources are Teams' citations, not text"
    ai = next(e for e in last.body["entities"] if e.get("@type") == "Message")
    assert ai["additionalType"] == ["AIGeneratedContent"]
    citation = ai["citation"][0]
    assert citation["position"] == 1 and citation["appearance"]["abstract"]
    assert str(REPO) not in json.dumps(ai), "local files are cited by title, never by server path"
    assert last.body["channelData"]["feedbackLoopEnabled"] is True
    assert last.token in teams.tokens_issued


def test_the_bots_token_is_fetched_once_and_reused(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    ask(server, teams, fake_llm)
    before = len(teams.tokens_issued)
    ask(server, teams, fake_llm)
    assert len(teams.tokens_issued) == before, "the cached token served the second answer"


def test_a_revoked_token_is_renewed_and_a_429_retried_after_retry_after(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    ask(server, teams, fake_llm)
    teams.revoke_tokens()
    teams.rate_limited = 1
    event, last = ask(server, teams, fake_llm)
    calls = teams.of(event["conversation"]["id"])
    typing = {"type": "typing"}
    assert [(c.status, c.body) for c in calls[:3]] == [(401, typing), (429, typing), (200, typing)], (
        "the typing indicator: a new token after the 401, then again after the 429's Retry-After"
    )
    assert len(teams.tokens_issued) == 1 and last.token == teams.tokens_issued[0]


def test_a_long_streamed_answer_goes_on_in_more_messages_with_the_sources_under_the_last(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    paragraph = "The dashboard listens on port 8470 unless the port setting says otherwise [1]. " * 12
    fake_llm.enqueue(Reply(chunks=[paragraph + "\n\n"] * 10))
    event = teams.activity(QUESTION)
    assert send(server, teams, event).status_code == 200
    last = wait_final(teams, event["conversation"]["id"])
    messages = [c for c in teams.of(event["conversation"]["id"]) if c.body.get("type") == "message"]
    assert len(messages) == 2 and all(len(c.body["text"]) <= MESSAGE_LIMIT for c in messages)
    assert messages[0].body["entities"][0]["streamType"] == "final", "the stream ends with the first part"
    assert last is messages[1] and any(e.get("citation") for e in last.body["entities"])


def test_where_streaming_is_refused_the_answer_is_one_updated_message(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    teams.refuse_streams = True
    try:
        event, last = ask(server, teams, fake_llm)
    finally:
        teams.refuse_streams = False
    calls = teams.of(event["conversation"]["id"])
    assert [c.status for c in calls if c.body.get("entities", [{}])[0].get("type") == "streaminfo"] == [403]
    assert last.method == "PUT" and "port 8470 [1]" in last.body["text"]


def test_edit_mode_posts_then_updates_in_personal_chats(
    servers: dict[str, RunningServer], teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    event, last = ask(servers["edit"], teams, fake_llm)
    calls = [c for c in teams.of(event["conversation"]["id"]) if c.body.get("type") == "message"]
    assert "Thinking" in calls[0].body["text"] and calls[0].method == "POST"
    assert last.method == "PUT" and last.activity_id == calls[0].id
    assert any(e.get("citation") for e in last.body["entities"])


def test_channel_mention_is_stripped_and_answered_in_the_posts_thread_with_a_sources_card(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    event = teams.activity(QUESTION, scope="channel", mention=True)
    assert send(server, teams, event).status_code == 200
    last = wait_final(teams, event["conversation"]["id"])

    question = fake_llm.chat_requests()[-1]["messages"][-1]["content"]
    assert QUESTION in question and "<at>" not in question and "Switchboard" not in question
    first = teams.of(event["conversation"]["id"])[0]
    assert first.method == "POST" and first.activity_id == event["id"], "a reply in the post's thread"
    assert last.method == "PUT" and "port 8470 [1]" in last.body["text"]
    card = last.body["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = [block["text"] for block in card["content"]["body"]]
    assert texts[0].startswith("**Sources:**") and texts[1].startswith("[1] ")
    assert [a["title"] for a in card["content"]["actions"]] == ["👍", "👎"]


def test_follow_ups_in_a_thread_it_answered_need_no_mention_and_other_threads_are_ignored(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    root = teams.activity(QUESTION, scope="channel", mention=True)
    thread = root["conversation"]["id"]
    assert send(server, teams, root).status_code == 200
    wait_final(teams, thread)

    # With history the question is first rewritten to stand alone, then answered.
    fake_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["Port 8470, as I said [1]."]))
    follow_up = teams.activity("And where do I change it?", scope="channel", conversation=thread)
    unrelated = teams.activity("Anyone around?", scope="channel")
    assert send(server, teams, unrelated).status_code == 200
    assert send(server, teams, follow_up).status_code == 200
    teams.wait_for(lambda: any("as I said" in c.body.get("text", "") for c in teams.of(thread)))
    replies = [c for c in teams.of(thread) if c.method == "POST"]
    assert {c.activity_id for c in replies} == {root["id"], follow_up["id"]}, "both in the thread"
    time.sleep(1)
    assert teams.of(unrelated["conversation"]["id"]) == []


def test_group_chat_answers_only_when_mentioned(server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI) -> None:
    quiet = teams.activity(QUESTION, scope="groupChat")
    assert send(server, teams, quiet).status_code == 200
    fake_llm.enqueue(Reply(chunks=ANSWER))
    asked = teams.activity(QUESTION, scope="groupChat", mention=True)
    assert send(server, teams, asked).status_code == 200
    last = wait_final(teams, asked["conversation"]["id"])
    assert last.method == "PUT" and any(e.get("citation") for e in last.body["entities"])
    assert teams.of(quiet["conversation"]["id"]) == []


def test_redelivered_activities_are_answered_once(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER), Reply(chunks=["A second answer."]))
    event = teams.activity(QUESTION)
    assert send(server, teams, event).status_code == 200
    assert send(server, teams, event).status_code == 200
    wait_final(teams, event["conversation"]["id"])
    time.sleep(1.5)
    finals = [c for c in teams.of(event["conversation"]["id"]) if c.body.get("type") == "message"]
    assert len(finals) == 1
    fake_llm.script.clear()


def test_teams_feedback_invoke_and_card_buttons_are_stored_with_the_answer(
    server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI
) -> None:
    event, last = ask(server, teams, fake_llm)
    invoke = teams.activity("", conversation=event["conversation"]["id"]) | {
        "type": "invoke",
        "name": "message/submitAction",
        "replyToId": last.id,
        "value": {
            "actionName": "feedback",
            "actionValue": {"reaction": "dislike", "feedback": json.dumps({"feedbackText": "Wrong port"})},
        },
    }
    response = send(server, teams, invoke)
    assert response.status_code == 200 and response.json() == {}
    answers = AnswerLog(server.settings.data_dir / "answers.sqlite3")
    [record] = [r for r in asyncio.run(answers.conversation("teams", f"{TENANT}:{event['conversation']['id']}"))]
    feedback = asyncio.run(answers.feedback(record.id))
    assert feedback is not None and (feedback.rating, feedback.comment) == ("down", "Wrong port")

    unknown = invoke | {"replyToId": "no-such-message"}
    assert send(server, teams, unknown).status_code == 200

    fake_llm.enqueue(Reply(chunks=ANSWER))
    post = teams.activity(QUESTION, scope="channel", mention=True)
    send(server, teams, post)
    card = wait_final(teams, post["conversation"]["id"]).body["attachments"][0]["content"]
    up = card["actions"][0]["data"]
    click = teams.activity("", scope="channel", conversation=post["conversation"]["id"], value=up)
    assert send(server, teams, click).status_code == 200
    assert send(server, teams, click).status_code == 200  # redelivered
    teams.wait_for(lambda: any(c.body.get("text") == THANKS for c in teams.of(post["conversation"]["id"])))
    time.sleep(0.5)
    assert [c.body.get("text") for c in teams.of(post["conversation"]["id"])].count(THANKS) == 1
    stored = asyncio.run(answers.feedback(up[FEEDBACK_KEY].partition(":")[2]))
    assert stored is not None and stored.rating == "up"


async def test_which_message_holds_which_answer_is_shared_by_every_replica(state: StateBackend) -> None:
    """Teams' 👍/👎 name the message: any replica must find its answer (SQLite on one machine, or Redis)."""
    mine, another_replicas = (create_answer_ids(shared(state)) for _ in range(2))
    await mine.remember("1000000000001", "answer-a")
    await mine.remember("1000000000001", "answer-b")  # the same message updated to hold a later answer
    assert await another_replicas.get("1000000000001") == "answer-b"
    assert await another_replicas.get("1000000000002") is None


def test_installing_the_app_in_a_personal_chat_greets_once(server: RunningServer, teams: FakeTeams) -> None:
    added = teams.activity("") | {"type": "conversationUpdate", "membersAdded": [{"id": BOT}, {"id": "29:alice"}]}
    conversation = added["conversation"]["id"]
    assert send(server, teams, added).status_code == 200
    assert send(server, teams, added).status_code == 200  # redelivered
    teams.wait_for(lambda: teams.of(conversation))
    time.sleep(0.5)
    assert [c.body["text"] for c in teams.of(conversation)] == ["Hi! Ask me about Kestrel."]


def test_the_bots_file_maps_a_channel_to_its_bot(server: RunningServer, teams: FakeTeams) -> None:
    """`[bots.ops.teams] conversations` names the channel; each of its threads is answered by that bot."""
    post = teams.activity("", scope="channel", mention=True)
    post["conversation"]["id"] = f"{MAPPED};messageid={post['id']}"
    elsewhere = teams.activity("", scope="channel", mention=True)
    assert send(server, teams, post).status_code == 200 and send(server, teams, elsewhere).status_code == 200
    for event, welcome in ((post, "Ops desk here."), (elsewhere, "Hi! Ask me about Kestrel.")):
        conversation = event["conversation"]["id"]
        call: Call = teams.wait_for(lambda c=conversation: next(iter(teams.of(c, type="message")), None))
        assert call.body["text"] == welcome


def test_reset_starts_the_chat_over(server: RunningServer, teams: FakeTeams, fake_llm: FakeOpenAI) -> None:
    event, _ = ask(server, teams, fake_llm)
    reset = teams.activity("reset", conversation=event["conversation"]["id"])
    assert send(server, teams, reset).status_code == 200
    teams.wait_for(lambda: any(c.body.get("text") == RESET_DONE for c in teams.of(event["conversation"]["id"])))


def test_shutdown_lets_the_answer_in_flight_finish(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    teams: FakeTeams,
    tmp_path: Path,
) -> None:
    """Answers run after Teams got its 200: stopping the server waits for them (the grace period), then closes."""
    fake_llm.enqueue(Reply(chunks=[ANSWER[0], "and ", "so ", "on, ", ANSWER[1]], interval=0.5))
    event = teams.activity(QUESTION)
    conversation = event["conversation"]["id"]
    with run_server(
        web_settings(settings, fake_llm, "http://127.0.0.1:1", tmp_path), Webhooks(teams=teams_settings(teams))
    ) as one:
        assert send(one, teams, event).status_code == 200
        teams.wait_for(lambda: any(c.body.get("text", "").startswith("The dashboard") for c in teams.of(conversation)))
        assert final(teams, conversation) is None, "still answering when the server is told to stop"
    last = final(teams, conversation)
    assert last is not None and "port 8470 [1]" in last.body["text"]


# --- the app manifest -------------------------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_app_manifest_matches_what_the_bot_does() -> None:
    """docs/teams/manifest.json: the bot id is the TEAMS_APP_ID placeholder the README has you replace, the
    scopes are the ones the bot answers in, the permission it needs for followed threads is asked for, and
    the icons are the sizes Teams wants."""
    folder = REPO / "docs" / "teams"
    manifest = json.loads((folder / "manifest.json").read_text())
    [bot] = manifest["bots"]
    assert bot["botId"] == manifest["id"] == "${{TEAMS_APP_ID}}"
    assert manifest["webApplicationInfo"]["id"] == "${{TEAMS_APP_ID}}"
    assert set(bot["scopes"]) == {"personal", "groupChat", "team"}
    assert bot["supportsFiles"] is False
    commands = {c["title"] for group in bot["commandLists"] for c in group["commands"]}
    assert "reset" in commands
    permissions = {p["name"] for p in manifest["authorization"]["permissions"]["resourceSpecific"]}
    assert "ChannelMessage.Read.Group" in permissions
    assert _png_size(folder / manifest["icons"]["color"]) == (192, 192)
    assert _png_size(folder / manifest["icons"]["outline"]) == (32, 32)


# Microsoft's JSON schemas for the app manifest ship in the npm package @microsoft/app-manifest (MIT): fetched
# once with npm at test setup into the ignored tests/output/, not committed.
SCHEMA_PACKAGE = "@microsoft/app-manifest@1.1.2"
SCHEMA_CACHE = REPO / "tests" / "output" / "app-manifest-schemas"


@pytest.fixture(scope="module")
def manifest_schema() -> dict[str, Any]:
    manifest = json.loads((REPO / "docs" / "teams" / "manifest.json").read_text())
    version = manifest["manifestVersion"]
    path = SCHEMA_CACHE / "package" / "build" / "json-schemas" / "teams" / f"v{version}" / "MicrosoftTeams.schema.json"
    if not path.exists():
        npm = shutil.which("npm")
        # Fail, not skip: scripts/setup.sh installs npm, so a missing one is a broken setup.
        assert npm is not None, f"npm is needed to fetch the manifest schema ({SCHEMA_PACKAGE})"
        SCHEMA_CACHE.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(
            [npm, "pack", SCHEMA_PACKAGE, "--pack-destination", str(SCHEMA_CACHE), "--json", "--loglevel=error"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        tarball = SCHEMA_CACHE / json.loads(packed.stdout)[0]["filename"]
        with tarfile.open(tarball) as archive:
            archive.extractall(SCHEMA_CACHE, filter="data")
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


def test_the_app_manifest_is_valid_against_microsofts_schema(manifest_schema: dict[str, Any]) -> None:
    """As the Teams Toolkit does, the ${{TEAMS_APP_ID}} placeholder is filled in before validating."""
    text = (REPO / "docs" / "teams" / "manifest.json").read_text().replace("${{TEAMS_APP_ID}}", APP_ID)
    manifest = json.loads(text)
    validator = jsonschema.validators.validator_for(manifest_schema)(manifest_schema)
    assert [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(manifest)] == []
    broken = {**manifest, "bots": [{**manifest["bots"][0], "scopes": ["everywhere"]}]}
    assert not validator.is_valid(broken), "the schema checks what the manifest says"


def test_the_endpoint_is_mounted_only_when_teams_is_configured(teams: FakeTeams) -> None:
    assert Webhooks(teams=adapter_settings(TeamsSettings)).webhooks == []
    assert [w.path for w in Webhooks(teams=teams_settings(teams)).webhooks] == [MESSAGES_PATH]
    with pytest.raises(ConfigError, match="TEAMS_APP_ID and TEAMS_APP_PASSWORD"):
        Webhooks(teams=adapter_settings(TeamsSettings, app_id=APP_ID))
