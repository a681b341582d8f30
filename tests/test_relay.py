"""relay(): the core's event stream → a placeholder, throttled edits, one final edit with sources, continued
in new messages past the platform's limit; failures become a reason or an apology, never silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bots.base import APOLOGY, CURSOR, Channel, Followed, Stream, is_reset, parse_feedback, relay
from bots.dedup import RedisDeduplicator, SQLiteDeduplicator, create_deduplicator
from bots.render import DISCORD, TELEGRAM, Dialect
from core.shared_state import SharedState, open_redis
from core.types import Citation, Delta, Done, Event, Failed, Sources
from tests.conftest import StateBackend, shared


@dataclass
class Call:
    op: str
    message_id: str
    text: str
    answer_id: str | None


@dataclass
class FakeChannel(Channel):
    """Records what a platform would receive (scripted fake, not a mock)."""

    dialect: Dialect = TELEGRAM
    limit: int = 4096
    edit_interval: float = 0.05
    edit_seconds: float = 0.0
    fail_edits: bool = False
    calls: list[Call] = field(default_factory=list)
    typed: int = 0

    async def post(self, text: str, *, answer_id: str | None = None) -> str:
        message_id = f"m{sum(c.op == 'post' for c in self.calls) + 1}"
        self.calls.append(Call("post", message_id, text, answer_id))
        return message_id

    async def edit(self, message_id: str, text: str, *, answer_id: str | None = None) -> None:
        await asyncio.sleep(self.edit_seconds)
        if self.fail_edits and answer_id is None:
            raise RuntimeError("platform said no")
        self.calls.append(Call("edit", message_id, text, answer_id))

    async def typing(self) -> None:
        self.typed += 1


CITATION = Citation(n=1, title="Install", source="https://kestrel.example/install", section="Ports", snippet="")


async def stream(pieces: list[str], *, pause: float = 0.0, end: Event | None = None) -> AsyncIterator[Event]:
    yield Sources(sources=(CITATION,))
    for piece in pieces:
        await asyncio.sleep(pause)
        yield Delta(text=piece)
    yield end or Done(answer_id="ans1", text="".join(pieces), citations=(CITATION,), cited=True, fallback=False)


async def test_placeholder_then_throttled_edits_then_final_with_sources_and_feedback() -> None:
    channel = FakeChannel()
    pieces = [f"word{i} " for i in range(40)]
    done = await relay(stream(pieces, pause=0.01), channel)
    assert done is not None and done.answer_id == "ans1"
    assert channel.typed == 1
    first, *edits = channel.calls
    assert first.op == "post" and "Thinking" in first.text
    assert all(c.op == "edit" and c.message_id == "m1" for c in edits)
    previews, final = edits[:-1], edits[-1]
    # ~0.4 s of streaming at a 50 ms interval: a handful of edits, not one per token, each showing more.
    assert 2 <= len(previews) <= 12
    assert all(p.text.endswith(CURSOR.strip()) for p in previews)
    assert [len(p.text) for p in previews] == sorted(len(p.text) for p in previews)
    assert final.answer_id == "ans1" and "word39" in final.text
    assert '<a href="https://kestrel.example/install">Install › Ports</a>' in final.text
    assert CURSOR.strip() not in final.text


async def test_slow_edits_never_overlap_and_the_final_edit_comes_last() -> None:
    channel = FakeChannel(edit_seconds=0.2, edit_interval=0.0)
    await relay(stream([f"w{i} " for i in range(20)], pause=0.02), channel)
    edits = [c for c in channel.calls if c.op == "edit"]
    assert len(edits) <= 4  # one at a time: 0.4 s of tokens over 0.2 s edits
    assert edits[-1].answer_id == "ans1" and "w19" in edits[-1].text


async def test_long_answers_continue_in_new_messages_with_feedback_on_the_last() -> None:
    channel = FakeChannel(dialect=DISCORD, limit=2000)
    text = "\n\n".join(f"Paragraph {i} " + "lorem ipsum " * 30 for i in range(20))
    await relay(stream([text[i : i + 500] for i in range(0, len(text), 500)]), channel)
    final_texts: dict[str, str] = {}
    for call in channel.calls:
        final_texts[call.message_id] = call.text
        assert len(call.text) <= 2000
    assert len(final_texts) >= 4
    last = channel.calls[-1]
    assert last.answer_id == "ans1" and last.message_id == max(final_texts)
    assert [c.answer_id for c in channel.calls[:-1] if c.answer_id] == []
    joined = "".join(final_texts[k] for k in sorted(final_texts, key=lambda k: int(k[1:])))
    assert all(f"Paragraph {i} " in joined for i in range(20)) and "Sources" in joined


async def test_failed_answer_shows_the_reason() -> None:
    channel = FakeChannel()
    done = await relay(stream([], end=Failed(reason="The knowledge base is unavailable right now.")), channel)
    assert done is None
    assert channel.calls[-1].text == "The knowledge base is unavailable right now."


async def test_crash_mid_stream_becomes_an_apology() -> None:
    async def broken() -> AsyncIterator[Event]:
        yield Delta(text="Half an ans")
        raise RuntimeError("boom")

    channel = FakeChannel()
    assert await relay(broken(), channel) is None
    assert channel.calls[-1].text == APOLOGY and channel.calls[-1].answer_id is None


async def test_failing_preview_edits_do_not_lose_the_final_answer() -> None:
    channel = FakeChannel(fail_edits=True)
    done = await relay(stream(["a ", "b ", "c"], pause=0.06), channel)
    assert done is not None and channel.calls[-1].answer_id == "ans1" and "a b c" in channel.calls[-1].text


@dataclass
class FakeStream(Stream):
    """A platform's own streaming API, scripted: whether it starts, and what relay() handed it."""

    starts: bool = True
    interval: float = 0.02
    updates: list[str] = field(default_factory=list)
    finished: Followed | None = None

    async def start(self) -> bool:
        return self.starts

    async def update(self, text: str) -> None:
        self.updates.append(text)

    async def finish(self, result: Followed) -> None:
        self.finished = result


async def test_a_native_stream_replaces_post_then_edit_unless_it_cannot_start() -> None:
    channel, native = FakeChannel(), FakeStream()
    pieces = [f"w{i} " for i in range(10)]
    done = await relay(stream(pieces, pause=0.01), channel, native)
    assert done is not None and native.finished is not None and native.finished.done is done
    assert native.finished.text == "".join(pieces) and native.updates
    assert all(native.finished.text.startswith(u) for u in native.updates)
    assert channel.calls == [], "nothing posted the post-then-edit way"

    refused = FakeStream(starts=False)
    done = await relay(stream(pieces), channel, refused)
    assert done is not None and refused.updates == [] and refused.finished is None
    assert channel.calls[0].op == "post" and "Thinking" in channel.calls[0].text
    assert channel.calls[-1].answer_id == "ans1" and "w9" in channel.calls[-1].text


def test_reset_phrases_and_feedback_values() -> None:
    assert is_reset(" Reset! ") and is_reset("start over") and not is_reset("how do I reset my password?")
    assert parse_feedback("up:abc") == ("up", "abc")
    assert parse_feedback("meh:abc") is None and parse_feedback("down:") is None


async def test_deduplicator_answers_first_once_across_instances(state: StateBackend) -> None:
    async with open_redis(state.settings) as other:  # a second process (or replica) on the same store
        one, two = create_deduplicator(shared(state)), create_deduplicator(SharedState(state.settings.data_dir, other))
        results = await asyncio.gather(*(d.first("slack:Ev1") for d in (one, two, one, two)))
        assert sorted(results) == [False, False, False, True]
        assert await one.first("slack:Ev2")


async def test_deduplicator_forgets_keys_after_retention(state: StateBackend) -> None:
    brief = (
        SQLiteDeduplicator(state.settings.data_dir / "events.sqlite3", retention_seconds=0.3)
        if state.redis is None
        else RedisDeduplicator(state.redis, retention_seconds=0.3)
    )
    assert await brief.first("telegram:7:1") and not await brief.first("telegram:7:1")
    await asyncio.sleep(0.5)
    assert await brief.first("telegram:7:1")  # past retention, a key may be handled again
