"""The answer log's `cited` table (core.answer.cited) that top sources count: kept in step with the answers by
every writer, one row per (answer, source), erased with its answer, and filled once for a log made before it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from core.answer import cited, daily
from core.answer.log import AnswerLog
from core.answer.stats import answer_stats
from core.sqlite import connect
from core.types import Citation
from tests.support.answer_log import FIRST_SCHEMA, Row, insert

DAY = 86400.0


def counted(path: Path, bot: str | None = None) -> list[tuple[str, str | None, int]]:
    with connect(path) as db:
        until = time.time() + DAY  # every answer: whole days from the rollups, today's from the rows
        return cited.top_sources(db, {"since": 0.0, "until": until, "bot": bot}, daily.whole_days(0.0, until), 10)


def test_rows_follow_the_answers(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    log = AnswerLog(path)
    now = time.time()
    insert(
        log,
        [
            Row(question="a", created_at=now - 10, sources=("docs/a.md", "docs/b.md")),
            Row(question="b", created_at=now - 20, sources=("docs/a.md",), bot="sales"),
            Row(question="c", created_at=now - 30, outcome="dont_know"),  # cited nothing
        ],
    )
    assert counted(path) == [("docs/a.md", "a.md", 2), ("docs/b.md", "b.md", 1)]
    assert counted(path, "sales") == [("docs/a.md", "a.md", 1)]
    # Two passages of one document count once for the answer.
    passages = tuple(Citation(n=n, title="b.md", source="docs/b.md", section="", snippet="…") for n in (1, 2))
    record = log.record(
        channel="web",
        conversation="x",
        bot="default",
        question="q",
        answer="[1][2]",
        citations=passages,
        cited=True,
        fallback=False,
    )
    asyncio.run(record)
    assert counted(path)[:2] == [("docs/a.md", "a.md", 2), ("docs/b.md", "b.md", 2)]
    erased = asyncio.run(log.forget_conversation("web", "x"))
    assert erased.answers == 1 and counted(path)[1] == ("docs/b.md", "b.md", 1)
    with connect(path) as db:
        db.execute("DELETE FROM answers")  # whatever removes answers (retention, erasure) removes their rows
        assert db.execute("SELECT count(*) FROM cited").fetchone() == (0,)


def test_an_older_log_is_filled_once_and_stats_agree(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    now = time.time()
    with connect(path) as db:
        db.execute(FIRST_SCHEMA)
        citations = json.dumps(
            [{"n": 1, "title": "Install", "source": "docs/install.md", "section": "", "snippet": ""}]
        )
        db.executemany(
            "INSERT INTO answers VALUES (?, 'web', 'c', 'default', 'q', 'a', ?, ?, 0, ?)",
            [(f"{i:032x}", citations, int(i % 2 == 0), now - i) for i in range(10)],
        )
    log = AnswerLog(path)  # migrates: the cited answers' rows are filled in
    assert counted(path) == [("docs/install.md", "Install", 5)]
    AnswerLog(path)  # opened again: not filled twice
    assert counted(path) == [("docs/install.md", "Install", 5)]
    stats = asyncio.run(answer_stats(log, None, period=DAY))
    assert [(s.source, s.answers) for s in stats.top_sources] == [("docs/install.md", 5)]
