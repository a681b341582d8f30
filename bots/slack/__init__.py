"""Slack (slack-bolt): Socket Mode (`switchboard bot slack`) or the HTTP Events API on the web server
(POST /slack/events on `switchboard serve`), chosen by SLACK_MODE. Both run the same bolt app.

SLACK_STREAMING: "native" (the default) streams through Slack's streaming API (streaming), else falls back as
"edit" does: post-then-edit (bots.base.relay), chat.update at most every EDIT_INTERVAL seconds, the sources and
buttons in the final edit. Ephemeral /ask answers can be neither streamed nor edited: relay collects them and
the response_url gets the result (threads.PrivateReply).

listeners  what it answers (mentions, direct messages, followed threads, /ask, feedback) and how
threads    where a reply goes: a thread (post-then-edit) or an ephemeral /ask answer
streaming  Slack's native streaming API (SLACK_STREAMING=native), a strategy handed to bots.base.relay
blocks     Block Kit: an answer's text, the context line, 👍/👎
app        the bolt app, and Socket Mode's runner
webhook    the framework-free handler the web server mounts at /slack/events
"""

from bots.slack.app import EVENTS_PATH, run
from bots.slack.webhook import SlackWebhook

__all__ = ["EVENTS_PATH", "SlackWebhook", "run"]
