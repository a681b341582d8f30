"""The JSON of the answer log's analytics: GET /admin/stats answers it, `switchboard report --json` prints it.

Its own module, with nothing but pydantic: the CLI prints it without importing the web stack.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from core.answer.stats import Stats


class DayOut(BaseModel):
    day: str = Field(description="YYYY-MM-DD (UTC)")
    channel: str
    questions: int


class LatencyOut(BaseModel):
    p50: float | None = Field(description="Milliseconds; null when no answer of the period was timed")
    p95: float | None


class SourceOut(BaseModel):
    source: str
    title: str
    answers: int = Field(description="Answers of the period that cited it")


class GapOut(BaseModel):
    questions: int = Field(description="How often questions of this group were asked (repeats included)")
    distinct: int
    examples: list[str] = Field(description="Up to 3, the most asked first")


class StatsOut(BaseModel):
    since: datetime
    until: datetime
    bot: str | None = Field(description="null: every bot")
    questions: int
    per_day: list[DayOut]
    dont_know_rate: float | None = Field(description="Share of answers that were “I don't know”")
    fallback_rate: float | None = Field(description="Share of answers that quoted passages (the model failed)")
    thumbs_up: int
    thumbs_down: int
    up_ratio: float | None = Field(description="👍 / (👍 + 👎); null without feedback")
    first_token_ms: LatencyOut = Field(description="From the question to the first text of the answer")
    total_ms: LatencyOut = Field(description="From the question to the whole answer")
    top_sources: list[SourceOut]
    gaps: list[GapOut] = Field(
        description="Unanswered and 👎 questions grouped by meaning (the kit's embedder), the largest groups first"
    )


def stats_out(stats: Stats) -> StatsOut:
    return StatsOut.model_validate(asdict(stats))
