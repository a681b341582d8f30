"""core.answer.assistant end to end: real Weaviate, real embedder, the real openai client against a scripted fake
LLM."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from core.answer.assistant import DONT_KNOW, STORE_DOWN, Assistant
from core.answer.history import SQLiteHistory, fit_history
from core.answer.llm import FALLBACK_NOTE, LLM
from core.answer.log import AnswerLog, Feedback
from core.answer.profiles import load_profiles
from core.config import Settings
from core.embed import Embedder
from core.ingest.pipeline import ingest
from core.store.client import Store, open_store
from core.types import Delta, Done, Event, Failed, Message, Sources, Turn
from tests.conftest import make_settings, require_weaviate_binary
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import REPO
from tests.support.ports import free_port_block

SAMPLE_KB = "rag_sample"
PORT_QUESTION = "Which port does the Kestrel dashboard listen on?"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def clean_script(fake: FakeOpenAI) -> None:
    fake.script.clear()
    fake.requests.clear()


@pytest.fixture(scope="module")
async def sample_kb(settings: Settings, embedder: Embedder) -> str:
    async with open_store(settings) as store:
        await ingest(store, embedder, [str(REPO / "examples" / "docs")], kb=SAMPLE_KB, settings=settings)
    return SAMPLE_KB


def make_llm(base_url: str, timeout: float = 2.0) -> LLM:
    return LLM(
        base_url=base_url,
        api_key="sk-test",
        model="fake-chat",
        temperature=0.2,
        max_tokens=256,
        timeout=timeout,
        connect_timeout=1.0,
    )


def assistant_for(settings: Settings, store: Store, embedder: Embedder, llm: LLM | None, tmp: Path) -> Assistant:
    tuned = settings.model_copy(update={"default_kb": SAMPLE_KB})
    return Assistant(
        settings=tuned,
        store=store,
        embedder=embedder,
        llm=llm,
        history=SQLiteHistory(tmp / "history.sqlite3", max_turns=10),
        answers=AnswerLog(tmp / "answers.sqlite3"),
        profiles=load_profiles(tuned),
    )


@pytest.fixture
async def assistant(
    settings: Settings, store: Store, embedder: Embedder, sample_kb: str, fake: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[Assistant]:
    llm = make_llm(fake.base_url)
    yield assistant_for(settings, store, embedder, llm, tmp_path)
    await llm.close()


def message(text: str, conversation: str | None = None, bot: str | None = None) -> Message:
    return Message(text=text, channel="test", conversation_id=conversation or uuid.uuid4().hex, bot=bot)


async def collect(assistant: Assistant, msg: Message) -> list[Event]:
    events = [event async for event in assistant.answer(msg)]
    kinds = [e.kind for e in events]
    if kinds != ["failed"]:  # the stream contract: Sources, Delta*, Done
        assert kinds[0] == "sources" and kinds[-1] == "done" and set(kinds[1:-1]) <= {"delta"}, kinds
        done = events[-1]
        assert isinstance(done, Done)
        assert "".join(e.text for e in events if isinstance(e, Delta)) == done.text
    return events


async def test_cited_numbers_map_to_the_sources_given(assistant: Assistant, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(chunks=["The dashboard ", "listens on port 8470 ", "[2]. See also [9] and [1, 2]."]))
    events = await collect(assistant, message(PORT_QUESTION))
    sources, done = events[0], events[-1]
    assert isinstance(sources, Sources) and isinstance(done, Done)
    assert len(sources.sources) >= 2 and [c.n for c in sources.sources] == list(range(1, len(sources.sources) + 1))
    assert done.cited and not done.fallback
    assert [c.n for c in done.citations] == [2, 1]  # first-cited order; [9] was never given, so ignored
    assert done.citations[0] == sources.sources[1]
    prompt = fake.chat_requests()[0]["messages"]
    assert prompt[0]["role"] == "system" and "cite" in prompt[0]["content"]
    assert "[1] " in prompt[-1]["content"] and prompt[-1]["content"].endswith(f"Question: {PORT_QUESTION}")


async def test_no_citations_means_sources_consulted(assistant: Assistant, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(chunks=["It is configurable."]))
    events = await collect(assistant, message(PORT_QUESTION))
    done = events[-1]
    assert isinstance(done, Done) and not done.cited and done.citations == events[0].sources  # type: ignore[union-attr]


async def test_nothing_relevant_says_so_without_calling_the_model(assistant: Assistant, fake: FakeOpenAI) -> None:
    events = await collect(assistant, message("What is the best recipe for lemon drizzle cake?"))
    done = events[-1]
    assert isinstance(done, Done) and done.text == DONT_KNOW and done.citations == ()
    assert events[0] == Sources(sources=())
    assert fake.chat_requests() == []
    record = await assistant.answers.get(done.answer_id)
    assert record is not None and record.outcome == "dont_know" and not record.cited


async def test_follow_up_is_condensed_with_history(assistant: Assistant, fake: FakeOpenAI) -> None:
    conversation = uuid.uuid4().hex
    fake.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await collect(assistant, message(PORT_QUESTION, conversation))
    fake.enqueue(Reply(chunks=["How to run a Kestrel cron schedule in a specific timezone"]), Reply(chunks=["Ok [1]."]))
    events = await collect(assistant, message("and what about that time zone thing for them?", conversation))

    condense, answer = fake.chat_requests()[1:]
    assert condense["max_tokens"] == 64 and condense["temperature"] == 0.0
    assert (
        PORT_QUESTION in condense["messages"][-1]["content"] and "Port 8470 [1]." in condense["messages"][-1]["content"]
    )
    assert [m["role"] for m in answer["messages"]] == ["system", "user", "assistant", "user"]
    sources = events[0]
    assert isinstance(sources, Sources)
    assert sources.sources[0].source.endswith("guides/cron-schedules.md")  # retrieved with the condensed query


async def test_reset_forgets_the_conversation(assistant: Assistant, fake: FakeOpenAI) -> None:
    conversation = uuid.uuid4().hex
    fake.enqueue(Reply(chunks=["Port 8470 [1]."]))
    await collect(assistant, message(PORT_QUESTION, conversation))
    await assistant.reset("test", conversation)
    fake.enqueue(Reply(chunks=["Ok."]))
    await collect(assistant, message(PORT_QUESTION, conversation))
    assert len(fake.chat_requests()) == 2  # no condensation call: the history was empty again


@pytest.mark.parametrize(
    ("reply", "partial"),
    [
        (Reply(stall_before=5.0), ""),  # no first token within LLM_TIMEOUT
        (Reply(chunks=["Port ", "8470", " is"], stall_after=2, stall_seconds=5.0), "Port 8470"),  # stalls mid-answer
        (Reply(status=500), ""),
        (Reply(malformed=True), ""),
        (Reply(chunks=["", "  "]), ""),  # empty output
    ],
    ids=["stall-first-token", "stall-mid-stream", "http-500", "malformed", "empty"],
)
async def test_model_failures_fall_back_to_passages(
    assistant: Assistant, fake: FakeOpenAI, reply: Reply, partial: str
) -> None:
    fake.enqueue(reply, reply)  # the client retries once
    started = time.monotonic()
    events = await collect(assistant, message(PORT_QUESTION))
    done = events[-1]
    assert isinstance(done, Done) and done.fallback and done.cited
    assert time.monotonic() - started < 15
    assert done.text.startswith(partial)
    assert FALLBACK_NOTE in done.text and "[1]" in done.text
    assert done.citations == events[0].sources  # type: ignore[union-attr]
    record = await assistant.answers.get(done.answer_id)
    assert record is not None and record.outcome == "fallback"


async def test_unreachable_or_missing_model_falls_back(
    settings: Settings, store: Store, embedder: Embedder, sample_kb: str, tmp_path: Path
) -> None:
    port, _ = free_port_block()
    for llm in (make_llm(f"http://127.0.0.1:{port}/v1"), None):
        events = await collect(assistant_for(settings, store, embedder, llm, tmp_path), message(PORT_QUESTION))
        done = events[-1]
        assert isinstance(done, Done) and done.fallback and done.text.startswith(FALLBACK_NOTE)


async def test_bot_persona_and_unknown_bot(
    settings: Settings, store: Store, embedder: Embedder, sample_kb: str, fake: FakeOpenAI, tmp_path: Path
) -> None:
    bots = tmp_path / "bots.toml"
    bots.write_text(
        f'[bots.kestrel]\nkb = "{SAMPLE_KB}"\npersona = "Kess"\n'
        'system_prompt = "You are {persona}. Answer like a pirate, citing [n]."\nwelcome = "Ahoy!"\n'
    )
    tuned = settings.model_copy(update={"bots_file": bots})
    llm = make_llm(fake.base_url)
    helper = assistant_for(tuned, store, embedder, llm, tmp_path)
    fake.enqueue(Reply(chunks=["Arr, 8470 [1]."]))
    await collect(helper, message(PORT_QUESTION, bot="kestrel"))
    assert fake.chat_requests()[0]["messages"][0]["content"] == "You are Kess. Answer like a pirate, citing [n]."
    assert await collect(helper, message(PORT_QUESTION, bot="nobody")) == [Failed(reason="unknown bot 'nobody'")]
    await llm.close()


async def test_weaviate_down_fails_fast_then_recovers(
    tmp_path: Path, settings: Settings, embedder: Embedder, fake: FakeOpenAI
) -> None:
    http_port, grpc_port = free_port_block()
    own = make_settings(tmp_path / "data", http_port, grpc_port, embed_model_path=settings.embed_model_path)
    from core.store.local import LocalWeaviate

    local = LocalWeaviate.from_settings(own)
    require_weaviate_binary(local)
    local.start()
    llm = make_llm(fake.base_url)
    try:
        async with open_store(own) as store:
            await ingest(store, embedder, [str(REPO / "examples" / "docs")], kb=SAMPLE_KB, settings=own)
            helper = assistant_for(own, store, embedder, llm, tmp_path)
            await store.kb_meta(SAMPLE_KB)  # warm, as a running server is: no REST call before the gRPC search
            local.stop()
            started = time.monotonic()
            assert await collect(helper, message(PORT_QUESTION)) == [Failed(reason=STORE_DOWN)]
            assert time.monotonic() - started < 10  # not the client's minute of gRPC retries

            local.start()
            fake.enqueue(Reply(chunks=["Back: 8470 [1]."]))
            events = await collect(helper, message(PORT_QUESTION))
            assert isinstance(events[-1], Done) and events[-1].cited
    finally:
        await llm.close()
        local.stop()


def test_history_fits_the_token_budget() -> None:
    turns = [Turn(role="user", content="x" * 400), Turn(role="assistant", content="y" * 400)] * 3
    assert fit_history(turns, max_tokens=250) == turns[-2:]
    assert fit_history(turns, max_tokens=0) == []


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_answers_are_logged_with_their_sources_and_feedback(assistant: Assistant, fake: FakeOpenAI) -> None:
    fake.enqueue(Reply(chunks=["Port ", "8470 [1]."], stall_before=0.3, interval=0.4))
    answered = {"channel": "test", "outcome": "answered"}
    before = [sample("switchboard_answers_total", answered), sample("switchboard_llm_seconds_sum")]
    done = (await collect(assistant, message(PORT_QUESTION, "logged")))[-1]
    # Prometheus's counters (GET /metrics): one more answer, and the model's 0.7 s or more.
    assert sample("switchboard_answers_total", answered) == before[0] + 1
    assert sample("switchboard_llm_seconds_sum") >= before[1] + 0.7
    assert isinstance(done, Done) and done.answer_id
    record = await assistant.answers.get(done.answer_id)
    assert record is not None and record.question == PORT_QUESTION and record.answer == "Port 8470 [1]."
    assert record.citations == done.citations and record.bot == "default" and record.conversation == "logged"
    # Timed from the question: the first text after the model's 0.3 s pause, the end after the 0.4 s between chunks.
    assert record.outcome == "answered" and record.first_token_ms is not None and record.total_ms is not None
    assert record.first_token_ms >= 300 and record.first_token_ms + 400 <= record.total_ms
    await assistant.answers.add_feedback(done.answer_id, "down", "wrong port")
    await assistant.answers.add_feedback(done.answer_id, "up")
    assert await assistant.answers.feedback(done.answer_id) == Feedback(rating="up", comment="wrong port")
    assert [r.id for r in await assistant.answers.conversation("test", "logged")] == [done.answer_id]
