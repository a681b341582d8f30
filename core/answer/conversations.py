"""Finding conversations in the answer log: one bot's, optionally only those with answers in a date range whose
question or answer contains a text, the most recently active first, a page at a time (the admin API and console).

Measured on 100,000 answers (docs/benchmarks.md, bench/console.py): a page reads the bot's answers newest first
until it has its conversations, without a text from the covering index answers_by_bot_conversation alone (grouping
every conversation first took 240 ms at 33,000 conversations); a text search reads the bot's rows in the range with
LIKE (case-insensitive for ASCII): a common word fills a page in ~6 ms, a text no answer holds reads all of the
bot's rows (~320 ms at 33,000 answers of ~700 characters; a date range narrows it). LIKE, not FTS5: an FTS index
would keep copies of erased text in its own segments (core.answer.privacy overwrites erased rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.sqlite import connect

INDEX = "CREATE INDEX IF NOT EXISTS answers_by_bot_conversation ON answers (bot, created_at, channel, conversation)"


@dataclass(frozen=True, kw_only=True)
class ConversationSummary:
    channel: str
    conversation: str
    answers: int
    last_question: str
    last_at: float  # the latest answer in the range searched


@dataclass(frozen=True, kw_only=True)
class ConversationQuery:
    bot: str
    text: str | None = None  # in a question or an answer of the conversation
    since: float | None = None  # answers at or after (epoch seconds)
    until: float | None = None  # answers before
    offset: int = 0
    limit: int = 100


def _like(text: str) -> str:
    """A LIKE pattern that matches `text` literally anywhere (its % and _ escaped)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Answers newest first: the first answer seen of a conversation is its latest, so a page is found by reading
# answers until enough distinct conversations were seen (without a text: from the covering index alone).
_WALK = """
SELECT channel, conversation, created_at FROM answers
WHERE bot = :bot AND created_at >= :since AND created_at < :until
  AND (:pattern IS NULL OR question LIKE :pattern ESCAPE '\\' OR answer LIKE :pattern ESCAPE '\\')
ORDER BY created_at DESC
"""
_SUMMARY = (  # this bot's answers only: one conversation id can carry several bots (a channel mapped to two)
    "SELECT count(*), (SELECT question FROM answers WHERE bot = :b AND channel = :c AND conversation = :k "
    "ORDER BY created_at DESC LIMIT 1) FROM answers WHERE bot = :b AND channel = :c AND conversation = :k"
)


def find_conversations(path: Path, query: ConversationQuery) -> list[ConversationSummary]:
    params = {
        "bot": query.bot,
        "since": query.since if query.since is not None else float("-inf"),
        "until": query.until if query.until is not None else float("inf"),
        "pattern": _like(query.text) if query.text else None,
    }
    latest: dict[tuple[str, str], float] = {}
    with connect(path) as db:
        for channel, conversation, created_at in db.execute(_WALK, params):
            latest.setdefault((channel, conversation), created_at)
            if len(latest) > query.offset + query.limit:
                break
        found = []
        for (channel, conversation), last_at in list(latest.items())[query.offset : query.offset + query.limit]:
            answers, last_question = db.execute(_SUMMARY, {"b": query.bot, "c": channel, "k": conversation}).fetchone()
            found.append(
                ConversationSummary(
                    channel=channel,
                    conversation=conversation,
                    answers=answers,
                    last_question=last_question,
                    last_at=last_at,
                )
            )
    return found
