"""Slack's native streaming (SLACK_STREAMING=native, the default), a streaming strategy handed to
bots.base.relay: chat.startStream in the thread, chat.appendStream with the Markdown written since the last
append (at most one call per APPEND_INTERVAL), then chat.stopStream, whose blocks put the sources, the context
line and 👍/👎 under the streamed answer (the stream is append-only: the edit path's final replace has no
equivalent). An answer longer than STREAM_LIMIT continues in another streamed message; a stream that breaks
midway is finished with chat.update.

relay() falls back to post-then-edit in the same thread when the stream cannot start, and every answer of the
process does once Slack has refused chat.startStream to the app (REFUSALS, e.g. unknown_method, or
missing_scope where Slack wants the "Agents & AI Apps" feature's assistant:write): logged once, and the
refused answer itself is given the edit way.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bots.base import Followed, Reply, Stream
from bots.render import SLACK, split
from bots.slack.blocks import SECTION_LIMIT, feedback_blocks, section
from bots.slack.threads import SlackThread
from core.answer.citations import final_markdown, sources_markdown
from core.types import Done

logger = logging.getLogger(__name__)

# chat.appendStream is Tier 4 (~100 calls a minute per workspace): one append a second per answer, each with
# all the Markdown written since the last, leaves room for a few answers at once.
APPEND_INTERVAL = 1.0
# Slack takes at most 12,000 characters of Markdown per streaming call, and a streamed message is kept under
# that too: a longer answer continues in a new streamed message. The margin closes a code block cut there.
STREAM_LIMIT = 11_990
# chat.startStream errors meaning that this app may not stream at all, rather than not in this thread.
REFUSALS = frozenset(
    {
        "unknown_method",
        "missing_scope",
        "not_allowed_token_type",
        "access_denied",
        "method_deprecated",
        "deprecated_endpoint",
        "enterprise_is_restricted",
    }
)
FENCE = "```"


def _in_code_block(markdown: str) -> bool:
    """Whether `markdown` stops inside a ``` code block (the fence models write)."""
    return sum(line.lstrip().startswith(FENCE) for line in markdown.split("\n")) % 2 == 1


class NativeStreaming:
    """Whether answers use Slack's streaming API: SLACK_STREAMING=native, until Slack refuses it to the app."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def refuse(self, error: str) -> None:
        if self.enabled:
            logger.warning("Slack refused to stream answers (%s): using post-then-edit from now on", error)
        self.enabled = False


class _Messages:
    """One answer streamed into a thread, in as many streamed messages as its length needs."""

    def __init__(self, thread: SlackThread, *, team: str, user: str):
        self.thread = thread
        self.team = team  # the recipient, which chat.startStream requires
        self.user = user
        self.ts = ""  # the message streaming now
        self.shown = ""  # its Markdown
        self.head = ""  # what it starts with that is not the answer's (a reopened code block)
        self.begin = 0  # where in the answer it starts
        self.sent = 0  # characters of the answer streamed so far

    async def start(self, head: str = "") -> None:
        t = self.thread
        response = await t.client.chat_startStream(
            channel=t.channel, thread_ts=t.thread_ts, recipient_team_id=self.team, recipient_user_id=self.user
        )
        self.ts, self.shown, self.head, self.begin = str(response["ts"]), "", head, self.sent
        if head:
            await self._append(head)

    async def _append(self, markdown: str) -> None:
        await self.thread.client.chat_appendStream(channel=self.thread.channel, ts=self.ts, markdown_text=markdown)
        self.shown += markdown

    async def send(self, answer: str) -> None:
        """Stream what `answer` (the whole text so far) has beyond what was streamed already."""
        while self.sent < len(answer):
            rest, room = answer[self.sent :], STREAM_LIMIT - len(self.shown)
            piece = rest[:room]
            if len(rest) > room:  # the message is full: end it at a line break where there is one
                piece = piece[: piece.rfind("\n") + 1] or piece
            if piece:
                await self._append(piece)
                self.sent += len(piece)
            if self.sent < len(answer):
                await self._continue()

    async def _continue(self) -> None:
        """End the full message, closing a code block cut at its end, and go on in a new one."""
        reopen = _in_code_block(self.shown)
        if reopen:
            await self._append(FENCE if self.shown.endswith("\n") else f"\n{FENCE}")
        await self.stop(None)
        await self.start(f"{FENCE}\n" if reopen else "")

    async def stop(self, blocks: list[dict[str, Any]] | None) -> None:
        await self.thread.client.chat_stopStream(channel=self.thread.channel, ts=self.ts, blocks=blocks)


class NativeStream(Stream):
    """One answer in a thread through Slack's streaming API."""

    interval = APPEND_INTERVAL

    def __init__(self, thread: SlackThread, *, team: str, user: str, native: NativeStreaming):
        self.thread = thread
        self.native = native
        self.messages = _Messages(thread, team=team, user=user)
        self.broken = False  # after a failed append only finish() tries again (then chat.update)

    async def start(self) -> bool:
        if not self.native.enabled:  # refused since this reply was set up
            return False
        try:
            await self.messages.start()
        except Exception as exc:  # before any event was read: the edit path can still give the whole answer
            error = str(exc.response.get("error")) if isinstance(exc, SlackApiError) else repr(exc)
            if error in REFUSALS:
                self.native.refuse(error)
            else:
                logger.warning("could not stream in %s (%s): using post-then-edit", self.thread.channel, error)
            return False
        return True

    async def update(self, text: str) -> None:
        if not self.broken:
            try:
                await self.messages.send(text)
            except Exception:
                self.broken = True
                raise

    async def finish(self, result: Followed) -> None:
        answer, done = result.text, result.done
        if done is None:  # the stream cannot take back what it showed: the reason goes under it
            answer = f"{answer}\n\n{result.reason}" if answer.strip() else result.reason
        try:
            await self.messages.send(answer)
            await self.messages.stop(self.closing_blocks(done))
        except Exception:
            logger.warning("streaming in %s broke off: finishing with chat.update", self.thread.channel, exc_info=True)
            await self.recover(answer, done)

    def closing_blocks(self, done: Done | None) -> list[dict[str, Any]] | None:
        """What chat.stopStream puts under the streamed answer: what the edit path's final message adds to the
        answer, i.e. its sources, then the context line and 👍/👎."""
        if done is None:
            return None
        blocks = [section(part) for part in split(sources_markdown(done), SLACK, SECTION_LIMIT)]
        if done.answer_id:
            blocks += feedback_blocks(done.answer_id, self.thread.footer)
        return blocks or None

    async def recover(self, answer: str, done: Done | None) -> None:
        """Replace the message whose stream broke with the rest of the answer, as the edit path shows it."""
        rest = self.messages.head + answer[self.messages.begin :]
        try:
            await Reply(self.thread, replacing=self.messages.ts).show(
                final_markdown(done, rest) if done else rest, answer_id=done.answer_id if done else None
            )
        except Exception:
            logger.exception("could not deliver the final answer to slack")
