"""Knowledge gaps remembered in the answer log's database (the `gap_cache` table), so loading Analytics again
does not embed and cluster the same questions again (~0.6 s for 500 questions at 100k answers, docs/benchmarks.md).

The key is what the clustering depends on: the embedder's name and the exact questions, in order (so a new
unanswered or 👎 question, a rating changed or a period that moves past one makes a new key; an answer that adds
no gap question reuses the entry). Gaps quote questions, so erasing or expiring any answer empties the table (a
trigger, in the erasure's own transaction, with secure_delete: erased text leaves the cache with the answer). An
erasure while the gaps are computed bumps an epoch, and the result of the older questions is not stored.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from core.answer.gaps import Gap, knowledge_gaps
from core.embed import Embedder
from core.sqlite import connect

KEEP = 32  # entries kept (periods × bots the console asks for); the oldest go first

# Statements, not a script: migrate() runs them inside the log's migration transaction.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gap_cache (key TEXT PRIMARY KEY, gaps TEXT NOT NULL, created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gap_epoch (n INTEGER NOT NULL)",
    "INSERT INTO gap_epoch SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM gap_epoch)",
    "CREATE TRIGGER IF NOT EXISTS gap_cache_erased AFTER DELETE ON answers BEGIN "
    "DELETE FROM gap_cache; UPDATE gap_epoch SET n = n + 1; END",
    "CREATE TRIGGER IF NOT EXISTS gap_cache_rewritten AFTER UPDATE OF question ON answers BEGIN "
    "DELETE FROM gap_cache; UPDATE gap_epoch SET n = n + 1; END",
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables and triggers. In the caller's transaction."""
    for statement in SCHEMA:
        db.execute(statement)


def epoch(db: sqlite3.Connection) -> int:
    """Read before the questions: a later erasure changes it, and the gaps of those questions are not stored."""
    (n,) = db.execute("SELECT n FROM gap_epoch").fetchone()
    return int(n)


def _key(questions: list[str], embedder: str) -> str:
    return hashlib.sha256(json.dumps([embedder, questions]).encode()).hexdigest()


def _load(path: Path, key: str) -> list[Gap] | None:
    with connect(path) as db:
        row = db.execute("SELECT gaps FROM gap_cache WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    return [Gap(questions=n, distinct=d, examples=tuple(e)) for n, d, e in json.loads(row[0])]


def _store(path: Path, key: str, gaps: list[Gap], read_at: int) -> None:
    text = json.dumps([[g.questions, g.distinct, list(g.examples)] for g in gaps])
    with connect(path) as db:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR REPLACE INTO gap_cache SELECT ?, ?, ? WHERE (SELECT n FROM gap_epoch) = ?",
            (key, text, time.time(), read_at),
        )
        db.execute(
            f"DELETE FROM gap_cache WHERE key NOT IN (SELECT key FROM gap_cache ORDER BY created_at DESC LIMIT {KEEP})"
        )
        db.execute("COMMIT")


def cached_gaps(path: Path, questions: list[str], embedder: Embedder, read_at: int) -> list[Gap]:
    """knowledge_gaps of the questions (read at epoch `read_at`), from the cache or computed and stored."""
    key = _key(questions, embedder.name)
    gaps = _load(path, key)
    if gaps is None:
        gaps = knowledge_gaps(questions, embedder.embed_documents)
        _store(path, key, gaps, read_at)
    return gaps
