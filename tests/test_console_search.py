"""Conversation search over a real SQLite answer log (core.answer.conversations): text in questions or answers
(taken literally: % and _ are not wildcards), a date range, pages in order of last activity, and each
conversation's size and last question whatever the filter matched."""

from __future__ import annotations

from pathlib import Path

from core.answer.conversations import ConversationQuery, find_conversations
from core.answer.log import AnswerLog
from core.sqlite import connect

DAY = 86400.0


def log_with(path: Path, rows: list[tuple[str, str, str, str, float]]) -> AnswerLog:
    """(conversation, bot, question, answer, created_at) rows, channel 'web'."""
    log = AnswerLog(path)
    with connect(path) as db:
        db.executemany(
            "INSERT INTO answers (id, channel, conversation, bot, question, answer, citations, cited, fallback, "
            "created_at) VALUES (?, 'web', ?, ?, ?, ?, '[]', 0, 0, ?)",
            [(f"{i:032x}", *row) for i, row in enumerate(rows)],
        )
    return log


def test_text_dates_and_pages(tmp_path: Path) -> None:
    rows = [
        ("a", "docs", "How do I install it?", "Run pip install switchboard.", 1 * DAY),
        ("a", "docs", "And on Windows?", "The same, in PowerShell.", 2 * DAY),
        ("b", "docs", "What is 100% uptime?", "A promise.", 3 * DAY),
        ("c", "docs", "Where are the logs?", "In data_dir/logs.", 4 * DAY),
        ("d", "sales", "Pricing for install support?", "Ask us.", 5 * DAY),
    ] + [(f"p{i:02d}", "docs", f"Paging question {i}", "ok", 10 * DAY + i) for i in range(25)]
    path = tmp_path / "answers.sqlite3"
    log_with(path, rows)

    def find(**kw: object) -> list[str]:
        return [c.conversation for c in find_conversations(path, ConversationQuery(bot="docs", **kw))]  # type: ignore[arg-type]

    assert find(text="INSTALL") == ["a"]  # case-insensitive; the sales bot's conversation is not the docs bot's
    assert find(text="powershell") == ["a"]  # in an answer
    assert find(text="100%") == ["b"] and find(text="%") == ["b"]  # literally, not a wildcard
    assert find(text="data_dir") == ["c"] and find(text="dat__dir") == []  # _ is no wildcard either
    assert find(text="install", since=2 * DAY) == []  # the question asked on day 1 only (its answer too)
    assert find(text="windows", since=2 * DAY, until=3 * DAY) == ["a"]
    (a,) = find_conversations(path, ConversationQuery(bot="docs", text="install it"))
    assert a.answers == 2 and a.last_question == "And on Windows?" and a.last_at == 1 * DAY  # last match: day 1

    first = find(limit=10)
    assert first == [f"p{i:02d}" for i in range(24, 14, -1)]  # most recently active first
    second, third = find(limit=10, offset=10), find(limit=10, offset=20)
    assert second == [f"p{i:02d}" for i in range(14, 4, -1)]
    assert third == ["p04", "p03", "p02", "p01", "p00", "c", "b", "a"]
    assert find(limit=10, offset=30) == []


def test_pages_use_the_covering_index(tmp_path: Path) -> None:
    path = tmp_path / "answers.sqlite3"
    log_with(path, [])
    with connect(path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT channel, conversation, created_at FROM answers "
            "WHERE bot = ? AND created_at >= ? AND created_at < ? ORDER BY created_at DESC",
            ("docs", 0, 1),
        ).fetchall()
    assert "COVERING INDEX answers_by_bot_conversation" in str(plan)


def test_a_conversation_shared_by_two_bots_counts_only_this_bot_s_answers(tmp_path: Path) -> None:
    """A channel mapped to two bots carries both in one conversation id: each bot's page shows its own share."""
    path = tmp_path / "answers.sqlite3"
    log_with(
        path,
        [
            ("t", "docs", "How do I install it?", "Run pip install.", 1 * DAY),
            ("t", "sales", "What does it cost?", "Ask us.", 2 * DAY),
            ("t", "sales", "And support?", "Included.", 3 * DAY),
        ],
    )
    (docs,) = find_conversations(path, ConversationQuery(bot="docs"))
    assert (docs.answers, docs.last_question) == (1, "How do I install it?")
    (sales,) = find_conversations(path, ConversationQuery(bot="sales"))
    assert (sales.answers, sales.last_question) == (2, "And support?")
