"""GET /admin/stats: the answer log's analytics for a period and bot (core.answer.stats), behind the admin key.

The admin page's Analytics reads the same function; `switchboard report` prints it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from core.answer.stats import Stats, answer_stats, parse_period
from core.errors import ConfigError
from widget.admin import _errors, _known_bot, require_admin
from widget.deps import ServerState, StateDep

router = APIRouter(
    prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=_errors(401, 403, 503)
)


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


Since = Annotated[str, Query(max_length=10, description="The period before now: 24h, 7d, 4w")]


async def read_stats(state: ServerState, since: str, bot: str | None) -> Stats:
    """The period's stats, or a 422/404 that says what was wrong (the admin page calls this too)."""
    try:
        period = parse_period(since)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from exc
    if bot is not None:
        _known_bot(state, bot)
    assistant = state.assistant
    return await answer_stats(assistant.answers, assistant.embedder, period=period, bot=bot)


@router.get("/stats", responses=_errors(404, 422))
async def get_stats(state: StateDep, since: Since = "7d", bot: str | None = None) -> StatsOut:
    """Analytics for the period and bot (default: every bot): questions per day per channel, don't-know and
    passages-fallback rates, 👍/👎, latency percentiles, top cited sources and knowledge gaps."""
    return stats_out(await read_stats(state, since, bot))
