"""Curated answers in and out of files: an FAQ to import (CSV or JSONL), and regression QA lines for
`switchboard eval` from the answers people rated 👎 and an operator corrected."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.answer.curated_data import Curated, CuratedInput
from core.answer.log import AnswerLog
from core.errors import CuratedError
from core.types import Citation, is_web

FAQ_FORMAT = (
    'CSV with a header (question, answer; optional paraphrases and sources, several separated by "|", and bot), '
    'or JSONL lines {"question": "...", "answer": "...", "paraphrases": [...], "sources": [...], "bot": "..."}'
)


def source_citation(n: int, source: str) -> Citation:
    """A source an operator names (a URL, or a path as `switchboard eval` matches it) as a citation."""
    title = source if is_web(source) else PurePosixPath(source).name
    return Citation(n=n, title=title, source=source, section="", snippet="")


def _strings(value: Any, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):  # CSV: several values separated by "|"
        return [v.strip() for v in value.split("|") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise CuratedError(f"{field} must be a list of strings")


def _entry(row: dict[str, Any], default_bot: str) -> CuratedInput:
    question, answer, bot = row.get("question"), row.get("answer"), row.get("bot") or default_bot
    if not isinstance(question, str) or not question.strip():
        raise CuratedError("no question")
    if not isinstance(answer, str) or not answer.strip():
        raise CuratedError("no answer")
    if not isinstance(bot, str):
        raise CuratedError("bot must be a string")
    sources = _strings(row.get("sources"), "sources")
    return CuratedInput(
        bot=bot,
        questions=(question, *_strings(row.get("paraphrases"), "paraphrases")),
        answer=answer,
        citations=tuple(source_citation(n, s) for n, s in enumerate(sources, 1)),
    ).checked()


def _rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"question", "answer"} - set(reader.fieldnames or ())
        if missing:
            raise CuratedError(f"{path}:1: the header lacks {', '.join(sorted(missing))} ({FAQ_FORMAT})")
        start = reader.line_num
        for row in reader:
            if None in row:  # more cells than header columns
                raise CuratedError(f"{path}:{start + 1}: more cells than the header has columns")
            yield start + 1, row
            start = reader.line_num
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise CuratedError(f"{path}:{number}: not JSON ({FAQ_FORMAT})") from None
        if not isinstance(row, dict):
            raise CuratedError(f"{path}:{number}: not a JSON object ({FAQ_FORMAT})")
        yield number, row


def load_faq(path: Path, default_bot: str, bots: set[str]) -> list[CuratedInput]:
    """Every entry of the file, or a CuratedError naming the first bad line (nothing is imported then)."""
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise CuratedError(f"{path}: expected a .csv or .jsonl file ({FAQ_FORMAT})")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV often starts with a BOM
    except OSError as exc:
        raise CuratedError(f"{path}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise CuratedError(f"{path}: not UTF-8 text") from None
    entries = []
    try:
        for number, row in _rows(path, text):
            try:
                entry = _entry(row, default_bot)
            except CuratedError as exc:
                raise CuratedError(f"{path}:{number}: {exc}") from None
            if entry.bot not in bots:
                raise CuratedError(f"{path}:{number}: unknown bot {entry.bot!r}; bots: {', '.join(sorted(bots))}")
            entries.append(entry)
    except csv.Error as exc:
        raise CuratedError(f"{path}: not valid CSV ({exc})") from None
    if not entries:
        raise CuratedError(f"{path}: no entries ({FAQ_FORMAT})")
    return entries


@dataclass(frozen=True, kw_only=True)
class QAExport:
    lines: list[dict[str, Any]]
    without_sources: int  # corrections that name no source: nothing for retrieval to be measured against


async def regression_qa(curated: list[Curated], answers: AnswerLog, *, every: bool = False) -> QAExport:
    """`switchboard eval` lines (each phrasing with the correction's sources) for the curated answers promoted
    from an answer rated 👎, or for every curated answer with `every`."""
    lines: list[dict[str, Any]] = []
    without = 0
    for c in curated:
        if not every:
            rated = await answers.feedback(c.promoted_from) if c.promoted_from else None
            if rated is None or rated.rating != "down":
                continue
        if not c.citations:
            without += 1
            continue
        expected = list(dict.fromkeys(s.source for s in c.citations))
        lines.extend({"question": q, "expected_sources": expected, "curated_id": c.id} for q in c.questions)
    return QAExport(lines=lines, without_sources=without)
