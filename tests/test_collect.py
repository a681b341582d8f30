"""collect(): the one way a surface reads a whole answer, and the plain-text sources the CLI and MCP show."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.answer.citations import final_text, sources_text
from core.answer.collect import INCOMPLETE, collect
from core.errors import AnswerFailed
from core.types import Citation, Delta, Done, Event, Failed, Sources

CITATION = Citation(n=1, title="Install", source="https://kestrel.example/install", section="Ports", snippet="")
DONE = Done(answer_id="a1", text="Port 8470 [1].", citations=(CITATION,), cited=True, fallback=False)


class Script:
    """A scripted answer stream that records whether it ran to its end (its generator finished)."""

    def __init__(self, *events: Event):
        self.events = events
        self.finished = False

    async def stream(self) -> AsyncIterator[Event]:
        try:
            for event in self.events:
                yield event
        finally:
            self.finished = True


async def test_the_done_event_with_each_piece_seen_as_it_arrives() -> None:
    script = Script(Sources(sources=(CITATION,)), Delta(text="Port "), Delta(text="8470 [1]."), DONE)
    pieces: list[str] = []
    assert await collect(script.stream(), pieces.append) == DONE
    assert pieces == ["Port ", "8470 [1]."]
    assert script.finished  # read to the end: the answer no longer counts as in flight


async def test_a_failed_answer_raises_its_reason() -> None:
    script = Script(Failed(reason="The knowledge base is unavailable right now."))
    with pytest.raises(AnswerFailed, match="knowledge base is unavailable"):
        await collect(script.stream())
    assert script.finished


async def test_a_stream_cut_short_is_a_failure_too() -> None:
    with pytest.raises(AnswerFailed) as raised:
        await collect(Script(Sources(sources=(CITATION,)), Delta(text="Half")).stream())
    assert str(raised.value) == INCOMPLETE


def test_plain_text_sources_say_consulted_when_nothing_was_cited() -> None:
    assert final_text(DONE) == "Port 8470 [1].\n\nSources:\n[1] Install › Ports — https://kestrel.example/install"
    consulted = Done(answer_id="a2", text="Port 8470.", citations=(CITATION,), cited=False, fallback=False)
    assert sources_text(consulted).startswith("Sources consulted:\n[1] Install › Ports")
    nothing = Done(answer_id="a3", text="I couldn't find it.", citations=(), cited=False, fallback=False)
    assert sources_text(nothing) == "" and final_text(nothing) == "I couldn't find it."
