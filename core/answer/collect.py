"""One way to consume an answer: read `Assistant.answer()`'s event stream to its end and get the final `Done`,
or `AnswerFailed` carrying the reason. Surfaces that need the whole answer (the CLI, MCP, /v1 without
streaming) call it as it is; streaming surfaces pass `on_text` to show each piece as it arrives."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from core.errors import AnswerFailed
from core.types import Delta, Done, Event, Failed

INCOMPLETE = "The answer ended unexpectedly."


async def collect(events: AsyncIterator[Event], on_text: Callable[[str], None] | None = None) -> Done:
    """The answer's `Done`; raises AnswerFailed on a `Failed` event or a stream that ends without `Done`.

    Reads the stream to its very end, past `Done` or `Failed` (always its last event): the answer stays
    counted in flight until its generator finishes, which a consumer leaving early would postpone to
    garbage collection."""
    done: Done | None = None
    failure = INCOMPLETE
    async for event in events:
        if isinstance(event, Delta):
            if on_text is not None:
                on_text(event.text)
        elif isinstance(event, Done):
            done = event
        elif isinstance(event, Failed):
            failure = event.reason
    if done is None:
        raise AnswerFailed(failure)
    return done
