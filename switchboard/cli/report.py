"""`switchboard report`: the answer log's analytics as tables (or the JSON of GET /admin/stats)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import SwitchboardError
from switchboard.cli.base import JsonOption, _embedder, _fail, _run, _settings, app, out


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _print(stats: Any) -> None:
    since, until = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) for t in (stats.since, stats.until))
    period = f"{since} – {until} UTC"
    out.print(f"[bold]{escape(stats.bot or 'every bot')}[/bold], {period}", highlight=False)
    summary = Table("questions", "don't know", "passages fallback", "👍", "👎", "👍 ratio", show_edge=False)
    summary.add_row(
        str(stats.questions),
        _percent(stats.dont_know_rate),
        _percent(stats.fallback_rate),
        str(stats.thumbs_up),
        str(stats.thumbs_down),
        _percent(stats.up_ratio),
    )
    out.print(summary)
    latency = Table("latency", "p50", "p95", title="Latency", show_edge=False)
    latency.add_row("first text", _ms(stats.first_token_ms.p50), _ms(stats.first_token_ms.p95))
    latency.add_row("whole answer", _ms(stats.total_ms.p50), _ms(stats.total_ms.p95))
    out.print(latency)
    channels = sorted({d.channel for d in stats.per_day})
    per_day = Table("day", *channels, title="Questions per day", show_edge=False)
    by_day: dict[str, dict[str, int]] = {}
    for d in stats.per_day:
        by_day.setdefault(d.day, {})[d.channel] = d.questions
    for day, counts in by_day.items():
        per_day.add_row(day, *(str(counts.get(c, 0)) for c in channels))
    out.print(per_day)
    sources = Table("answers", "source", title="Top sources cited", show_edge=False)
    for s in stats.top_sources:
        sources.add_row(str(s.answers), escape(s.source))
    out.print(sources)
    gaps = Table("asked", "examples", title="Knowledge gaps (unanswered and 👎, by meaning)", show_edge=False)
    for g in stats.gaps:
        gaps.add_row(str(g.questions), escape(" | ".join(g.examples)))
    out.print(gaps)


@app.command("report")
def report(
    since: Annotated[str, typer.Option(help="The period before now: 24h, 7d, 4w.")] = "7d",
    bot: Annotated[str | None, typer.Option(help="Only this bot (default: every bot).")] = None,
    gaps: Annotated[bool, typer.Option(help="Cluster unanswered and 👎 questions (loads the embedder).")] = True,
    as_json: JsonOption = False,
) -> None:
    """Analytics from the answer log: questions per day, don't-know and fallback rates, 👍/👎, latency,
    top sources, knowledge gaps. --json prints what GET /admin/stats answers."""
    from core.answer.log import create_answer_log
    from core.answer.profiles import load_profiles
    from core.answer.stats import answer_stats, parse_period
    from widget.stats_out import stats_out

    settings = _settings()
    try:
        period = parse_period(since)
        if bot is not None and bot not in (known := load_profiles(settings)):
            _fail(f"unknown bot {bot!r}; bots: {', '.join(sorted(known))}")
    except SwitchboardError as exc:
        _fail(str(exc))
    log = create_answer_log(settings)
    embedder = _embedder(settings) if gaps else None
    stats = _run(lambda: answer_stats(log, embedder, period=period, bot=bot))
    if as_json:
        print(stats_out(stats).model_dump_json(indent=2))
    else:
        _print(stats)
