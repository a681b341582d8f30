"""Bots: each one a knowledge base with its own persona and prompts, from an optional TOML file.

    [bots.docs]
    kb = "docs"
    persona = "Kestrel Docs Helper"
    system_prompt = "You are {persona} ..."   # optional; {persona} is filled in
    welcome = "Hi! Ask me anything about Kestrel."

    [bots.docs.widget]                        # one table per channel, read by that channel's adapter
    allowed_origins = ["https://docs.example.com"]

Without a file there is one bot, `default`, over SWITCHBOARD_KB with BOT_NAME and SYSTEM_PROMPT.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from core.config import Settings
from core.errors import ConfigError
from core.kb import validate_kb_name

DEFAULT_BOT = "default"


class BotProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kb: str
    persona: str
    system_prompt: str | None = None
    welcome: str = "Hi! Ask me a question about the documentation."
    # Channel settings (`[bots.NAME.widget]`, `.slack`, ...), validated by each channel, opaque to the core.
    channels: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _channel_tables(cls, data: Any) -> Any:
        if isinstance(data, dict):
            tables = {k: v for k, v in data.items() if isinstance(v, dict) and k != "channels"}
            data = {k: v for k, v in data.items() if k not in tables}
            data["channels"] = {**data.get("channels", {}), **tables}
        return data

    @field_validator("kb")
    @classmethod
    def _kb(cls, value: str) -> str:
        return validate_kb_name(value)


def load_profiles(settings: Settings) -> dict[str, BotProfile]:
    default = BotProfile(
        name=DEFAULT_BOT, kb=settings.default_kb, persona=settings.bot_name, system_prompt=settings.system_prompt
    )
    if settings.bots_file is None:
        return {DEFAULT_BOT: default}
    try:
        data = tomllib.loads(settings.bots_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"SWITCHBOARD_BOTS_FILE {settings.bots_file}: {exc}") from exc
    profiles = {DEFAULT_BOT: default}
    for name, table in (data.get("bots") or {}).items():
        try:
            profiles[name] = BotProfile(name=name, **{"persona": settings.bot_name, **table})
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"SWITCHBOARD_BOTS_FILE {settings.bots_file}: bot {name!r}: {exc}") from exc
    return profiles


Table = TypeVar("Table", bound=BaseModel)


def load_tables(
    profiles: Mapping[str, BotProfile], channel: str, table: type[Table], **defaults: object
) -> dict[str, Table]:
    """Every bot's `[bots.NAME.<channel>]` table (empty where it has none) as the channel's model, validated at
    start-up so a typo fails fast with one line naming the bot and the key. `defaults` fill in keys a table leaves
    out. One way for every channel; the core knows none of their tables."""
    tables = {}
    for name, profile in profiles.items():
        try:
            tables[name] = table.model_validate({**defaults, **profile.channels.get(channel, {})})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise ConfigError(f"SWITCHBOARD_BOTS_FILE: [bots.{name}.{channel}] {where}: {error['msg']}") from None
    return tables
