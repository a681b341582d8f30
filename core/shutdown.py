"""Graceful shutdown (SIGTERM): stop taking new work, let the answers in flight finish for a bounded time
(SHUTDOWN_GRACE_SECONDS), cancel those still running, then close the clients.

Every surface answers through `Assistant.answer`, and the chat bots through `Responder.answer`, so one
`InFlight` on the Assistant counts the answers of the whole process. How each surface stops taking work
differs (uvicorn closes its sockets, the bots disconnect from their platform); draining is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from core.types import Event, Failed

logger = logging.getLogger(__name__)

# After the grace period: how long a cancelled answer may take to wind up (a chat answer edits its message
# to say it was interrupted) before the process closes its clients regardless.
CANCEL_SECONDS = 5.0
# An HTTP answer still running this long before the grace period ends is cut off with a Failed event, so its
# response ends properly (an error event the client shows) before uvicorn would cancel it mid-stream.
CUT_OFF_SECONDS = 0.5
INTERRUPTED = "The answer was interrupted because the assistant is restarting. Please ask again in a moment."


class InFlight:
    """The tasks answering right now. A task counts once, however deeply its tracked calls nest (a bot's
    relay around the Assistant's answer)."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[object], int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._deadline: float | None = None
        self._cut_off_at: float | None = None  # in the event loop's clock, as asyncio.timeout_at wants it
        self._limits: set[asyncio.Timeout] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None, "answers run in a task"
        self._tasks[task] = self._tasks.get(task, 0) + 1
        self._idle.clear()
        try:
            yield
        finally:  # `task`, not current_task(): a generator may be finalised from another task
            depth = self._tasks.pop(task) - 1
            if depth:
                self._tasks[task] = depth
            elif not self._tasks:
                self._idle.set()

    def closing(self, grace: float) -> None:
        """Shutdown began: the grace period starts now (once, however many layers report it)."""
        if self._deadline is None:
            self._deadline = time.monotonic() + grace
            self._cut_off_at = asyncio.get_running_loop().time() + max(0.0, grace - CUT_OFF_SECONDS)
            for limit in self._limits:
                limit.reschedule(self._cut_off_at)
            logger.info("shutting down: %d answers in flight", len(self))

    async def bounded(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        """`events`, unless the grace period is about to end first: then a Failed saying so, and no more."""
        while True:
            # A timeout without a deadline until shutdown begins (closing() sets it): no task per event.
            # The cut-off is a point in the loop's clock: timeout_at, not timeout (which takes a delay).
            limit = asyncio.timeout_at(self._cut_off_at)
            try:
                async with limit:
                    self._limits.add(limit)
                    try:
                        event = await anext(events)
                    finally:
                        self._limits.discard(limit)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not limit.expired():  # the answer's own timeout, not ours
                    raise
                yield Failed(reason=INTERRUPTED)
                return
            yield event

    async def drain(self, grace: float) -> None:
        """Wait for the answers in flight until the grace period ends, then cancel the rest and give them
        CANCEL_SECONDS to end."""
        self.closing(grace)
        assert self._deadline is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, self._deadline - time.monotonic()))
        late = list(self._tasks)
        if not late:
            return
        logger.warning("shutting down: cancelling %d answers still running after %.0f s", len(late), grace)
        for task in late:
            task.cancel()
        await asyncio.wait(late, timeout=CANCEL_SECONDS)


async def until_sigterm(work: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `work` until it ends (then None; its error is raised here) or until SIGTERM: then its task, still
    running, for the caller to wind down in the order its surface needs."""
    task = asyncio.create_task(work)
    terminated = asyncio.create_task(sigterm())
    try:
        await asyncio.wait({task, terminated}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # Ctrl-C
        task.cancel()
        raise
    finally:
        terminated.cancel()
    if task.done():
        task.result()
        return None
    return task


async def sigterm() -> None:
    """Return once the process receives SIGTERM. A second SIGTERM after that kills it at once."""
    loop = asyncio.get_running_loop()
    received = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, received.set)
    try:
        await received.wait()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
