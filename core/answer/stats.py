"""Analytics over the answer log for a period and a bot: what people ask, how the kit answers, where it fails.

One implementation for every surface: `GET /admin/stats`, the admin page's Analytics and `switchboard report`.
Counts come from per-day rollups (core.answer.daily) and, for a period's partial first and last days, SQL over
the answer log's indexes; latency percentiles from the period's timings; knowledge gaps (core.answer.gaps) from
the period's latest unanswered and 👎 questions, embedded with the kit's own embedder.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.answer import cited, daily, gap_cache
from core.answer.gaps import Gap
from core.answer.log import AnswerLog
from core.embed import Embedder
from core.errors import ConfigError
from core.sqlite import connect

GAP_QUESTIONS = 500  # the latest unanswered and 👎 questions clustered (the clustering is O(n³))
TOP_SOURCES = 10
_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400}
_PERIOD_TEXT = re.compile(r"(\d{1,4})([hdw])")


def parse_period(text: str) -> float:
    """'24h', '7d', '4w' → seconds."""
    match = _PERIOD_TEXT.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ConfigError(f"invalid period {text!r}: write a number and h, d or w, e.g. 24h, 7d, 4w")
    return int(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True, kw_only=True)
class DayCount:
    day: str  # YYYY-MM-DD, UTC
    channel: str
    questions: int


@dataclass(frozen=True, kw_only=True)
class Latency:
    """Milliseconds; None when no answer of the period was timed."""

    p50: float | None
    p95: float | None


@dataclass(frozen=True, kw_only=True)
class SourceCount:
    source: str
    title: str
    answers: int  # answers that cited it


@dataclass(frozen=True, kw_only=True)
class Stats:
    since: float  # Unix seconds
    until: float
    bot: str | None  # None: every bot
    questions: int
    per_day: tuple[DayCount, ...]
    dont_know_rate: float | None  # share of answers; None without answers
    fallback_rate: float | None
    thumbs_up: int
    thumbs_down: int
    up_ratio: float | None  # up / (up + down); None without feedback
    first_token_ms: Latency
    total_ms: Latency
    top_sources: tuple[SourceCount, ...]
    gaps: tuple[Gap, ...]


_PERIOD = "a.created_at >= :since AND a.created_at < :until"
# Spelled out per case: `(:bot IS NULL OR a.bot = :bot)` would keep SQLite from using the per-bot index.
_PERIOD_OF_BOT = f"a.bot = :bot AND {_PERIOD}"


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _latency(values: list[float]) -> Latency:
    if not values:
        return Latency(p50=None, p95=None)
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return Latency(p50=round(float(p50), 1), p95=round(float(p95), 1))


# The period's latest unanswered and 👎 questions: what the gaps cluster.
_GAP_QUESTIONS = (
    "SELECT a.question FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id "
    "WHERE {where} AND (a.outcome = 'dont_know' OR f.rating = 'down') "
    f"ORDER BY a.created_at DESC LIMIT {GAP_QUESTIONS}"
)


def _gap_questions(path: Path, params: dict[str, Any]) -> tuple[list[str], int]:
    """The questions to cluster, and the gap cache's epoch read before them."""
    where = _PERIOD if params["bot"] is None else _PERIOD_OF_BOT
    with connect(path) as db:
        read_at = gap_cache.epoch(db)
        return [q for (q,) in db.execute(_GAP_QUESTIONS.format(where=where), params)], read_at


# Counts per day and channel by scanning the answers (a period's partial first and last days; core.answer.daily
# has the whole days): date, channel, questions, dont_know, fallback, up, down.
_SCAN = (
    "SELECT date(a.created_at, 'unixepoch'), a.channel, count(*), coalesce(sum(a.outcome = 'dont_know'), 0), "
    "coalesce(sum(a.outcome = 'fallback'), 0), coalesce(sum(f.rating = 'up'), 0), coalesce(sum(f.rating = 'down'), 0) "
    "FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id WHERE {where} GROUP BY 1, 2"
)


def _day_counts(db: sqlite3.Connection, params: dict[str, Any], days: tuple[int, int] | None) -> list[tuple[Any, ...]]:
    """The period's counts per day and channel: whole days from the rollups, the partial ends scanned."""
    where = _PERIOD if params["bot"] is None else _PERIOD_OF_BOT
    if days is None:
        return db.execute(_SCAN.format(where=where), params).fetchall()
    rows = daily.rollup(db, days, params["bot"])
    for since, until in ((params["since"], days[0] * daily.DAY), (days[1] * daily.DAY, params["until"])):
        rows += db.execute(_SCAN.format(where=where), {**params, "since": since, "until": until}).fetchall()
    return sorted(rows)


def _counts(path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Everything but the gaps (the Stats fields): SQL over one connection, run in a worker thread."""
    where = _PERIOD if params["bot"] is None else _PERIOD_OF_BOT
    days = daily.whole_days(params["since"], params["until"])
    with connect(path) as db:
        per_day = _day_counts(db, params, days)
        timings = db.execute(f"SELECT a.first_token_ms, a.total_ms FROM answers a WHERE {where}", params).fetchall()
        sources = cited.top_sources(db, params, days, TOP_SOURCES)
    total, dont_know, fallback, up, down = (sum(row[i] for row in per_day) for i in range(2, 7))
    return {
        "questions": total,
        "per_day": tuple(DayCount(day=d, channel=c, questions=n) for d, c, n, *_ in per_day),
        "dont_know_rate": _rate(dont_know, total),
        "fallback_rate": _rate(fallback, total),
        "thumbs_up": up,
        "thumbs_down": down,
        "up_ratio": _rate(up, up + down),
        "first_token_ms": _latency([t for t, _ in timings if t is not None]),
        "total_ms": _latency([t for _, t in timings if t is not None]),
        "top_sources": tuple(SourceCount(source=s, title=t or s, answers=n) for s, t, n in sources),
    }


async def answer_stats(
    log: AnswerLog,
    embedder: Embedder | None,
    *,
    period: float,
    bot: str | None = None,
    until: float | None = None,
) -> Stats:
    """The period's analytics (the `period` seconds before `until`, default now). Without an embedder the
    gaps are left out (empty)."""
    end = time.time() if until is None else until
    params = {"since": end - period, "until": end, "bot": bot}
    counts = await asyncio.to_thread(_counts, log.path, params)
    gaps: tuple[Gap, ...] = ()
    if embedder is not None:
        gaps = await period_gaps(log, embedder, period=period, bot=bot, until=end)
    return Stats(since=end - period, until=end, bot=bot, gaps=gaps, **counts)


async def period_gaps(
    log: AnswerLog, embedder: Embedder, *, period: float, bot: str | None = None, until: float | None = None
) -> tuple[Gap, ...]:
    """Only the knowledge gaps of answer_stats (the console loads them after the rest of its page)."""
    end = time.time() if until is None else until
    params = {"since": end - period, "until": end, "bot": bot}
    questions, read_at = await asyncio.to_thread(_gap_questions, log.path, params)
    if not questions:
        return ()
    return tuple(await asyncio.to_thread(gap_cache.cached_gaps, log.path, questions, embedder, read_at))
