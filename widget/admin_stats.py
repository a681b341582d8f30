"""GET /admin/stats: the answer log's analytics for a period and bot (core.answer.stats), behind the admin key.

The admin page's Analytics reads the same function; `switchboard report` prints it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from core.answer.stats import Stats, parse_period
from core.errors import ConfigError
from widget.admin import _errors, _known_bot, require_admin
from widget.deps import ServerState, StateDep
from widget.stats_out import StatsOut, stats_out

router = APIRouter(
    prefix="/admin", tags=["Admin"], dependencies=[Depends(require_admin)], responses=_errors(401, 403, 503)
)


Since = Annotated[str, Query(max_length=10, description="The period before now: 24h, 7d, 4w")]


def checked_period(state: ServerState, since: str, bot: str | None) -> float:
    """The period in seconds, or a 422/404 that says what was wrong with it or the bot."""
    try:
        period = parse_period(since)
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from exc
    if bot is not None:
        _known_bot(state, bot)
    return period


async def read_stats(state: ServerState, since: str, bot: str | None, gaps: bool = True) -> Stats:
    """The period's stats, or a 422/404 that says what was wrong (the admin page calls this too)."""
    return await state.assistant.stats(period=checked_period(state, since, bot), bot=bot, gaps=gaps)


@router.get("/stats", responses=_errors(404, 422))
async def get_stats(state: StateDep, since: Since = "7d", bot: str | None = None) -> StatsOut:
    """Analytics for the period and bot (default: every bot): questions per day per channel, don't-know and
    passages-fallback rates, 👍/👎, latency percentiles, top cited sources and knowledge gaps."""
    return stats_out(await read_stats(state, since, bot))
