"""The WhatsApp Cloud API calls the bot makes on Meta's Graph API, over httpx: POST /{phone-number-id}/messages,
and for voice notes GET /{media-id} (then its download URL, with the same token) and POST /{phone-number-id}/media.
Rate limits are retried with exponential backoff (tenacity): HTTP 429 and the Graph error codes for throughput
(4, 80007, 130429) and for the pair rate limit (131056: too many messages to one user in a short time). Any
other refusal is a `GraphError` for the caller to log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from core.errors import AudioTooLarge, SwitchboardError

logger = logging.getLogger(__name__)

RATE_LIMITED = frozenset({4, 80007, 130429, 131056})
ATTEMPTS = 4  # the first try and three retries
MEDIA_CDN = ".fbsbx.com"  # where Meta serves media downloads (lookaside.fbsbx.com)
BACKOFF = 1.0  # seconds before the first retry, doubled before each next one (Meta suggests exponential backoff)


class UntrustedMedia(SwitchboardError):
    """A media lookup named a download URL that must not be sent the bearer token."""


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


@dataclass(frozen=True, kw_only=True)
class Media:
    """An uploaded recording, as GET /{media-id} describes it: where to download it (for 5 minutes), how big."""

    url: str
    size: int | None
    mime_type: str


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
        body: dict[str, Any] = (await self._call("POST", f"{phone_number_id}/messages", json=payload)).json()
        return body

    async def _call(self, method: str, url: str, **request: Any) -> httpx.Response:
        """One Graph API request, retried while rate limited; a GraphError for any other refusal."""
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
                response = await self._client.request(method, url, **request)
                if response.is_error:
                    raise _error(response)
                return response
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

    async def media(self, media_id: str) -> Media:
        """What GET /{media-id} says of a received recording."""
        info = (await self._call("GET", media_id)).json()
        size = info.get("file_size")
        return Media(
            url=str(info["url"]), size=int(size) if size is not None else None, mime_type=info.get("mime_type", "")
        )

    def _trusted(self, url: httpx.URL) -> bool:
        """Whether a download URL may be sent the bearer token: the API's own origin, or Meta's media CDN."""
        api = self._client.base_url
        same_origin = (url.scheme, url.host, url.port) == (api.scheme, api.host, api.port)
        return same_origin or (url.scheme == "https" and url.host.endswith(MEDIA_CDN))

    async def download(self, media: Media, *, max_bytes: int) -> bytes:
        """The recording's bytes: its URL wants the same bearer token as the API, so it is fetched only from the
        API's host or Meta's media CDN (UntrustedMedia otherwise), streamed, and given up past `max_bytes`
        (AudioTooLarge): the lookup may not have said the size."""
        url = httpx.URL(media.url)
        if not self._trusted(url):
            logger.warning(
                "whatsapp: refused to download media from %s: neither the API host nor *%s", url.host, MEDIA_CDN
            )
            raise UntrustedMedia(f"media URL on {url.host!r}, neither the API host nor *{MEDIA_CDN}")
        async with self._client.stream("GET", url) as response:
            if response.is_error:
                await response.aread()
                raise _error(response)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise AudioTooLarge(f"the recording is over {max_bytes / 1048576:g} MB")
        return bytes(data)

    async def upload(self, phone_number_id: str, audio: bytes, mime_type: str) -> str:
        """Upload a recording to send (POST /{phone-number-id}/media, multipart); its media id."""
        data = {"messaging_product": "whatsapp", "type": mime_type}
        files = {"file": ("answer.ogg", audio, mime_type)}
        response = await self._call("POST", f"{phone_number_id}/media", data=data, files=files)
        return str(response.json()["id"])

    async def send_audio(self, phone_number_id: str, to: str, media_id: str, *, reply_to: str | None = None) -> str:
        """Send an uploaded recording (OGG/Opus shows as a voice message)."""
        return await self._send(phone_number_id, to, {"type": "audio", "audio": {"id": media_id}}, reply_to)

    async def send_template(self, phone_number_id: str, to: str, name: str, language: str) -> str:
        """Send an approved message template: the only message allowed outside the 24-hour window."""
        template = {"name": name, "language": {"code": language}}
        return await self._send(phone_number_id, to, {"type": "template", "template": template}, None)
