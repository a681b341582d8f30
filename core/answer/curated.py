"""Curated answers: an operator's own answer to a question (and its paraphrases), given instead of a generated one
when a question comes close enough to one of them (CURATED_MIN_SIMILARITY, cosine with the kit's embedder).

Kept in SQLite next to the answer log (curated.sqlite3), one embedding per phrasing; matched in memory by
core.answer.curated_index.

Privacy: promoting an answer as it was asked copies the asker's question. Such a phrasing remembers whose words it
is (user, channel, conversation), and erasing that user or conversation erases it; a curated answer left without
any phrasing goes too. What the operator wrote (the answer, their own paraphrases, a reworded question) stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from core.answer.curated_data import Asker, Curated, CuratedInput, Match
from core.answer.curated_index import QuestionIndex, embed_unit
from core.config import Settings
from core.embed import Embedder
from core.errors import CuratedError
from core.sqlite import connect, init_db, scrub
from core.types import Citation

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS curated (
    id TEXT PRIMARY KEY,
    bot TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    promoted_from TEXT,  -- the answer log id it was promoted from
    hits INTEGER NOT NULL DEFAULT 0,
    last_hit_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS curated_by_bot ON curated (bot);
-- The question and its paraphrases, first one first. user_id/channel/conversation: set when the text is a
-- user's question copied as asked (erased with that user or conversation).
CREATE TABLE IF NOT EXISTS phrasings (
    curated_id TEXT NOT NULL REFERENCES curated (id),
    position INTEGER NOT NULL,
    text TEXT NOT NULL,
    embed_model TEXT NOT NULL,
    vector BLOB NOT NULL,
    user_id TEXT,
    channel TEXT,
    conversation TEXT,
    PRIMARY KEY (curated_id, position)
);
CREATE INDEX IF NOT EXISTS phrasings_by_user ON phrasings (user_id);
CREATE TABLE IF NOT EXISTS generation (n INTEGER NOT NULL);
INSERT INTO generation SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
"""


class CuratedAnswers:
    def __init__(self, path: Path, embedder: Embedder | None, min_similarity: float):
        """`embedder` None: erasing and listing only (the CLI's erasure loads no model)."""
        self._path = path
        self._embedder = embedder
        self.min_similarity = min_similarity
        init_db(path, _SCHEMA)
        self._index = QuestionIndex(path, lambda: self.embedder)

    # --- writing --------------------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            raise CuratedError("curated answers were opened without an embedder")
        return self._embedder

    def _embed(self, texts: list[str]) -> list[bytes]:
        return embed_unit(self.embedder, texts)

    def _insert(
        self,
        db: sqlite3.Connection,
        entry: CuratedInput,
        vectors: list[bytes],
        asked_by: Asker | None,
        promoted_from: str | None,
    ) -> str:
        curated_id, now = uuid.uuid4().hex, time.time()
        citations = json.dumps([asdict(c) for c in entry.citations])
        db.execute(
            "INSERT INTO curated (id, bot, answer, citations, promoted_from, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (curated_id, entry.bot, entry.answer, citations, promoted_from, now, now),
        )
        self._write_phrasings(db, curated_id, entry.questions, vectors, asked_by)
        return curated_id

    def _write_phrasings(
        self,
        db: sqlite3.Connection,
        curated_id: str,
        questions: Sequence[str],
        vectors: list[bytes],
        asked_by: Asker | None,
    ) -> None:
        """Replace the phrasings (embedded before the transaction: it must not hold the write lock while the model
        runs); the first keeps `asked_by` (a user's own question) when given."""
        db.execute("DELETE FROM phrasings WHERE curated_id = ?", (curated_id,))
        for position, (text, vector) in enumerate(zip(questions, vectors, strict=True)):
            who = asked_by if position == 0 else None
            db.execute(
                "INSERT INTO phrasings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    curated_id,
                    position,
                    text,
                    self.embedder.name,
                    vector,
                    who.user_id if who else None,
                    who.channel if who else None,
                    who.conversation if who else None,
                ),
            )

    def _add(self, entry: CuratedInput, asked_by: Asker | None, promoted_from: str | None) -> str:
        vectors = self._embed(list(entry.questions))
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            curated_id = self._insert(db, entry, vectors, asked_by, promoted_from)
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
        return curated_id

    async def add(
        self, entry: CuratedInput, *, asked_by: Asker | None = None, promoted_from: str | None = None
    ) -> Curated:
        """Store a curated answer. `asked_by`: the first question is that user's own words (see the module doc)."""
        curated_id = await asyncio.to_thread(self._add, entry.checked(), asked_by, promoted_from)
        return await self._must_get(curated_id)

    def _import(self, entries: list[CuratedInput]) -> tuple[int, int]:
        added = replaced = 0
        flat = self._embed([q for e in entries for q in e.questions])  # one batched call for the whole file
        vectors = []
        for entry in entries:
            vectors.append(flat[: len(entry.questions)])
            flat = flat[len(entry.questions) :]
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")  # all or nothing
            for entry, entry_vectors in zip(entries, vectors, strict=True):
                # Loading the same FAQ again replaces its answers instead of adding them twice.
                row = db.execute(
                    "SELECT c.id FROM curated c JOIN phrasings p ON p.curated_id = c.id "
                    "WHERE c.bot = ? AND p.position = 0 AND p.text = ?",
                    (entry.bot, entry.questions[0]),
                ).fetchone()
                if row:
                    self._delete_rows(db, row[0])
                    replaced += 1
                else:
                    added += 1
                self._insert(db, entry, entry_vectors, None, None)
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
        return added, replaced

    async def import_many(self, entries: Sequence[CuratedInput]) -> tuple[int, int]:
        """Operator-written answers in one transaction: (added, replaced — same bot and first question)."""
        checked = [e.checked() for e in entries]
        return await asyncio.to_thread(self._import, checked)

    def _update(
        self, curated_id: str, answer: str | None, questions: tuple[str, ...] | None, citations: tuple[Citation, ...]
    ) -> bool:
        vectors = self._embed(list(questions)) if questions is not None else []
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM curated WHERE id = ?", (curated_id,)).fetchone() is None:
                return False
            if answer is not None:
                db.execute(
                    "UPDATE curated SET answer = ?, citations = ?, updated_at = ? WHERE id = ?",
                    (answer, json.dumps([asdict(c) for c in citations]), time.time(), curated_id),
                )
            if questions is not None:
                # A user's question the operator kept stays theirs (and erasable); new text is the operator's.
                kept = db.execute(
                    "SELECT text, user_id, channel, conversation FROM phrasings "
                    "WHERE curated_id = ? AND channel IS NOT NULL",
                    (curated_id,),
                ).fetchall()
                self._write_phrasings(db, curated_id, questions, vectors, None)
                for text, user_id, channel, conversation in kept:
                    db.execute(
                        "UPDATE phrasings SET user_id = ?, channel = ?, conversation = ? "
                        "WHERE curated_id = ? AND text = ?",
                        (user_id, channel, conversation, curated_id, text),
                    )
                db.execute("UPDATE curated SET updated_at = ? WHERE id = ?", (time.time(), curated_id))
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
        return True

    async def update(
        self,
        curated_id: str,
        *,
        answer: str | None = None,
        questions: Sequence[str] | None = None,
        citations: Sequence[Citation] | None = None,
    ) -> Curated | None:
        """Change the answer (with its sources: the given ones, else the current ones) and/or the questions."""
        current = await self.get(curated_id)
        if current is None:
            return None
        entry = CuratedInput(
            bot=current.bot,
            questions=tuple(questions) if questions is not None else current.questions,
            answer=answer if answer is not None else current.answer,
            citations=tuple(citations) if citations is not None else current.citations,
        ).checked()
        changed = await asyncio.to_thread(
            self._update,
            curated_id,
            entry.answer if answer is not None or citations is not None else None,
            entry.questions if questions is not None else None,
            entry.citations,
        )
        return await self.get(curated_id) if changed else None

    @staticmethod
    def _delete_rows(db: sqlite3.Connection, curated_id: str) -> None:
        db.execute("DELETE FROM phrasings WHERE curated_id = ?", (curated_id,))
        db.execute("DELETE FROM curated WHERE id = ?", (curated_id,))

    def _delete(self, curated_id: str) -> bool:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            found = db.execute("SELECT 1 FROM curated WHERE id = ?", (curated_id,)).fetchone() is not None
            self._delete_rows(db, curated_id)
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
            scrub(db)
        return found

    async def delete(self, curated_id: str) -> bool:
        return await asyncio.to_thread(self._delete, curated_id)

    def _erase(self, where: str, params: tuple[str, ...]) -> int:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            erased = db.execute(f"DELETE FROM phrasings WHERE {where}", params).rowcount
            db.execute("DELETE FROM curated WHERE id NOT IN (SELECT curated_id FROM phrasings)")
            db.execute("UPDATE generation SET n = n + 1")
            db.execute("COMMIT")
            scrub(db)
        return erased

    async def forget_user(self, user_id: str, channel: str | None = None) -> int:
        """Erase the questions promoted as this user asked them; how many."""
        if channel is None:
            return await asyncio.to_thread(self._erase, "user_id = ?", (user_id,))
        return await asyncio.to_thread(self._erase, "user_id = ? AND channel = ?", (user_id, channel))

    async def forget_conversation(self, channel: str, conversation: str) -> int:
        return await asyncio.to_thread(self._erase, "channel = ? AND conversation = ?", (channel, conversation))

    # --- reading --------------------------------------------------------------------------------------------

    def _rows(self, where: str, params: tuple[str, ...]) -> list[Curated]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT id, bot, answer, citations, promoted_from, hits, last_hit_at, created_at, updated_at "
                f"FROM curated WHERE {where} ORDER BY created_at, rowid",
                params,
            ).fetchall()
            texts: dict[str, list[str]] = {}
            for curated_id, text in db.execute(
                f"SELECT curated_id, text FROM phrasings WHERE curated_id IN (SELECT id FROM curated WHERE {where}) "
                "ORDER BY curated_id, position",
                params,
            ):
                texts.setdefault(curated_id, []).append(text)
        return [
            Curated(
                id=r[0],
                bot=r[1],
                questions=tuple(texts.get(r[0], ())),
                answer=r[2],
                citations=tuple(Citation(**c) for c in json.loads(r[3])),
                promoted_from=r[4],
                hits=r[5],
                last_hit_at=r[6],
                created_at=r[7],
                updated_at=r[8],
            )
            for r in rows
        ]

    async def get(self, curated_id: str) -> Curated | None:
        rows = await asyncio.to_thread(self._rows, "id = ?", (curated_id,))
        return rows[0] if rows else None

    async def _must_get(self, curated_id: str) -> Curated:
        found = await self.get(curated_id)
        if found is None:  # deleted by another process in between
            raise CuratedError(f"curated answer {curated_id} was deleted meanwhile")
        return found

    async def list(self, bot: str | None = None) -> list[Curated]:
        if bot is None:
            return await asyncio.to_thread(self._rows, "1 = 1", ())
        return await asyncio.to_thread(self._rows, "bot = ?", (bot,))

    # --- matching -------------------------------------------------------------------------------------------

    def _match(self, bot: str, question: str) -> tuple[str, str, float] | None:
        found = self._index.nearest(bot, question)
        if found is None or found[2] < self.min_similarity:
            return None
        with connect(self._path) as db:
            db.execute("UPDATE curated SET hits = hits + 1, last_hit_at = ? WHERE id = ?", (time.time(), found[0]))
        return found

    async def match(self, bot: str, question: str) -> Match | None:
        """The curated answer whose closest phrasing is at least CURATED_MIN_SIMILARITY to the question (its hit
        counted), or None."""
        found = await asyncio.to_thread(self._match, bot, question)
        if found is None:
            return None
        curated = await self.get(found[0])
        return Match(curated=curated, similarity=found[2], question=found[1]) if curated else None


def create_curated(settings: Settings, embedder: Embedder | None) -> CuratedAnswers:
    return CuratedAnswers(settings.data_dir / "curated.sqlite3", embedder, settings.curated_min_similarity)
