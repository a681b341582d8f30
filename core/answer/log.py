"""Every answer the kit gives, with its sources, and the feedback people leave on it.

Channel-agnostic: the widget, the chat bots and the API all record here, so thumbs up/down from any surface
land next to the exact answer and sources they judge. Conversation keys are opaque strings built by each
surface; ownership checks (may this session rate this answer?) are the surface's job. Each answer carries the
asker's user id (as the surface knows it), so one person's records can be erased on request; erased and expired
text is overwritten on disk (core.sqlite: secure_delete, WAL emptied), not only unlinked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from core.answer import cited, daily, gap_cache
from core.answer.conversations import INDEX as CONVERSATIONS_INDEX
from core.answer.conversations import ConversationQuery, ConversationSummary, find_conversations
from core.config import Settings
from core.sqlite import Periodic, connect, init_db, scrub
from core.types import Citation

logger = logging.getLogger(__name__)

Rating = Literal["up", "down"]
# What kind of answer it was: the model's, "I don't know" (nothing relevant found), or quoted passages (the model
# failed). Kept as a column so analytics need not re-derive it from the text.
Outcome = Literal["answered", "dont_know", "fallback"]

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
    created_at REAL NOT NULL,
    user_id TEXT,
    outcome TEXT,
    first_token_ms REAL,
    total_ms REAL,
    curated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS answers_by_conversation ON answers (channel, conversation, created_at);
CREATE INDEX IF NOT EXISTS answers_by_bot ON answers (bot, created_at);
-- Conversations the kit started answering in, before any answer is logged (see AnswerLog.engage).
CREATE TABLE IF NOT EXISTS engaged (
    channel TEXT NOT NULL,
    conversation TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (channel, conversation)
);
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
    created_at: float
    user_id: str | None = None  # who asked, as the channel identifies them (None: anonymous or logged before)
    outcome: Outcome = "answered"
    first_token_ms: float | None = None  # from the question to the first text of the answer (None: not timed)
    total_ms: float | None = None  # from the question to the whole answer
    curated: bool = False  # an operator's curated answer (core.answer.curated), not generated


@dataclass(frozen=True, kw_only=True)
class Erased:
    """What an erasure removed from the answer log."""

    conversations: int  # conversations the erased answers belonged to
    answers: int
    feedback: int
    curated: int = 0  # questions promoted to curated answers as this user asked them (core.answer.privacy)


@dataclass(frozen=True, kw_only=True)
class Feedback:
    rating: Rating
    comment: str | None


@dataclass(frozen=True, kw_only=True)
class RatedAnswer:
    """A judgement next to the answer and sources it judges (the admin API's feedback listing)."""

    answer: AnswerRecord
    rating: Rating
    comment: str | None
    rated_at: float


_COLUMNS = (
    "a.id, a.channel, a.conversation, a.bot, a.question, a.answer, a.citations, a.cited, a.fallback, a.created_at, "
    "a.user_id, a.outcome, a.first_token_ms, a.total_ms, a.curated"
)
_PURGE_EVERY = 3600.0  # seconds between retention purges (checked on writes)


def _answer(row: tuple[Any, ...]) -> AnswerRecord:
    """An AnswerRecord from the first columns of a row selected with _COLUMNS."""
    return AnswerRecord(
        id=row[0],
        channel=row[1],
        conversation=row[2],
        bot=row[3],
        question=row[4],
        answer=row[5],
        citations=tuple(Citation(**c) for c in json.loads(row[6])),
        cited=bool(row[7]),
        fallback=bool(row[8]),
        created_at=row[9],
        user_id=row[10],
        outcome=row[11],
        first_token_ms=row[12],
        total_ms=row[13],
        curated=bool(row[14]),
    )


_ADDED_COLUMNS = {
    "user_id": "TEXT",
    "outcome": "TEXT",
    "first_token_ms": "REAL",
    "total_ms": "REAL",
    "curated": "INTEGER NOT NULL DEFAULT 0",
}


def _migrate(db: sqlite3.Connection) -> None:
    """Answer logs made before answers carried a user id, an outcome, timings or the curated flag get the columns.
    Old rows get their outcome from the flags they have (an answer without sources that did not fall back said "I
    don't know"); their timings stay unknown (NULL), and analytics leave them out of the percentiles."""
    db.execute("BEGIN IMMEDIATE")  # several processes may open the log at once: one adds the columns
    present = {row[1] for row in db.execute("PRAGMA table_info(answers)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in present:
            db.execute(f"ALTER TABLE answers ADD COLUMN {column} {kind}")
    if "outcome" not in present:
        db.execute(
            "UPDATE answers SET outcome = CASE WHEN fallback THEN 'fallback' "
            "WHEN NOT cited AND citations = '[]' THEN 'dont_know' ELSE 'answered' END"
        )
    db.execute("CREATE INDEX IF NOT EXISTS answers_by_user ON answers (user_id)")
    # Analytics (core.answer.stats) read a period of every bot or of one: covering indexes, so that counting
    # 100,000 answers never reads the rows themselves (measured: 10x faster; docs/benchmarks.md).
    for name, lead in (("answers_stats_by_time", "created_at, bot"), ("answers_stats_by_bot", "bot, created_at")):
        db.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON answers ({lead}, channel, outcome, first_token_ms, total_ms, id)"
        )
    db.execute(CONVERSATIONS_INDEX)
    cited.migrate(db)
    daily.migrate(db)
    gap_cache.migrate(db)
    db.execute("COMMIT")


# Erasing answers: their feedback first (it points at them), then engaged rows of conversations left empty.
_ERASE = (
    "DELETE FROM feedback WHERE answer_id IN (SELECT id FROM doomed)",
    "DELETE FROM answers WHERE id IN (SELECT id FROM doomed)",
    "DELETE FROM engaged WHERE (channel, conversation) IN (SELECT channel, conversation FROM doomed) AND NOT EXISTS "
    "(SELECT 1 FROM answers a WHERE a.channel = engaged.channel AND a.conversation = engaged.conversation)",
)


class AnswerLog:
    def __init__(self, path: Path, retention_days: int | None = None):
        self._path = path
        self._retention = retention_days * 86400 if retention_days else None
        self._purge = Periodic(_PURGE_EVERY)
        init_db(path, _SCHEMA)
        with connect(path) as db:
            _migrate(db)

    @property
    def path(self) -> Path:
        """The SQLite file (core.answer.stats reads it with its own queries)."""
        return self._path

    def _record(self, record: AnswerRecord) -> None:
        citations = json.dumps([asdict(c) for c in record.citations])
        with connect(self._path) as db:
            db.execute(
                "INSERT INTO answers (id, channel, conversation, bot, question, answer, citations, cited, fallback, "
                "created_at, user_id, outcome, first_token_ms, total_ms, curated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    record.created_at,
                    record.user_id,
                    record.outcome,
                    record.first_token_ms,
                    record.total_ms,
                    int(record.curated),
                ),
            )
        if self._purge.due():
            self._purge_expired()

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
        user_id: str | None = None,
        outcome: Outcome = "answered",
        first_token_ms: float | None = None,
        total_ms: float | None = None,
        curated: bool = False,
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
            created_at=time.time(),
            user_id=user_id,
            outcome=outcome,
            first_token_ms=first_token_ms,
            total_ms=total_ms,
            curated=curated,
        )
        await asyncio.to_thread(self._record, record)
        return record.id

    def _erase(self, where: str, params: tuple[str | float, ...]) -> Erased:
        """Erase the answers matching `where` with their feedback, in one transaction, and empty the WAL."""
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                f"CREATE TEMP TABLE doomed AS SELECT id, channel, conversation FROM answers WHERE {where}", params
            )
            (answers,) = db.execute("SELECT count(*) FROM doomed").fetchone()
            (conversations,) = db.execute(
                "SELECT count(*) FROM (SELECT DISTINCT channel, conversation FROM doomed)"
            ).fetchone()
            (feedback,) = db.execute(
                "SELECT count(*) FROM feedback WHERE answer_id IN (SELECT id FROM doomed)"
            ).fetchone()
            for statement in _ERASE:
                db.execute(statement)
            db.execute("DROP TABLE doomed")
            db.execute("COMMIT")
            scrub(db)
        return Erased(conversations=conversations, answers=answers, feedback=feedback)

    def _forget(self, channel: str, conversation: str) -> Erased:
        erased = self._erase("channel = ? AND conversation = ?", (channel, conversation))
        with connect(self._path) as db:  # a conversation the kit engaged in but never finished an answer in
            db.execute("DELETE FROM engaged WHERE channel = ? AND conversation = ?", (channel, conversation))
            scrub(db)
        return erased

    async def forget_conversation(self, channel: str, conversation: str) -> Erased:
        """Erase a conversation: its answers, their feedback, and the note that the kit engaged in it."""
        return await asyncio.to_thread(self._forget, channel, conversation)

    def _user_conversations(self, user_id: str, channel: str | None) -> list[tuple[str, str]]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT DISTINCT channel, conversation FROM answers "
                "WHERE user_id = ?1 AND (?2 IS NULL OR channel = ?2)",
                (user_id, channel),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    async def user_conversations(self, user_id: str, channel: str | None = None) -> list[tuple[str, str]]:
        """(channel, conversation) of every conversation in which the user asked something."""
        return await asyncio.to_thread(self._user_conversations, user_id, channel)

    async def forget_user(self, user_id: str, channel: str | None = None) -> Erased:
        """Erase every answer the user asked for (on one channel, or on all), with its feedback."""
        if channel is None:
            return await asyncio.to_thread(self._erase, "user_id = ?", (user_id,))
        return await asyncio.to_thread(self._erase, "user_id = ? AND channel = ?", (user_id, channel))

    def _purge_expired(self) -> int:
        if self._retention is None:
            return 0
        cutoff = time.time() - self._retention
        erased = self._erase("created_at < ?", (cutoff,))
        with connect(self._path) as db:  # engaged long ago, and nothing answered there since
            db.execute("DELETE FROM engaged WHERE created_at < ?", (cutoff,))
        if erased.answers:
            logger.info("purged %d answers older than ANSWER_LOG_RETENTION_DAYS", erased.answers)
        return erased.answers

    async def purge_expired(self) -> int:
        """Erase answers (and their feedback) older than the retention period; how many. Runs at startup, then at
        most hourly as answers are recorded."""
        return await asyncio.to_thread(self._purge_expired)

    def _rows(self, where: str, params: tuple[str, ...]) -> list[AnswerRecord]:
        with connect(self._path) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM answers a WHERE {where} ORDER BY created_at, rowid", params
            ).fetchall()
        return [_answer(r) for r in rows]

    async def get(self, answer_id: str) -> AnswerRecord | None:
        rows = await asyncio.to_thread(self._rows, "id = ?", (answer_id,))
        return rows[0] if rows else None

    async def conversation(self, channel: str, conversation: str) -> list[AnswerRecord]:
        return await asyncio.to_thread(self._rows, "channel = ? AND conversation = ?", (channel, conversation))

    def _engage(self, channel: str, conversation: str) -> None:
        with connect(self._path) as db:
            db.execute("INSERT OR IGNORE INTO engaged VALUES (?, ?, ?)", (channel, conversation, time.time()))

    async def engage(self, channel: str, conversation: str) -> None:
        """Note that the kit has started answering in a conversation: `engaged` is true from now on, in every
        process sharing the data directory, not only once the first answer is finished and logged."""
        await asyncio.to_thread(self._engage, channel, conversation)

    def _engaged(self, channel: str, conversation: str) -> bool:
        # Answers logged before the engaged table existed count too.
        with connect(self._path) as db:
            row = db.execute(
                "SELECT 1 FROM engaged WHERE channel = ?1 AND conversation = ?2 "
                "UNION ALL SELECT 1 FROM answers WHERE channel = ?1 AND conversation = ?2 LIMIT 1",
                (channel, conversation),
            ).fetchone()
        return row is not None

    async def engaged(self, channel: str, conversation: str) -> bool:
        """Whether the kit answered, or started answering, in this conversation."""
        return await asyncio.to_thread(self._engaged, channel, conversation)

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

    def _rated(self, bot: str | None, rating: Rating | None, limit: int) -> list[RatedAnswer]:
        with connect(self._path) as db:
            rows = db.execute(
                f"SELECT {_COLUMNS}, f.rating, f.comment, f.created_at FROM feedback f "
                "JOIN answers a ON a.id = f.answer_id "
                "WHERE (:bot IS NULL OR a.bot = :bot) AND (:rating IS NULL OR f.rating = :rating) "
                "ORDER BY f.created_at DESC, f.rowid DESC LIMIT :limit",
                {"bot": bot, "rating": rating, "limit": limit},
            ).fetchall()
        return [RatedAnswer(answer=_answer(r), rating=r[15], comment=r[16], rated_at=r[17]) for r in rows]

    async def rated_answers(
        self, *, bot: str | None = None, rating: Rating | None = None, limit: int = 100
    ) -> list[RatedAnswer]:
        """The latest feedback first, each with the answer it judges."""
        return await asyncio.to_thread(self._rated, bot, rating, limit)

    async def conversations(self, query: ConversationQuery) -> list[ConversationSummary]:
        """A bot's conversations (those matching the query), the most recently active first."""
        return await asyncio.to_thread(find_conversations, self._path, query)


def create_answer_log(settings: Settings) -> AnswerLog:
    return AnswerLog(settings.data_dir / "answers.sqlite3", settings.answer_log_retention_days)
