"""Which sources each answer cited, as rows (the answer log's `cited` table), so "top sources cited" counts an
index range instead of parsing every answer's citations JSON (core.answer.stats).

Measured on 100,000 answers (bench/console.py, docs/benchmarks.md): json_each over the period's answers took
1.4 s for 30 days; the covering index (created_at, bot, source, title) counts the same in tens of ms.
Triggers keep the table in step with `answers` for every writer (AnswerLog, the test and bench fillers): a row
per (answer, source) of an answer that cited its sources, gone when the answer is erased or expires.
"""

from __future__ import annotations

import sqlite3

# Statements, not a script: migrate() runs them inside the log's migration transaction (executescript would commit).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cited (answer_id TEXT NOT NULL, source TEXT NOT NULL, title TEXT, bot TEXT NOT NULL, "
    "created_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS cited_by_answer ON cited (answer_id)",
    "CREATE INDEX IF NOT EXISTS cited_by_time ON cited (created_at, bot, source, title)",
    "CREATE INDEX IF NOT EXISTS cited_by_bot ON cited (bot, created_at, source, title)",
    "CREATE TRIGGER IF NOT EXISTS answers_cited AFTER INSERT ON answers WHEN new.cited BEGIN "
    "INSERT INTO cited SELECT new.id, json_extract(value, '$.source') AS src, max(json_extract(value, '$.title')), "
    "new.bot, new.created_at FROM json_each(new.citations) WHERE src IS NOT NULL GROUP BY src; END",
    "CREATE TRIGGER IF NOT EXISTS answers_uncited AFTER DELETE ON answers BEGIN "
    "DELETE FROM cited WHERE answer_id = old.id; END",
)

# Every answer logged before the table existed: filled once, when the log is opened by this version.
_BACKFILL = (
    "INSERT INTO cited SELECT a.id, json_extract(c.value, '$.source') AS src, max(json_extract(c.value, '$.title')), "
    "a.bot, a.created_at FROM answers a, json_each(a.citations) c WHERE a.cited AND src IS NOT NULL "
    "GROUP BY a.id, src"
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the table, its indexes and triggers; fill it from the log's answers if it is new. In the
    caller's transaction."""
    new = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cited'").fetchone() is None
    for statement in SCHEMA:
        db.execute(statement)
    if new:
        db.execute(_BACKFILL)


def top_sources(db: sqlite3.Connection, params: dict[str, object], limit: int) -> list[tuple[str, str | None, int]]:
    """(source, title, answers citing it) in the period (:since, :until) of every bot or :bot, most cited first."""
    where = "created_at >= :since AND created_at < :until"
    if params["bot"] is not None:
        where = f"bot = :bot AND {where}"
    rows = db.execute(
        f"SELECT source, max(title), count(*) FROM cited WHERE {where} GROUP BY source ORDER BY 3 DESC, source "
        f"LIMIT {int(limit)}",
        params,
    ).fetchall()
    return [(s, t, n) for s, t, n in rows]
