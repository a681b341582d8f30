"""Privacy and data lifecycle, on both state backends (SQLite, Redis), through the real server and CLI: forgetting
a conversation erases it from every store (and from the bytes on disk), a user's records are erased on request,
the answer log records who asked (old logs are migrated), and retention purges old answers and idle history."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.answer import history as history_module
from core.answer import log as answers_module
from core.answer.history import SQLiteHistory, create_history
from core.answer.log import AnswerLog
from core.config import Settings
from core.store.local import LocalWeaviate
from core.types import Citation, Turn
from tests.conftest import StateBackend, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support import REPO
from tests.support.cli import cli_environment
from tests.test_server_api import chat, messages, session
from widget.sessions import identity_hash
from widget.settings import WebSettings

ADMIN_KEY = "admin-key-for-privacy-tests-0123"
QUESTION = "Which port does the Kestrel dashboard listen on?"  # the widget KB answers it
CITATION = Citation(n=1, title="Install", source="/docs/install.md", section="", snippet="Run it.")


def own_settings(settings: Settings, fake_llm: FakeOpenAI, origin: str, state: StateBackend, tmp: Path) -> WebSettings:
    """The web settings on this test's own data directory (and Redis or not), with the session's Weaviate reached
    as an external server, so that every byte under the data directory is this test's."""
    weaviate = LocalWeaviate.from_settings(settings)
    base = web_settings(settings, fake_llm, origin, tmp, admin_api_key=SecretStr(ADMIN_KEY))
    return base.model_copy(
        update={
            "data_dir": state.settings.data_dir,
            "redis_url": state.settings.redis_url,
            "weaviate_url": weaviate.url,
            "weaviate_grpc_port": (settings.weaviate_local_grpc_port,),
            "weaviate_api_key": SecretStr(weaviate.api_key),
        }
    )


def user(user_id: str) -> dict[str, str]:
    return {"id": user_id, "hash": identity_hash(user_id, "test-identity-secret")}


def files_containing(root: Path, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


async def redis_value(redis: Redis, key: str) -> Any:
    match await redis.type(key):
        case "string":
            return await redis.get(key)
        case "list":
            return await redis.lrange(key, 0, -1)
        case "hash":
            return await redis.hgetall(key)
        case "zset":
            return await redis.zrange(key, 0, -1)
    return None


async def redis_keys_containing(redis: Redis | None, needle: str) -> list[str]:
    if redis is None:
        return []
    return [k async for k in redis.scan_iter("*") if needle in k or needle in json.dumps(await redis_value(redis, k))]


def forget(web: RunningServer, token: str, conversation: str) -> httpx.Response:
    return httpx.delete(
        f"{web.url}/api/conversations/{conversation}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


async def test_forgetting_a_conversation_erases_it_from_every_store(
    state: StateBackend,
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path: Path,
) -> None:
    origin, secret, kept = host_site[0], f"zebra-{uuid.uuid4().hex[:8]}", f"okapi-{uuid.uuid4().hex[:8]}"
    with run_server(own_settings(settings, fake_llm, origin, state, tmp_path)) as web:
        first = session(web, origin, user=user("forget-me@example.com")).json()
        fake_llm.enqueue(Reply(chunks=[f"Kept answer {kept} [1]."]))
        assert chat(web, first["token"], origin, f"{QUESTION} {kept}", "kept-conversation").is_success
        fake_llm.enqueue(Reply(chunks=[f"The {secret} answer [1]."]))
        done = chat(web, first["token"], origin, f"{QUESTION} {secret}", "secret-conversation")
        answer_id = json.loads(done.text.strip().split("\n\n")[-1].split("data: ", 1)[1])["answer_id"]
        rated = httpx.post(
            f"{web.url}/api/feedback",
            json={"answer_id": answer_id, "rating": "down", "comment": f"{secret} is wrong"},
            headers={"Authorization": f"Bearer {first['token']}"},
            timeout=10,
        )
        assert rated.status_code == 204
        assert session(web, origin, user=user("forget-me@example.com")).json()["conversation_id"] == (
            "secret-conversation"
        )
        stored = files_containing(web.settings.data_dir, secret) + await redis_keys_containing(state.redis, secret)
        assert stored, "the test looks for the text where it is kept"

        assert forget(web, first["token"], "secret-conversation").status_code == 204

        assert messages(web, first["token"], "secret-conversation") == []
        again = session(web, origin, user=user("forget-me@example.com")).json()
        assert again["conversation_id"] == "kept-conversation"  # only the forgotten one is gone
        assert files_containing(web.settings.data_dir, secret) == []
        assert await redis_keys_containing(state.redis, secret) == []
        log = AnswerLog(web.settings.data_dir / "answers.sqlite3")
        assert await log.get(answer_id) is None and await log.feedback(answer_id) is None
        memory = create_history(web.settings, state.redis)
        assert await memory.load("widget", "docs:u:forget-me@example.com:secret-conversation") == []
        assert [t.content for t in await memory.load("widget", "docs:u:forget-me@example.com:kept-conversation")] == [
            f"{QUESTION} {kept}",
            f"Kept answer {kept} [1].",
        ]

        assert forget(web, first["token"], "kept-conversation").status_code == 204
        assert "conversation_id" not in session(web, origin, user=user("forget-me@example.com")).json()
        assert files_containing(web.settings.data_dir, kept) == []
        assert await redis_keys_containing(state.redis, kept) == []


def switchboard(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = str(REPO / ".venv" / "bin" / "switchboard")
    return subprocess.run([exe, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


async def logged(log: AnswerLog, channel: str, conversation: str, user_id: str, text: str) -> str:
    return await log.record(
        channel=channel,
        conversation=conversation,
        bot="docs",
        question=f"question {text}",
        answer=f"answer {text}",
        citations=(CITATION,),
        cited=True,
        fallback=False,
        user_id=user_id,
    )


async def test_a_users_records_are_erased_by_the_cli_and_the_admin_api(
    state: StateBackend,
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path: Path,
) -> None:
    origin, marker = host_site[0], uuid.uuid4().hex[:10]
    with run_server(own_settings(settings, fake_llm, origin, state, tmp_path)) as web:
        # The widget records the verified user's id with the answer (Message.user_id, end to end).
        token = session(web, origin, user=user("U42")).json()["token"]
        fake_llm.enqueue(Reply(chunks=[f"Widget answer {marker} [1]."]))
        assert chat(web, token, origin, f"{QUESTION} {marker}", "widget-conversation").is_success
        log = AnswerLog(web.settings.data_dir / "answers.sqlite3")
        [widget_answer] = await log.conversation("widget", "docs:u:U42:widget-conversation")
        assert widget_answer.user_id == "U42"

        # The same id on the chat platforms (as the bots record it), and someone else in the same Slack thread.
        memory = create_history(web.settings, state.redis)
        slack_answer = await logged(log, "slack", "T1:C1:1.0", "U42", f"slack {marker}")
        await log.add_feedback(slack_answer, "down", f"feedback {marker}")
        other = await logged(log, "slack", "T1:C1:1.0", "U7", "from someone else")
        telegram_answer = await logged(log, "telegram", "chat-9", "U42", f"telegram {marker}")
        # Curated answers promoted from their answers: two copy their question as asked (erased with them), one
        # has the operator's own wording of it (kept).
        for answer_id, extra in (
            (slack_answer, {}),
            (telegram_answer, {"paraphrases": ["Dashboard port?"]}),
            (widget_answer.id, {"question": "Which port is the dashboard on?"}),
        ):
            promoted = httpx.post(
                f"{web.url}/admin/answers/{answer_id}/promote",
                json={"answer": "Port 8470.", **extra},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                timeout=30,
            )
            assert promoted.status_code == 201, promoted.text
        for channel, conversation in (("slack", "T1:C1:1.0"), ("telegram", "chat-9")):
            await memory.append(channel, conversation, [Turn(role="user", content=f"memory {marker}")])

        env = cli_environment(web.settings)
        if state.settings.redis_url is not None:
            env["REDIS_URL"] = state.settings.redis_url.get_secret_value()
        erased = switchboard(env, "forget-user", "U42", "--channel", "slack", "--yes", "--json", cwd=tmp_path)
        assert erased.returncode == 0, erased.stderr
        assert json.loads(erased.stdout) == {
            "user_id": "U42",
            "channel": "slack",
            "conversations": 1,
            "answers": 1,
            "feedback": 1,
            "curated": 1,
        }
        assert await log.get(slack_answer) is None and await log.feedback(slack_answer) is None
        assert await log.get(other) is not None  # the other person's answer in that thread stays
        assert await memory.load("slack", "T1:C1:1.0") == []  # the thread's memory held their words
        assert await memory.load("telegram", "chat-9") != []  # other channels untouched

        response = httpx.delete(
            f"{web.url}/admin/users/U42", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "user_id": "U42",
            "channel": None,
            "conversations": 2,
            "answers": 2,
            "feedback": 0,
            "curated": 1,
        }
        assert await memory.load("telegram", "chat-9") == []
        curated = httpx.get(f"{web.url}/admin/curated", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)
        kept = [[c["question"], *c["paraphrases"]] for c in curated.json()["curated"]]
        assert kept == [["Dashboard port?"], ["Which port is the dashboard on?"]]  # the operator's words stay
        assert "conversation_id" not in session(web, origin, user=user("U42")).json()
        assert files_containing(web.settings.data_dir, marker) == []
        assert await redis_keys_containing(state.redis, marker) == []

        nothing = switchboard(env, "forget-user", "U42", "--yes", cwd=tmp_path)
        assert nothing.returncode == 0 and "0 conversations, 0 answers, 0 feedback" in nothing.stdout
        refused = httpx.delete(f"{web.url}/admin/users/U42", timeout=10)
        assert refused.status_code == 401


def test_forget_user_asks_before_erasing(cli_env: dict[str, str], tmp_path: Path) -> None:
    declined = subprocess.run(
        [str(REPO / ".venv" / "bin" / "switchboard"), "forget-user", "U1"],
        env=cli_env,
        cwd=tmp_path,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert declined.returncode == 1 and "error: nothing erased" in declined.stderr


# --- the answer log's user ids, and retention ---------------------------------------------------------------


def test_an_answer_log_from_before_user_ids_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    with sqlite3.connect(path) as db:  # the schema answer logs had before user ids
        db.execute(
            "CREATE TABLE answers (id TEXT PRIMARY KEY, channel TEXT NOT NULL, conversation TEXT NOT NULL, "
            "bot TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, citations TEXT NOT NULL, "
            "cited INTEGER NOT NULL, fallback INTEGER NOT NULL, created_at REAL NOT NULL)"
        )
        db.execute("INSERT INTO answers VALUES ('a1', 'slack', 'c1', 'docs', 'q', 'a', '[]', 1, 0, 1.0)")
    log = AnswerLog(path)
    old = asyncio.run(log.get("a1"))
    assert old is not None and old.user_id is None and old.question == "q"
    new = asyncio.run(logged(AnswerLog(path), "slack", "c1", "U1", "new"))  # opening it again changes nothing
    assert asyncio.run(log.user_conversations("U1")) == [("slack", "c1")]
    assert asyncio.run(log.forget_user("U1")).answers == 1 and asyncio.run(log.get(new)) is None
    assert asyncio.run(log.get("a1")) is not None


def age(path: Path, table: str, days: float, where: str = "1") -> None:
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE {table} SET created_at = created_at - ? WHERE {where}", (days * 86400,))


async def test_retention_purges_at_startup(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    log = AnswerLog(data / "answers.sqlite3")
    old, recent = await logged(log, "slack", "old", "U1", "old"), await logged(log, "slack", "new", "U1", "new")
    await log.add_feedback(old, "up", "old feedback")
    age(data / "answers.sqlite3", "answers", 8, f"id = '{old}'")
    memory = SQLiteHistory(data / "history.sqlite3", max_turns=10)
    await memory.append("slack", "idle", [Turn(role="user", content="idle question")])
    await memory.append("slack", "active", [Turn(role="user", content="active question")])
    age(data / "history.sqlite3", "turns", 8, "conversation = 'idle'")
    backend = StateBackend(settings=WebSettings(data_dir=data, _env_file=None), redis=None)
    own = own_settings(settings, fake_llm, host_site[0], backend, tmp_path)
    retention = {"answer_log_retention_days": 7, "history_ttl_days": 7}
    with run_server(own.model_copy(update=retention)):
        assert await log.get(old) is None and await log.feedback(old) is None
        assert await log.get(recent) is not None
        with sqlite3.connect(data / "history.sqlite3") as db:
            assert [r[0] for r in db.execute("SELECT conversation FROM turns")] == ["active"]
        assert files_containing(data, "idle question") == [] and files_containing(data, "old feedback") == []


async def test_retention_purges_on_writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(answers_module, "_PURGE_EVERY", 0.0)  # due at every write, not hourly
    monkeypatch.setattr(history_module, "_PURGE_EVERY", 0.0)
    log = AnswerLog(tmp_path / "answers.sqlite3", retention_days=1)
    first = await logged(log, "slack", "c", "U1", "first")
    age(tmp_path / "answers.sqlite3", "answers", 2)
    second = await logged(log, "slack", "c", "U1", "second")
    assert await log.get(first) is None and await log.get(second) is not None

    memory = SQLiteHistory(tmp_path / "history.sqlite3", max_turns=10, ttl_seconds=86400)
    await memory.append("slack", "idle", [Turn(role="user", content="idle")])
    age(tmp_path / "history.sqlite3", "turns", 2)
    assert await memory.load("slack", "idle") == []  # idle past the TTL: not loaded even before the purge
    await memory.append("slack", "active", [Turn(role="user", content="active")])
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        assert [r[0] for r in db.execute("SELECT conversation FROM turns")] == ["active"]


async def test_without_retention_nothing_is_purged(tmp_path: Path) -> None:
    log = AnswerLog(tmp_path / "answers.sqlite3")
    kept = await logged(log, "slack", "c", "U1", "kept")
    age(tmp_path / "answers.sqlite3", "answers", 3650)
    assert await log.purge_expired() == 0 and await log.get(kept) is not None
