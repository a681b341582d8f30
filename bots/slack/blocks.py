"""Block Kit: how the last part of an answer looks in Slack, with a context line naming the bot and its KB and
👍/👎 under the text."""

from __future__ import annotations

from typing import Any

from bots.base import feedback_value
from core.answer.log import Rating

SECTION_LIMIT = 3000  # characters of mrkdwn in one section block, the longest part of an answer


def _button(rating: Rating, label: str, answer_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"feedback_{rating}",
        "text": {"type": "plain_text", "text": label, "emoji": True},
        "value": feedback_value(rating, answer_id),
    }


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def feedback_blocks(answer_id: str, footer: str) -> list[dict[str, Any]]:
    """The end of every answer: a context line naming the bot and its KB, then 👍/👎."""
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]},
        {"type": "actions", "elements": [_button("up", "👍", answer_id), _button("down", "👎", answer_id)]},
    ]


def answer_blocks(text: str, answer_id: str | None, footer: str) -> list[dict[str, Any]] | None:
    """Block Kit for the last part of an answer: the text, a context line, 👍/👎. None for plain messages."""
    return [section(text), *feedback_blocks(answer_id, footer)] if answer_id else None
