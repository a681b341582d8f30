"""The per-day rollups (core.answer.daily; core.answer.cited's cited_daily) give the same analytics as counting
every answer: on a randomised log with ratings given and changed, answers re-labelled, conversations and users
erased and old answers expired, for random periods (whole and partial days) of every bot and of one; and an
older log is filled on open."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from core.answer.log import AnswerLog
from core.answer.stats import answer_stats
from core.sqlite import connect
from tests.support.answer_log import Row, fill, synthetic

DAY = 86400.0
NOW = time.time()


def scanned(path: Path, since: float, until: float, bot: str | None) -> dict[str, Any]:
    """The counts as stats.py computed them before the rollups: straight from answers and feedback."""
    where = "a.created_at >= :since AND a.created_at < :until" + ("" if bot is None else " AND a.bot = :bot")
    params = {"since": since, "until": until, "bot": bot}
    with connect(path) as db:
        per_day = db.execute(
            "SELECT date(a.created_at, 'unixepoch'), a.channel, count(*) FROM answers a "
            f"WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
            params,
        ).fetchall()
        totals = db.execute(
            "SELECT count(*), coalesce(sum(a.outcome = 'dont_know'), 0), coalesce(sum(a.outcome = 'fallback'), 0) "
            f"FROM answers a WHERE {where}",
            params,
        ).fetchone()
        ratings = dict(
            db.execute(
                f"SELECT f.rating, count(*) FROM feedback f JOIN answers a ON a.id = f.answer_id WHERE {where} "
                "GROUP BY f.rating",
                params,
            ).fetchall()
        )
        of_bot = "" if bot is None else "bot = :bot AND "
        sources = db.execute(
            f"SELECT source, coalesce(max(title), source), count(*) FROM cited WHERE {of_bot}created_at >= :since "
            "AND created_at < :until GROUP BY source ORDER BY 3 DESC, source LIMIT 10",
            params,
        ).fetchall()
    return {
        "per_day": per_day,
        "totals": totals,
        "up": ratings.get("up", 0),
        "down": ratings.get("down", 0),
        "sources": sources,
    }


def from_stats(log: AnswerLog, since: float, until: float, bot: str | None) -> dict[str, Any]:
    stats = asyncio.run(answer_stats(log, None, period=until - since, bot=bot, until=until))
    total = stats.questions
    dont_know = round((stats.dont_know_rate or 0) * total)
    fallback = round((stats.fallback_rate or 0) * total)
    return {
        "per_day": [(d.day, d.channel, d.questions) for d in stats.per_day],
        "totals": (total, dont_know, fallback),
        "up": stats.thumbs_up,
        "down": stats.thumbs_down,
        "sources": [(s.source, s.title, s.answers) for s in stats.top_sources],
    }


def churn(log: AnswerLog, rng: random.Random) -> None:
    """Every kind of write the rollups must follow, through AnswerLog where it has a method."""
    with connect(log.path) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM answers ORDER BY id")]
        conversations = db.execute("SELECT channel, conversation FROM answers ORDER BY id LIMIT 30").fetchall()
        db.execute("UPDATE answers SET user_id = 'u' || (rowid % 40)")
        db.execute("UPDATE answers SET outcome = 'dont_know' WHERE rowid % 17 = 0")  # re-labelled
        db.execute("UPDATE answers SET outcome = NULL WHERE rowid % 29 = 0")  # a writer that leaves it out
        db.execute("UPDATE answers SET channel = 'slack', created_at = created_at - 3600 WHERE rowid % 23 = 0")
    for answer_id in rng.sample(ids, 200):  # new ratings and changed ones
        asyncio.run(log.add_feedback(answer_id, rng.choice(["up", "down"])))
    for channel, conversation in conversations[:20]:
        asyncio.run(log.forget_conversation(channel, conversation))
    for user in ("u3", "u7"):
        asyncio.run(log.forget_user(user))
    asyncio.run(log.forget_user("u11", channel="widget"))
    with connect(log.path) as db:  # a rating erased on its own, and one left pointing at an erased answer
        db.execute("DELETE FROM feedback WHERE answer_id IN (SELECT answer_id FROM feedback LIMIT 5)")
    asyncio.run(
        log.record(
            channel="api",
            conversation="new",
            bot="sales",
            question="q",
            answer="a",
            citations=(),
            cited=False,
            fallback=False,
            outcome="dont_know",
        )
    )
    expiring = AnswerLog(log.path, retention_days=25)
    asyncio.run(expiring.purge_expired())


def periods(rng: random.Random) -> list[tuple[float, float, str | None]]:
    chosen = [(NOW - 7 * DAY, NOW, None), (NOW - 30 * DAY, NOW, "default"), (NOW - 40 * DAY, NOW + DAY, None)]
    midnight = NOW // DAY * DAY
    chosen += [(midnight - 3 * DAY, midnight, "support"), (NOW - 3600, NOW, None)]  # day-aligned; under a day
    for _ in range(25):
        since = NOW - rng.random() * 35 * DAY
        chosen.append((since, since + rng.random() * 20 * DAY, rng.choice([None, "default", "sales", "support"])))
    return chosen


def test_rollups_equal_a_scan_after_every_kind_of_write(tmp_path: Path) -> None:
    rng = random.Random(21)
    log = fill(tmp_path / "answers.sqlite3", synthetic(3000, NOW, days=32, seed=21))
    churn(log, rng)
    with connect(log.path) as db:
        (left,) = db.execute("SELECT count(*) FROM answers").fetchone()
    assert 1500 < left < 3000  # the erasures and the expiry did remove answers
    for since, until, bot in periods(rng):
        assert from_stats(log, since, until, bot) == scanned(log.path, since, until, bot), (since, until, bot)


def test_an_older_log_is_rolled_up_when_opened(tmp_path: Path) -> None:
    log = fill(tmp_path / "answers.sqlite3", synthetic(1000, NOW, days=10, seed=3))
    with connect(log.path) as db:
        before = [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4").fetchall() for t in ("daily", "cited_daily")]
        db.execute("DROP TABLE daily")  # as a log written before the rollups existed (their triggers go with them)
        db.execute("DROP TABLE cited_daily")
    reopened = AnswerLog(log.path)
    with connect(log.path) as db:
        assert [
            db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3, 4").fetchall() for t in ("daily", "cited_daily")
        ] == before
    assert from_stats(reopened, NOW - 10 * DAY, NOW, None) == scanned(log.path, NOW - 10 * DAY, NOW, None)


@pytest.mark.parametrize("bot", [None, "default"])
def test_whole_days_come_from_the_rollup(tmp_path: Path, bot: str | None) -> None:
    """Not a scan in disguise: a count planted in the rollup for a whole day shows; planted at a period's
    partial end day, it does not (that day is counted from the answers)."""
    midnight = NOW // DAY * DAY
    # One default/widget answer on each planted day for sure: today may be minutes old when the suite runs.
    sure = [Row(question="q", created_at=t) for t in (midnight - 2 * DAY + 60, max(midnight, NOW - 1))]
    log = fill(tmp_path / "answers.sqlite3", synthetic(200, NOW, days=5, seed=5) + sure)
    with connect(log.path) as db:
        planted = db.execute(
            "UPDATE daily SET questions = questions + 1000 "
            "WHERE bot = 'default' AND channel = 'widget' AND day IN (?, ?)",
            (int(midnight // DAY) - 2, int(midnight // DAY)),
        ).rowcount
    assert planted == 2
    stats = from_stats(log, NOW - 4 * DAY, NOW, bot)
    honest = scanned(log.path, NOW - 4 * DAY, NOW, bot)
    assert stats["totals"][0] - honest["totals"][0] == 1000
