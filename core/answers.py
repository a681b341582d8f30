"""Every answer the kit gives, with its sources, and the feedback people leave on it.

Channel-agnostic: the widget, the chat bots and the API all record here, so thumbs up/down from any surface
land next to the exact answer and sources they judge. Conversation keys are opaque strings built by each
surface; ownership checks (may this session rate this answer?) are the surface's job.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from core.sqlite import connect, init_db
from core.types import Citation

Rating = Literal["up", "down"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    bot TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    cited INTEGER NOT NULL,
    fallback INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_by_conversation ON answers (channel, conversation, created_at);
CREATE TABLE IF NOT EXISTS feedback (
    answer_id TEXT PRIMARY KEY REFERENCES answers (id),
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment TEXT,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True)
class AnswerRecord:
    id: str
    channel: str
    conversation: str
    bot: str
    question: str
    answer: str
    citations: tuple[Citation, ...]
    cited: bool
    fallback: bool


@dataclass(frozen=True, kw_only=True)
class Feedback:
    rating: Rating
    comment: str | None


class AnswerLog:
    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA)

    def _record(self, record: AnswerRecord) -> None:
        citations = json.dumps([asdict(c) for c in record.citations])
        with connect(self._path) as db:
            db.execute(
                "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.channel,
                    record.conversation,
                    record.bot,
                    record.question,
                    record.answer,
                    citations,
                    int(record.cited),
                    int(record.fallback),
                    time.time(),
                ),
            )

    async def record(
        self,
        *,
        channel: str,
        conversation: str,
        bot: str,
        question: str,
        answer: str,
        citations: tuple[Citation, ...],
        cited: bool,
        fallback: bool,
    ) -> str:
        record = AnswerRecord(
            id=uuid.uuid4().hex,
            channel=channel,
            conversation=conversation,
            bot=bot,
            question=question,
            answer=answer,
            citations=citations,
            cited=cited,
            fallback=fallback,
        )
        await asyncio.to_thread(self._record, record)
        return record.id

    def _rows(self, where: str, params: tuple[str, ...]) -> list[AnswerRecord]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT id, channel, conversation, bot, question, answer, citations, cited, fallback FROM answers "
                f"WHERE {where} ORDER BY created_at, rowid",
                params,
            ).fetchall()
        return [
            AnswerRecord(
                id=r[0],
                channel=r[1],
                conversation=r[2],
                bot=r[3],
                question=r[4],
                answer=r[5],
                citations=tuple(Citation(**c) for c in json.loads(r[6])),
                cited=bool(r[7]),
                fallback=bool(r[8]),
            )
            for r in rows
        ]

    async def get(self, answer_id: str) -> AnswerRecord | None:
        rows = await asyncio.to_thread(self._rows, "id = ?", (answer_id,))
        return rows[0] if rows else None

    async def conversation(self, channel: str, conversation: str) -> list[AnswerRecord]:
        return await asyncio.to_thread(self._rows, "channel = ? AND conversation = ?", (channel, conversation))

    def _latest(self, channel: str, prefix: str) -> str | None:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with connect(self._path) as db:
            row = db.execute(
                "SELECT conversation FROM answers WHERE channel = ? AND conversation LIKE ? ESCAPE '\\' "
                "ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (channel, escaped + "%"),
            ).fetchone()
        return row[0] if row else None

    async def latest_conversation(self, channel: str, prefix: str) -> str | None:
        """The most recent conversation whose key starts with `prefix` (e.g. one verified user's)."""
        return await asyncio.to_thread(self._latest, channel, prefix)

    def _feedback(self, answer_id: str, rating: Rating, comment: str | None) -> None:
        with connect(self._path) as db:
            db.execute(
                "INSERT INTO feedback VALUES (?, ?, ?, ?) ON CONFLICT (answer_id) DO UPDATE SET "
                "rating = excluded.rating, comment = COALESCE(excluded.comment, feedback.comment), "
                "created_at = excluded.created_at",
                (answer_id, rating, comment, time.time()),
            )

    async def add_feedback(self, answer_id: str, rating: Rating, comment: str | None = None) -> None:
        """One judgement per answer; a later one replaces the rating and keeps an earlier comment."""
        await asyncio.to_thread(self._feedback, answer_id, rating, comment)

    def _get_feedback(self, answer_id: str) -> Feedback | None:
        with connect(self._path) as db:
            row = db.execute("SELECT rating, comment FROM feedback WHERE answer_id = ?", (answer_id,)).fetchone()
        return Feedback(rating=row[0], comment=row[1]) if row else None

    async def feedback(self, answer_id: str) -> Feedback | None:
        return await asyncio.to_thread(self._get_feedback, answer_id)
