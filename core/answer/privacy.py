"""Erasure on request: one conversation ("forget this conversation"), or everything of one user.

The stores that hold what people said each erase their own part: the conversation memory (core.answer.history,
SQLite or Redis), the answer log with its feedback (core.answer.log), and the questions an operator promoted to
curated answers as the user asked them (core.answer.curated). Memory goes first: if Redis is down the
erasure fails before the log is touched, and running it again finds the same conversations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from core.answer.curated import CuratedAnswers, create_curated
from core.answer.history import HistoryStore, create_history
from core.answer.log import AnswerLog, Erased, create_answer_log
from core.config import Settings
from core.shared_state import open_redis


class Records(Protocol):
    """Where conversations are kept: the assistant, or only these two stores (open_records)."""

    @property
    def history(self) -> HistoryStore: ...

    @property
    def answers(self) -> AnswerLog: ...

    @property
    def curated(self) -> CuratedAnswers | None: ...


@dataclass(frozen=True, kw_only=True)
class _Stores:
    history: HistoryStore
    answers: AnswerLog
    curated: CuratedAnswers | None


@asynccontextmanager
async def open_records(settings: Settings) -> AsyncIterator[Records]:
    """The stores alone, for the CLI's erasure: no knowledge base or model to start (erasing needs no embedder)."""
    async with open_redis(settings) as redis:
        yield _Stores(
            history=create_history(settings, redis),
            answers=create_answer_log(settings),
            curated=create_curated(settings, None),
        )


async def forget_conversation(records: Records, channel: str, conversation: str) -> Erased:
    """Erase a conversation from memory and from the answer log (its answers and their feedback)."""
    await records.history.reset(channel, conversation)
    erased = await records.answers.forget_conversation(channel, conversation)
    if records.curated is None:
        return erased
    return dataclasses.replace(erased, curated=await records.curated.forget_conversation(channel, conversation))


async def forget_user(records: Records, user_id: str, channel: str | None = None) -> Erased:
    """Erase every answer a user asked for, on one channel or on all, with its feedback, and the memory of every
    conversation they asked in (memory turns carry no author, so a thread shared with others loses its memory
    too; the others' answers stay in the log)."""
    for where, conversation in await records.answers.user_conversations(user_id, channel):
        await records.history.reset(where, conversation)
    erased = await records.answers.forget_user(user_id, channel)
    if records.curated is None:
        return erased
    return dataclasses.replace(erased, curated=await records.curated.forget_user(user_id, channel))
