"""Analytics over the answer log (core.answer.stats, core.answer.gaps): the numbers for a period and bot, the
migration of an older log, the indexes the queries use, and knowledge gaps clustered with the real embedder and
cached (core.answer.gap_cache) until their questions change or any answer is erased."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.answer import gap_cache
from core.answer.gaps import cluster, knowledge_gaps
from core.answer.log import AnswerLog
from core.answer.stats import answer_stats, parse_period, period_gaps
from core.config import Settings
from core.embed import Embedder, create_embedder, offline_minilm_dir
from core.errors import ConfigError
from core.sqlite import connect
from tests.support.answer_log import FIRST_SCHEMA, Row, fill
from tests.support.embedders import Wrapped

NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY = 86400.0


@pytest.fixture(scope="module")
def local_embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """The kit's offline embedder, without the Weaviate the session's `embedder` fixture starts."""
    model = offline_minilm_dir(tmp_path_factory.mktemp("models"))
    if model is None:
        pytest.fail("offline embedding model packages missing: run `bash scripts/setup.sh`", pytrace=False)
    return create_embedder(Settings(embed_model_path=model, _env_file=None))  # type: ignore[call-arg]


def test_parse_period() -> None:
    assert parse_period("7d") == 7 * DAY and parse_period("24h") == DAY and parse_period(" 2W ") == 14 * DAY
    for bad in ("", "7", "d", "0d", "7y", "-1d", "1.5d", "99999d"):
        with pytest.raises(ConfigError, match="invalid period"):
            parse_period(bad)


async def test_counts_rates_latency_and_sources_for_a_period_and_bot(tmp_path: Path) -> None:
    rows = [
        # In the last 7 days, bot default: 2 days, 2 channels.
        Row(question="q1", created_at=NOW - 1 * DAY, first_token_ms=100, total_ms=1000, rating="up"),
        Row(question="q2", created_at=NOW - 1 * DAY, channel="slack", first_token_ms=200, total_ms=2000),
        Row(question="q3", created_at=NOW - 2 * DAY, outcome="dont_know", first_token_ms=5, total_ms=6),
        Row(question="q4", created_at=NOW - 2 * DAY, outcome="fallback", sources=("a.md", "b.md"), rating="down"),
        Row(question="q5", created_at=NOW - 2 * DAY, first_token_ms=None, total_ms=None, rating="up"),  # not timed
        # Another bot, and an answer before the period: counted only when asked for.
        Row(question="other bot", created_at=NOW - 1 * DAY, bot="sales", rating="down"),
        Row(question="old", created_at=NOW - 9 * DAY, rating="down"),
    ]
    log = fill(tmp_path / "answers.sqlite3", rows)
    stats = await answer_stats(log, None, period=7 * DAY, bot="default", until=NOW)
    assert stats.questions == 5
    assert [(d.day, d.channel, d.questions) for d in stats.per_day] == [
        ("2027-01-13", "widget", 3),
        ("2027-01-14", "slack", 1),
        ("2027-01-14", "widget", 1),
    ]
    assert stats.dont_know_rate == pytest.approx(0.2) and stats.fallback_rate == pytest.approx(0.2)
    assert (stats.thumbs_up, stats.thumbs_down, stats.up_ratio) == (2, 1, pytest.approx(2 / 3))
    # Timed answers: 100, 200, 5, 100 ms to the first text (q4 has the Row default); numpy's linear percentiles.
    assert stats.first_token_ms.p50 == pytest.approx(100.0)
    assert stats.first_token_ms.p95 == pytest.approx(float(np.percentile([5, 100, 100, 200], 95)), abs=0.1)
    assert stats.total_ms.p50 == pytest.approx(1000.0)
    # install.md: q1, q2, q5 (the dont_know answer cites nothing); a.md and b.md once each.
    assert [(s.source, s.answers) for s in stats.top_sources] == [("docs/install.md", 3), ("a.md", 1), ("b.md", 1)]
    assert stats.top_sources[0].title == "install.md"
    assert stats.gaps == ()  # no embedder: no clustering

    everyone = await answer_stats(log, None, period=7 * DAY, until=NOW)
    assert everyone.questions == 6 and everyone.thumbs_down == 2
    month = await answer_stats(log, None, period=30 * DAY, until=NOW)
    assert month.questions == 7 and month.thumbs_down == 3


async def test_an_empty_period_has_no_rates(tmp_path: Path) -> None:
    stats = await answer_stats(AnswerLog(tmp_path / "answers.sqlite3"), None, period=DAY, until=NOW)
    assert stats.questions == 0 and stats.per_day == () and stats.top_sources == ()
    assert stats.dont_know_rate is None and stats.up_ratio is None and stats.total_ms.p95 is None


def test_an_older_log_gets_the_columns_its_outcomes_and_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    with sqlite3.connect(path) as db:  # the log as the first versions wrote it
        db.executescript(
            f"{FIRST_SCHEMA};"
            "INSERT INTO answers VALUES ('a', 'web', 'c', 'default', 'q', 'x', '[{\"n\": 1}]', 1, 0, 1.0);"
            "INSERT INTO answers VALUES ('b', 'web', 'c', 'default', 'q', 'x', '[]', 0, 0, 2.0);"
            "INSERT INTO answers VALUES ('c', 'web', 'c', 'default', 'q', 'x', '[{\"n\": 1}]', 1, 1, 3.0);"
            # The model cited nothing: the sources consulted are shown, it answered.
            "INSERT INTO answers VALUES ('d', 'web', 'c', 'default', 'q', 'x', '[{\"n\": 1}]', 0, 0, 4.0);"
        )
    db.close()
    AnswerLog(path)
    AnswerLog(path)  # opening it again changes nothing
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT id, outcome, first_token_ms, total_ms FROM answers ORDER BY id").fetchall() == [
            ("a", "answered", None, None),
            ("b", "dont_know", None, None),
            ("c", "fallback", None, None),
            ("d", "answered", None, None),
        ]
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT outcome, total_ms FROM answers a WHERE a.created_at >= 1 AND a.created_at < 2"
        ).fetchall()
        by_bot = db.execute(
            "EXPLAIN QUERY PLAN SELECT outcome, total_ms FROM answers a WHERE a.bot = 'x' AND a.created_at >= 1"
        ).fetchall()
    db.close()
    assert "COVERING INDEX answers_stats_by_time" in str(plan)
    assert "COVERING INDEX answers_stats_by_bot" in str(by_bot)


def test_average_linkage_does_not_chain_through_a_bridge() -> None:
    # a and c are unrelated (cos 0), b sits between them (cos ~0.71 to each): single linkage would chain all
    # three at 0.6; average linkage merges b with one of them, then the pair averages only ~0.35 to the other.
    a, b, c = [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]
    groups = sorted(sorted(g) for g in cluster(np.array([a, b, c]), 0.6))
    assert groups in ([[0, 1], [2]], [[0], [1, 2]])
    assert cluster(np.array([a, b, c]), 0.99) == [[0], [1], [2]]
    assert sorted(cluster(np.array([a, a, a]), 0.5)[0]) == [0, 1, 2]
    assert cluster(np.zeros((0, 2)), 0.5) == []


def test_knowledge_gaps_group_paraphrases_with_the_real_embedder(local_embedder: Embedder) -> None:
    questions = [
        "Does it support SAML single sign-on?",
        "does it support  SAML single sign-on?",  # the same question: counts twice, shown once
        "How do I log in with SAML SSO?",
        "Can users sign in through Okta SSO?",
        "What does the enterprise plan cost?",
        "How much is the enterprise price?",
        "Is there a Kubernetes Helm chart?",
    ]
    gaps = knowledge_gaps(questions, local_embedder.embed_documents)
    assert gaps[0].questions == 4 and gaps[0].distinct == 3
    assert gaps[0].examples[0] == "Does it support SAML single sign-on?"
    assert {q for g in gaps[1:] for q in g.examples} == {
        "What does the enterprise plan cost?",
        "How much is the enterprise price?",
        "Is there a Kubernetes Helm chart?",
    }
    assert [g.questions for g in gaps] == [4, 2, 1]
    assert knowledge_gaps(["  ", ""], local_embedder.embed_documents) == []


async def test_gaps_come_from_unanswered_and_thumbs_down_questions_of_the_period(
    tmp_path: Path, local_embedder: Embedder
) -> None:
    now = time.time()
    rows = [
        Row(question="How much is the enterprise price?", created_at=now - 60, outcome="dont_know"),
        Row(question="What does the enterprise plan cost?", created_at=now - 50, rating="down"),
        Row(question="What does the enterprise plan cost", created_at=now - 40, outcome="dont_know", bot="sales"),
        Row(question="How do I install it?", created_at=now - 30, rating="up"),  # answered well: no gap
        Row(question="Is there a Helm chart?", created_at=now - 20 * DAY, outcome="dont_know"),  # before the period
    ]
    log = fill(tmp_path / "answers.sqlite3", rows)
    stats = await answer_stats(log, local_embedder, period=7 * DAY, bot="default")
    assert [(g.questions, set(g.examples)) for g in stats.gaps] == [
        (2, {"How much is the enterprise price?", "What does the enterprise plan cost?"})
    ]


@dataclass
class Counting(Wrapped):
    """The kit's embedder, counting the texts it embeds (a cached clustering embeds none)."""

    texts: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed_documents(texts)


async def ask(log: AnswerLog, question: str, *, user: str = "u", conversation: str = "c", dont_know: bool) -> str:
    return await log.record(
        channel="widget",
        conversation=conversation,
        bot="default",
        question=question,
        answer="I don't know." if dont_know else "An answer.",
        citations=(),
        cited=False,
        fallback=False,
        user_id=user,
        outcome="dont_know" if dont_know else "answered",
    )


def cache_rows(log: AnswerLog) -> int:
    with connect(log.path) as db:
        (n,) = db.execute("SELECT count(*) FROM gap_cache").fetchone()
    return int(n)


async def test_gaps_are_cached_until_their_questions_change(tmp_path: Path, local_embedder: Embedder) -> None:
    log = AnswerLog(tmp_path / "answers.sqlite3")
    await ask(log, "How much is the enterprise price?", dont_know=True)
    await ask(log, "Is there a Helm chart?", dont_know=True)
    counting = Counting(local_embedder)
    first = await period_gaps(log, counting, period=DAY)
    assert counting.texts == 2 and cache_rows(log) == 1
    assert await period_gaps(log, counting, period=DAY) == first  # the console's next load: nothing embedded
    assert (await answer_stats(log, counting, period=DAY)).gaps == first and counting.texts == 2
    answered = await ask(log, "How do I upgrade?", dont_know=False)  # not a gap: the entry still holds
    assert await period_gaps(log, counting, period=DAY) == first and counting.texts == 2
    await log.add_feedback(answered, "down")  # a 👎 makes it one
    assert "How do I upgrade?" in {q for g in await period_gaps(log, counting, period=DAY) for q in g.examples}
    assert counting.texts == 5
    await ask(log, "What does the enterprise plan cost?", dont_know=True)  # a new unanswered question
    gaps = await period_gaps(log, counting, period=DAY)
    assert counting.texts == 9 and gaps[0].questions == 2  # the two enterprise questions, one gap
    assert await period_gaps(log, counting, period=DAY, bot="sales") == ()  # another bot: no questions, no entry
    assert cache_rows(log) == 3


async def test_erased_and_expired_questions_leave_the_gap_cache(tmp_path: Path, local_embedder: Embedder) -> None:
    log = AnswerLog(tmp_path / "answers.sqlite3", retention_days=30)
    secret = "Zanzibar-7741"
    await ask(log, f"Why is my {secret} quota exceeded?", user="u1", conversation="c1", dont_know=True)
    await ask(log, "Is there a Kubernetes Helm chart?", user="u2", conversation="c2", dont_know=True)
    gaps = await period_gaps(log, local_embedder, period=DAY)
    assert any(secret in q for g in gaps for q in g.examples) and cache_rows(log) == 1
    await log.forget_user("u1")
    assert cache_rows(log) == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []
    assert [g.examples for g in await period_gaps(log, local_embedder, period=DAY)] == [
        ("Is there a Kubernetes Helm chart?",)
    ]
    with connect(log.path) as db:
        db.execute("UPDATE answers SET created_at = created_at - 40 * 86400")
    assert await log.purge_expired() == 1
    assert cache_rows(log) == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file() and b"Kubernetes Helm" in p.read_bytes()] == []


async def test_gaps_of_questions_read_before_an_erasure_are_not_stored(
    tmp_path: Path, local_embedder: Embedder
) -> None:
    log = AnswerLog(tmp_path / "answers.sqlite3")
    await ask(log, "Why is my quota exceeded?", conversation="c1", dont_know=True)
    with connect(log.path) as db:
        read_at = gap_cache.epoch(db)  # the questions are read here, then the conversation is erased
    await log.forget_conversation("widget", "c1")
    gaps = gap_cache.cached_gaps(log.path, ["Why is my quota exceeded?"], local_embedder, read_at)
    assert gaps[0].examples == ("Why is my quota exceeded?",)  # shown to the caller who asked before the erasure
    assert cache_rows(log) == 0  # but not kept
