"""The WhatsApp Cloud API calls the bot makes (POST /{phone-number-id}/messages on Meta's Graph API), over
httpx. Rate limits are retried with exponential backoff (tenacity): HTTP 429 and the Graph error codes for
throughput (4, 80007, 130429) and for the pair rate limit (131056: too many messages to one user in a short
time). Any other refusal is a `GraphError` for the caller to log."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from core.errors import SwitchboardError

logger = logging.getLogger(__name__)

RATE_LIMITED = frozenset({4, 80007, 130429, 131056})
ATTEMPTS = 4  # the first try and three retries
BACKOFF = 1.0  # seconds before the first retry, doubled before each next one (Meta suggests exponential backoff)


class GraphError(SwitchboardError):
    """The Graph API refused a call; `code` is Meta's error code (0 when the response carried none)."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(f"WhatsApp Cloud API: HTTP {status}, error {code}: {message}")
        self.status = status
        self.code = code

    @property
    def rate_limited(self) -> bool:
        return self.status == 429 or self.code in RATE_LIMITED


def _error(response: httpx.Response) -> GraphError:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    return GraphError(response.status_code, int(error.get("code") or 0), str(error.get("message") or response.text))


class Graph:
    """One business account's client: `open()` in the webhook's lifespan, `aclose()` after."""

    def __init__(self, client: httpx.AsyncClient):
        self._client = client

    @classmethod
    def open(cls, api_url: str, api_version: str, token: str) -> Graph:
        client = httpx.AsyncClient(
            base_url=f"{api_url.rstrip('/')}/{api_version}/",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(15.0, connect=5.0),
        )
        return cls(client)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, phone_number_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, GraphError) and exc.rate_limited),
            wait=wait_exponential(multiplier=BACKOFF, max=30 * BACKOFF),
            stop=stop_after_attempt(ATTEMPTS),
            before_sleep=lambda state: logger.warning(
                "whatsapp: rate limited, retrying in %.1f s: %s",
                state.upcoming_sleep,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._client.post(f"{phone_number_id}/messages", json=payload)
                if response.is_error:
                    raise _error(response)
                body: dict[str, Any] = response.json()
                return body
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send(self, phone_number_id: str, to: str, message: dict[str, Any], reply_to: str | None) -> str:
        payload = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, **message}
        if reply_to:
            payload["context"] = {"message_id": reply_to}
        sent = await self._post(phone_number_id, payload)
        return str(sent["messages"][0]["id"])

    async def send_text(self, phone_number_id: str, to: str, text: str, *, reply_to: str | None = None) -> str:
        """Send a text message (at most 4,096 characters); its message id."""
        message = {"type": "text", "text": {"body": text, "preview_url": False}}
        return await self._send(phone_number_id, to, message, reply_to)

    async def send_buttons(
        self, phone_number_id: str, to: str, text: str, buttons: list[tuple[str, str]], *, reply_to: str | None = None
    ) -> str:
        """Send an interactive message (body at most 1,024 characters) with reply buttons, each (id, title)."""
        action = {"buttons": [{"type": "reply", "reply": {"id": id_, "title": title}} for id_, title in buttons]}
        message = {"type": "interactive", "interactive": {"type": "button", "body": {"text": text}, "action": action}}
        return await self._send(phone_number_id, to, message, reply_to)

    async def read_and_type(self, phone_number_id: str, message_id: str) -> None:
        """Mark a message read and show "typing…" to its sender (until the reply, or 25 s)."""
        payload = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": {"type": "text"},
        }
        await self._post(phone_number_id, payload)
