"""Per-day rollups of the answer log (the `daily` table): questions, outcomes and ratings per UTC day, bot and
channel, so analytics over 30 days add up ~100 rows instead of counting every answer (core.answer.stats).

Triggers keep the table in step with `answers` and `feedback` for every writer (AnswerLog, the test and bench
fillers): an answer logged, changed or erased (by request or retention), a rating given, changed or erased. A rating
counts on its answer's day, as the scan it replaces joined feedback to the answer. Counts of a period's partial
first and last days are counted from the answers themselves (core.answer.stats), so results equal a scan's.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from core.sqlite import has_table

DAY = 86400

# (day, bot, channel) of a row `r` of answers. Its outcome may be NULL (a writer that leaves it out): counted
# as neither, as the scan's sum() did.
_KEY = "CAST({r}.created_at / 86400 AS INTEGER), {r}.bot, {r}.channel"


def _counts(r: str) -> str:
    rated = "(SELECT count(*) FROM feedback f WHERE f.answer_id = {r}.id AND f.rating = '{rating}')"
    return (
        f"1, coalesce({r}.outcome = 'dont_know', 0), coalesce({r}.outcome = 'fallback', 0), "
        f"{rated.format(r=r, rating='up')}, {rated.format(r=r, rating='down')}"
    )


def _add(r: str) -> str:
    """Count answer row `r` (new or old) in its day."""
    return (
        f"INSERT INTO daily SELECT {_KEY.format(r=r)}, {_counts(r)} WHERE 1 "
        "ON CONFLICT DO UPDATE SET questions = questions + excluded.questions, "
        "dont_know = dont_know + excluded.dont_know, fallback = fallback + excluded.fallback, "
        "up = up + excluded.up, down = down + excluded.down;"
    )


def _remove(r: str) -> str:
    """Uncount answer row `r` from its day."""
    return (
        f"UPDATE daily SET (questions, dont_know, fallback, up, down) = (SELECT questions - 1, "
        f"dont_know - coalesce({r}.outcome = 'dont_know', 0), fallback - coalesce({r}.outcome = 'fallback', 0), "
        f"up - (SELECT count(*) FROM feedback f WHERE f.answer_id = {r}.id AND f.rating = 'up'), "
        f"down - (SELECT count(*) FROM feedback f WHERE f.answer_id = {r}.id AND f.rating = 'down')) "
        f"WHERE (day, bot, channel) = ({_KEY.format(r=r)});"
    )


def _rating(f: str, sign: str) -> str:
    """Count (sign '+') or uncount ('-') rating row `f` on its answer's day; nothing if the answer is gone."""
    return (
        f"UPDATE daily SET up = up {sign} ({f}.rating = 'up'), down = down {sign} ({f}.rating = 'down') "
        f"WHERE (day, bot, channel) = (SELECT {_KEY.format(r='a')} FROM answers a WHERE a.id = {f}.answer_id);"
    )


# Statements, not a script: migrate() runs them inside the log's migration transaction.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS daily (day INTEGER NOT NULL, bot TEXT NOT NULL, channel TEXT NOT NULL, "
    "questions INTEGER NOT NULL, dont_know INTEGER NOT NULL, fallback INTEGER NOT NULL, up INTEGER NOT NULL, "
    "down INTEGER NOT NULL, PRIMARY KEY (day, bot, channel)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS daily_by_bot ON daily (bot, day)",
    f"CREATE TRIGGER IF NOT EXISTS daily_answer AFTER INSERT ON answers BEGIN {_add('new')} END",
    f"CREATE TRIGGER IF NOT EXISTS daily_unanswer AFTER DELETE ON answers BEGIN {_remove('old')} END",
    "CREATE TRIGGER IF NOT EXISTS daily_reanswer AFTER UPDATE OF created_at, bot, channel, outcome ON answers "
    f"BEGIN {_remove('old')} {_add('new')} END",
    f"CREATE TRIGGER IF NOT EXISTS daily_rate AFTER INSERT ON feedback BEGIN {_rating('new', '+')} END",
    f"CREATE TRIGGER IF NOT EXISTS daily_unrate AFTER DELETE ON feedback BEGIN {_rating('old', '-')} END",
    "CREATE TRIGGER IF NOT EXISTS daily_rerate AFTER UPDATE OF rating, answer_id ON feedback "
    f"BEGIN {_rating('old', '-')} {_rating('new', '+')} END",
)

# Every answer logged before the table existed: filled once, when the log is opened by this version.
_BACKFILL = (
    "INSERT INTO daily SELECT CAST(a.created_at / 86400 AS INTEGER), a.bot, a.channel, count(*), "
    "coalesce(sum(a.outcome = 'dont_know'), 0), coalesce(sum(a.outcome = 'fallback'), 0), "
    "coalesce(sum(f.rating = 'up'), 0), "
    "coalesce(sum(f.rating = 'down'), 0) FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id GROUP BY 1, 2, 3"
)


def migrate(db: sqlite3.Connection) -> None:
    """Create the table, its index and triggers; fill it from the log if it is new. In the caller's transaction."""
    new = not has_table(db, "daily")
    for statement in SCHEMA:
        db.execute(statement)
    if new:
        db.execute(_BACKFILL)


def whole_days(since: float, until: float) -> tuple[int, int] | None:
    """The UTC days [first, last) lying wholly inside [since, until), or None if there are none."""
    first, last = -(-int(since) // DAY), int(until) // DAY
    if since > first * DAY:  # a fractional `since` just after midnight
        first += 1
    return (first, last) if first < last else None


def rollup(db: sqlite3.Connection, days: tuple[int, int], bot: str | None) -> list[tuple[Any, ...]]:
    """(date, channel, questions, dont_know, fallback, up, down) per day and channel of days [first, last)."""
    where = "day >= :first AND day < :last" + ("" if bot is None else " AND bot = :bot")
    return db.execute(
        "SELECT date(day * 86400, 'unixepoch'), channel, sum(questions), sum(dont_know), sum(fallback), sum(up), "
        f"sum(down) FROM daily WHERE {where} GROUP BY day, channel HAVING sum(questions) > 0",
        {"first": days[0], "last": days[1], "bot": bot},
    ).fetchall()
