"""The Bot Connector REST API (v3) through httpx: send an activity to a conversation, reply to one (a channel
thread), update one. The service URL is each activity's own `serviceUrl`, checked against the token that
brought it (bots.teams.auth). A 401 renews the bot's token once; a 429 waits for Retry-After (at most
MAX_WAIT seconds) and tries again once; a 5xx is not retried, since the post may have gone through.
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
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {await self.token.get()}"}
            response = await self.http.request(method, url, json=activity, headers=headers)
            if response.status_code == 401 and attempt == 0:
                self.token.forget()
                continue
            if response.status_code == 429 and attempt == 0:
                await asyncio.sleep(min(float(response.headers.get("retry-after", "1") or 1), MAX_WAIT))
                continue
            if response.status_code >= 400:
                raise ConnectorError(response.status_code, response.text)
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
