"""Which sources each answer cited, as rows (the answer log's `cited` table), so "top sources cited" counts an
index range instead of parsing every answer's citations JSON (core.answer.stats).

Measured on 100,000 answers (bench/console.py, docs/benchmarks.md): json_each over the period's answers took
1.4 s for 30 days; the covering index (created_at, bot, source, title) counts the same in tens of ms.
Triggers keep the table in step with `answers` for every writer (AnswerLog, the test and bench fillers): a row
per (answer, source) of an answer that cited its sources, gone when the answer is erased or expires.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from core.sqlite import has_table

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
    # Per-day rollups (as core.answer.daily's): a period's whole days add up these rows instead of counting `cited`.
    # The title is part of the key ('' for none) so that the most cited title of what is left stays exact.
    "CREATE TABLE IF NOT EXISTS cited_daily (day INTEGER NOT NULL, bot TEXT NOT NULL, source TEXT NOT NULL, "
    "title TEXT NOT NULL, answers INTEGER NOT NULL, PRIMARY KEY (day, bot, source, title)) WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS cited_counted AFTER INSERT ON cited BEGIN INSERT INTO cited_daily VALUES "
    "(CAST(new.created_at / 86400 AS INTEGER), new.bot, new.source, coalesce(new.title, ''), 1) "
    "ON CONFLICT DO UPDATE SET answers = answers + 1; END",
    "CREATE TRIGGER IF NOT EXISTS cited_uncounted AFTER DELETE ON cited BEGIN UPDATE cited_daily SET answers = "
    "answers - 1 WHERE (day, bot, source, title) = "
    "(CAST(old.created_at / 86400 AS INTEGER), old.bot, old.source, coalesce(old.title, '')); END",
)

# Every answer logged before the table existed: filled once, when the log is opened by this version.
_BACKFILL = (
    "INSERT INTO cited SELECT a.id, json_extract(c.value, '$.source') AS src, max(json_extract(c.value, '$.title')), "
    "a.bot, a.created_at FROM answers a, json_each(a.citations) c WHERE a.cited AND src IS NOT NULL "
    "GROUP BY a.id, src"
)


_BACKFILL_DAILY = (
    "INSERT INTO cited_daily SELECT CAST(created_at / 86400 AS INTEGER), bot, source, coalesce(title, ''), count(*) "
    "FROM cited GROUP BY 1, 2, 3, 4"
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, indexes and triggers; fill them from the log's answers if they are new. In the
    caller's transaction."""
    new, new_daily = not has_table(db, "cited"), not has_table(db, "cited_daily")
    for statement in SCHEMA:
        db.execute(statement)
    if new:
        db.execute(_BACKFILL)  # fills cited_daily too, through its trigger
    elif new_daily:
        db.execute(_BACKFILL_DAILY)


def top_sources(
    db: sqlite3.Connection, params: dict[str, Any], days: tuple[int, int] | None, limit: int
) -> list[tuple[str, str | None, int]]:
    """(source, title, answers citing it) in the period (:since, :until) of every bot or :bot, most cited first.
    `days`: the period's whole UTC days [first, last) (core.answer.daily.whole_days), counted from the rollups;
    the rest of the period from `cited` itself."""
    of_bot = "" if params["bot"] is None else "bot = :bot AND "
    scanned = f"SELECT source, title, 1 AS n FROM cited WHERE {of_bot}created_at >= {{}} AND created_at < {{}}"
    if days is None:
        parts = [scanned.format(":since", ":until")]
    else:
        parts = [
            "SELECT source, nullif(title, '') AS title, answers AS n FROM cited_daily "
            f"WHERE {of_bot}day >= :first AND day < :last AND answers > 0",
            scanned.format(":since", ":first * 86400"),
            scanned.format(":last * 86400", ":until"),
        ]
    first, last = days or (0, 0)
    rows = db.execute(
        f"SELECT source, max(title), sum(n) FROM ({' UNION ALL '.join(parts)}) GROUP BY source "
        f"ORDER BY 3 DESC, source LIMIT {int(limit)}",
        {**params, "first": first, "last": last},
    ).fetchall()
    return [(s, t, n) for s, t, n in rows]
