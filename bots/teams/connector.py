"""The Bot Connector REST API (v3) through httpx: send an activity to a conversation, reply to one (a channel
thread), update one. The service URL is each activity's own `serviceUrl`, checked against the token that
brought it (bots.teams.auth). Within one call, a 401 renews the bot's token once and a 429 waits for
Retry-After (at most MAX_WAIT seconds) once; a 5xx is not retried, since the post may have gone through.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import httpx

from bots.teams.auth import BotToken

logger = logging.getLogger(__name__)

MAX_WAIT = 5.0  # seconds of Retry-After worth waiting for within one answer


def _seconds(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after or 1))
    except ValueError:  # an HTTP date: not worth parsing for a wait capped at MAX_WAIT
        return MAX_WAIT


class ConnectorError(Exception):
    """The Bot Connector refused a call (its status and body in the message)."""

    def __init__(self, status: int, body: str):
        super().__init__(f"Bot Connector answered {status}: {body[:200]}")
        self.status = status


class Connector:
    def __init__(self, http: httpx.AsyncClient, token: BotToken):
        self.http = http
        self.token = token

    @staticmethod
    def _url(service_url: str, conversation: str, activity_id: str | None = None) -> str:
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation, safe='')}/activities"
        return f"{url}/{quote(activity_id, safe='')}" if activity_id else url

    async def _call(self, method: str, url: str, activity: dict[str, Any]) -> str:
        renewed = waited = False
        while True:
            headers = {"Authorization": f"Bearer {await self.token.get()}"}
            response = await self.http.request(method, url, json=activity, headers=headers)
            if response.status_code == 401 and not renewed:
                renewed = True
                self.token.forget()
            elif response.status_code == 429 and not waited:
                waited = True
                await asyncio.sleep(min(_seconds(response.headers.get("retry-after")), MAX_WAIT))
            elif response.status_code >= 400:
                raise ConnectorError(response.status_code, response.text)
            else:
                break
        body = response.json() if response.content else {}
        return str(body.get("id", "")) if isinstance(body, dict) else ""

    async def send(self, service_url: str, conversation: str, activity: dict[str, Any]) -> str:
        """A new activity in the conversation; returns its id."""
        return await self._call("POST", self._url(service_url, conversation), activity)

    async def reply(self, service_url: str, conversation: str, reply_to: str, activity: dict[str, Any]) -> str:
        """An activity in reply to another (in a channel: in that post's thread); returns its id."""
        return await self._call("POST", self._url(service_url, conversation, reply_to), activity)

    async def update(self, service_url: str, conversation: str, activity_id: str, activity: dict[str, Any]) -> None:
        await self._call("PUT", self._url(service_url, conversation, activity_id), activity)
