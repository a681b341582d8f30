"""Answer logs filled quickly with rows of known shape: the stats tests and bench/report.py."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from core.answer.log import AnswerLog, Outcome, Rating
from core.sqlite import connect

# The answers table as the first versions wrote it (no user id, outcome or timings): migration tests start there.
FIRST_SCHEMA = (
    "CREATE TABLE answers (id TEXT PRIMARY KEY, channel TEXT NOT NULL, conversation TEXT NOT NULL, "
    "bot TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, citations TEXT NOT NULL, "
    "cited INTEGER NOT NULL, fallback INTEGER NOT NULL, created_at REAL NOT NULL)"
)


@dataclass(frozen=True, kw_only=True)
class Row:
    question: str
    created_at: float
    bot: str = "default"
    channel: str = "widget"
    outcome: Outcome = "answered"
    sources: tuple[str, ...] = ("docs/install.md",)
    first_token_ms: float | None = 100.0
    total_ms: float | None = 1000.0
    rating: Rating | None = None


def insert(log: AnswerLog, rows: list[Row]) -> None:
    """Rows straight into the log's tables (one transaction), as AnswerLog.record and add_feedback would write."""
    answers, feedback = [], []
    for r in rows:
        answer_id = uuid.uuid4().hex
        citations = [
            {"n": n, "title": s.rsplit("/", 1)[-1], "source": s, "section": "", "snippet": "…"}
            for n, s in enumerate(() if r.outcome == "dont_know" else r.sources, 1)
        ]
        answers.append(
            (
                answer_id,
                r.channel,
                f"c{random.randrange(10**9)}",
                r.bot,
                r.question,
                "an answer",
                json.dumps(citations),
                int(r.outcome != "dont_know"),
                int(r.outcome == "fallback"),
                r.created_at,
                r.outcome,
                r.first_token_ms,
                r.total_ms,
            )
        )
        if r.rating is not None:
            feedback.append((answer_id, r.rating, None, r.created_at + 1))
    with connect(log.path) as db:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO answers (id, channel, conversation, bot, question, answer, citations, cited, fallback, "
            "created_at, outcome, first_token_ms, total_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            answers,
        )
        db.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?)", feedback)
        db.execute("COMMIT")


QUESTIONS = [
    "How do I install the kit?",
    "Which port does the dashboard use?",
    "How do I connect Slack?",
    "Can I run it with Docker?",
    "How are API keys revoked?",
]
GAPS = [
    "Does it support SAML single sign-on?",
    "How do I log in with SAML SSO?",
    "What does the enterprise plan cost?",
    "How much is the enterprise price?",
]


OUTCOMES: list[Outcome] = ["answered", "dont_know", "fallback"]
RATINGS: list[Rating | None] = [None, "up", "down"]


def synthetic(n: int, now: float, days: int = 30, seed: int = 7) -> list[Row]:
    """`n` answers spread over `days` before `now`: 3 bots, 4 channels, 10% "I don't know", 3% passages,
    a rating on 1 answer in 10 (1 in 4 of them 👎), latencies of a few hundred ms to seconds."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        outcome = rng.choices(OUTCOMES, [87, 10, 3])[0]
        first = rng.lognormvariate(6, 0.5)
        rows.append(
            Row(
                question=rng.choice(GAPS if outcome == "dont_know" else QUESTIONS) + rng.choice(["", " please", "?"]),
                created_at=now - rng.random() * days * 86400,
                bot=rng.choice(["default", "support", "sales"]),
                channel=rng.choice(["widget", "slack", "telegram", "api"]),
                outcome=outcome,
                sources=tuple(rng.sample([f"docs/page{i}.md" for i in range(40)], 2)),
                first_token_ms=first,
                total_ms=first + rng.lognormvariate(7.5, 0.4),
                rating=rng.choices(RATINGS, [90, 7.5, 2.5])[0],
            )
        )
    return rows


def fill(path: Path, rows: list[Row]) -> AnswerLog:
    log = AnswerLog(path)
    insert(log, rows)
    return log
