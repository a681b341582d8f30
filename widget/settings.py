"""The web server's settings: where it listens, the widget's sessions, rate and size limits, the admin API.

`WebSettings` is core's `Settings` plus these: the server opens the assistant with the same object. Read as
every settings class is (core.config): the environment, then `.env`, with the same placeholder rule.
"""

from __future__ import annotations

from typing import Annotated, Self
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from core.config import Settings, comma_separated, unset_placeholders

# Secrets that sign or check requests: a published placeholder must never stand in for one.
_SIGNING_SECRETS = ("secret_key", "identity_secret", "admin_api_key")


class WebSettings(Settings):
    """`switchboard serve` and `demo`, and the MCP server (`switchboard mcp`)."""

    server_host: str = Field("127.0.0.1", validation_alias="SERVER_HOST")
    server_port: int = Field(8000, ge=1, le=65535, validation_alias="SERVER_PORT")
    # Development mode relaxes origin checks, so `serve` refuses a non-loopback SERVER_HOST unless this is set.
    dev_allow_remote: bool = Field(False, validation_alias="DEV_ALLOW_REMOTE")
    # The origins this server is reached at (e.g. https://chat.example.com), comma-separated; the origin check
    # trusts these, never the request's Host header. Empty: the SERVER_HOST:SERVER_PORT address (and in
    # development its loopback aliases).
    public_url: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="PUBLIC_URL")
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto the server believes (client IPs count for rate limits).
    forwarded_allow_ips: str = Field("127.0.0.1", validation_alias="FORWARDED_ALLOW_IPS")
    # Signs widget session tokens. Required in production; in development one is generated in the data dir.
    secret_key: SecretStr | None = Field(None, validation_alias="SWITCHBOARD_SECRET_KEY")
    # Verifies host-site user identities: data-user-hash = hex HMAC-SHA256(user id, IDENTITY_SECRET).
    identity_secret: SecretStr | None = Field(None, validation_alias="IDENTITY_SECRET")
    session_ttl: int = Field(3600, ge=60, validation_alias="SESSION_TTL_SECONDS")
    session_renew_days: int = Field(30, ge=1, validation_alias="SESSION_RENEW_DAYS")
    rate_limit_session: str = Field("10/minute", validation_alias="RATE_LIMIT_SESSION")
    rate_limit_ip: str = Field("60/minute", validation_alias="RATE_LIMIT_IP")
    rate_limit_api_key: str = Field("120/minute", validation_alias="RATE_LIMIT_API_KEY")
    max_message_chars: int = Field(2000, ge=1, validation_alias="MAX_MESSAGE_CHARS")
    max_body_bytes: int = Field(16384, ge=1024, validation_alias="MAX_BODY_BYTES")
    # /v1 and /mcp: API clients resend whole conversations and long system prompts.
    api_max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="API_MAX_BODY_BYTES")
    # /docs and /openapi.json (empty: on in development, off in production).
    api_docs: bool | None = Field(None, validation_alias="API_DOCS")

    # The admin API (/admin): disabled unless a key is set. Uploads may be larger than other request bodies.
    admin_api_key: SecretStr | None = Field(None, validation_alias="ADMIN_API_KEY")
    admin_max_upload_mb: float | None = Field(None, gt=0, validation_alias="ADMIN_MAX_UPLOAD_MB")
    # Run the due syncs of registered sources (`source add --every`) in this server. With several replicas each
    # due sync runs once anyway (a lease per source); false keeps a replica out of it (`sync --watch` elsewhere).
    sync_schedule: bool = Field(True, validation_alias="SYNC_SCHEDULE")

    @field_validator("public_url", mode="before")
    @classmethod
    def _public_url_list(cls, value: object) -> object:
        return comma_separated(value)

    @field_validator("public_url")
    @classmethod
    def _public_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(web_origin(url) for url in value)

    @model_validator(mode="after")
    def _web_consistent(self) -> Self:
        # Runs after core's checks (Settings._consistent), as these did when they were part of it.
        production = self.environment == "production"
        if production and not self.secret_key:
            raise ValueError("SWITCHBOARD_SECRET_KEY is required in production (e.g. `openssl rand -hex 32`)")
        if self.admin_api_key is not None and len(self.admin_api_key.get_secret_value()) < 16:
            raise ValueError("ADMIN_API_KEY must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        unset_placeholders(self, optional=(), signing=_SIGNING_SECRETS, production=production)
        return self

    @property
    def admin_upload_bytes(self) -> int:
        """The body limit of one upload request, all files together."""
        return int((self.admin_max_upload_mb or self.max_file_mb) * 1e6)


def web_origin(url: str) -> str:
    """The origin a browser sends for pages under `url`: scheme://host[:port], without a default port or path."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    port = "" if parsed.port in (None, {"http": 80, "https": 443}[parsed.scheme]) else f":{parsed.port}"
    return f"{parsed.scheme}://{host}{port}"
