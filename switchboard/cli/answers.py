"""Curated answers: `switchboard answers import|list|delete|export-qa` (core.answer.curated, core.answer.faq)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from core.errors import SwitchboardError
from switchboard.cli.base import JsonOption, _embedder, _fail, _run, _settings, app, out

answers_app = typer.Typer(
    no_args_is_help=True, help="Curated answers: an operator's own answers, given when a question matches one."
)
app.add_typer(answers_app, name="answers")

BotOption = Annotated[str | None, typer.Option("--bot", help="Only this bot's (default: every bot).")]


def _curated(with_embedder: bool) -> Any:
    from core.answer.curated import create_curated

    settings = _settings()
    return create_curated(settings, _embedder(settings) if with_embedder else None)


@answers_app.command("import")
def answers_import(
    faq: Annotated[
        Path,
        typer.Argument(
            help="faq.csv (header: question, answer[, paraphrases, sources, bot]) "
            "or faq.jsonl; several paraphrases or sources separated by '|'."
        ),
    ],
    bot: Annotated[
        str | None, typer.Option("--bot", help="The bot of lines that name none (default: default).")
    ] = None,
) -> None:
    """Load curated answers in bulk: all of them or, on a bad line, none. A question already curated for the same
    bot is replaced."""
    from core.answer.faq import load_faq
    from core.answer.profiles import DEFAULT_BOT, load_profiles

    settings = _settings()
    try:
        entries = load_faq(faq, bot or DEFAULT_BOT, set(load_profiles(settings)))
    except SwitchboardError as exc:
        _fail(str(exc))
    curated = _curated(with_embedder=True)
    added, replaced = _run(lambda: curated.import_many(entries))
    out.print(f"{faq}: {added} curated answers added, {replaced} replaced", highlight=False, soft_wrap=True)


@answers_app.command("list")
def answers_list(bot: BotOption = None, as_json: JsonOption = False) -> None:
    """Curated answers with their hit counts."""
    items = _run(lambda: _curated(with_embedder=False).list(bot))
    if as_json:
        print(json.dumps([asdict(c) for c in items], ensure_ascii=False))
        return
    if not items:
        out.print("no curated answers; add some with `switchboard answers import faq.csv` or promote one")
        return
    table = Table("id", "bot", "question", "paraphrases", "hits", "sources")
    for c in items:
        table.add_row(
            c.id, c.bot, escape(c.questions[0]), str(len(c.questions) - 1), str(c.hits), str(len(c.citations))
        )
    out.print(table)


@answers_app.command("delete")
def answers_delete(curated_id: str) -> None:
    """Delete a curated answer."""
    if not _run(lambda: _curated(with_embedder=False).delete(curated_id)):
        _fail(f"no curated answer {curated_id}")
    out.print(f"deleted {curated_id}")


@answers_app.command("export-qa")
def answers_export_qa(
    output: Annotated[Path, typer.Option("--out", help="The JSONL file to write, for `switchboard eval`.")],
    bot: BotOption = None,
    every: Annotated[bool, typer.Option("--all", help="Every curated answer, not only corrected 👎 answers.")] = False,
) -> None:
    """Regression QA lines for `switchboard eval`: each answer rated 👎 that an operator corrected (promoted), its
    question and paraphrases with the correction's sources."""
    from core.answer.faq import regression_qa
    from core.answer.log import create_answer_log

    settings = _settings()

    async def go() -> Any:
        items = await _curated(with_embedder=False).list(bot)
        return await regression_qa(items, create_answer_log(settings), every=every)

    export = _run(go)
    try:
        output.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in export.lines), "utf-8")
    except OSError as exc:
        _fail(f"{output}: cannot write ({exc.strerror})")
    skipped = f"; {export.without_sources} skipped: no sources to expect" if export.without_sources else ""
    out.print(f"{output}: {len(export.lines)} questions{skipped}", highlight=False, soft_wrap=True)
