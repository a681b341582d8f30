"""How an answer's sources are written under it, in each dialect: Markdown for the chat platforms (bots/render.py
turns it into Slack mrkdwn, Telegram HTML or Discord markdown) and plain text for the terminal and MCP tool
results. The one place that names them "Sources", or "Sources consulted" when the model cited none."""

from __future__ import annotations

from core.types import Citation, Done, heading, is_web


def _label(done: Done) -> str:
    return "Sources" if done.cited else "Sources consulted"


def _citation_label(citation: Citation) -> str:
    return heading(citation.title, citation.section) or citation.source


def sources_markdown(done: Done) -> str:
    """The sources line under an answer. Web pages are links; local files show their title only, never a
    server path."""
    if not done.citations:
        return ""
    lines = []
    for c in done.citations:
        text = _citation_label(c).replace("[", "(").replace("]", ")")
        lines.append(f"[{c.n}] [{text}]({c.source})" if is_web(c.source) else f"[{c.n}] {text}")
    return f"**{_label(done)}:**  \n" + "  \n".join(lines)


def final_markdown(done: Done, text: str | None = None) -> str:
    """The answer (`done.text`, or what was shown of it) with its sources under it."""
    text = (done.text if text is None else text).rstrip()
    footer = sources_markdown(done)
    return f"{text}\n\n{footer}" if footer else text


def sources_text(done: Done) -> str:
    """The sources in plain text, each with where it is: `[n] Title › Section — source`."""
    if not done.citations:
        return ""
    lines = [f"[{c.n}] {heading(c.title, c.section)} — {c.source}" for c in done.citations]
    return f"{_label(done)}:\n" + "\n".join(lines)


def final_text(done: Done) -> str:
    """The answer with its sources under it, in plain text (what an MCP client's model reads)."""
    footer = sources_text(done)
    return f"{done.text}\n\n{footer}" if footer else done.text
