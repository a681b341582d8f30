"""Each chat adapter's settings: its variables (SLACK_*, TELEGRAM_*, DISCORD_*, WHATSAPP_*; read like core's, from the
environment, then `.env`) and its table in the bots file (`[bots.NAME.slack]` …), which says where a bot
answers. Free of the platform libraries: the web server reads which webhooks are configured before it imports
any of them, and a platform's extra need not be installed to read its settings.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import (
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import ENV_CONFIG, Environment, unset_placeholders


class AdapterSettings(BaseSettings):
    """What every adapter's settings share: `.env` handling and the placeholder rule of core's Settings (so
    SWITCHBOARD_ENV too), and the bot that answers wherever the bots file maps no other one (SLACK_BOT, …)."""

    model_config = ENV_CONFIG
    # The secret fields, for core.config.unset_placeholders: optional keys, and secrets that check requests.
    optional_keys: ClassVar[tuple[str, ...]] = ()
    signing_secrets: ClassVar[tuple[str, ...]] = ()

    environment: Environment = Field("development", validation_alias="SWITCHBOARD_ENV")
    bot: str = "default"

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        production = self.environment == "production"
        unset_placeholders(self, optional=self.optional_keys, signing=self.signing_secrets, production=production)
        return self


def prefixed(prefix: str) -> SettingsConfigDict:
    """Every field read from PREFIX + its name (SLACK_BOT_TOKEN), the name errors give too: an alias per field,
    as core's Settings has, rather than env_prefix (errors would say `bot_token`). Only by that name: the field
    names are generic (`mode`, `bot_token`), and reading them too would let a stray MODE or BOT_TOKEN in the
    environment configure every platform."""
    return SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=lambda name: f"{prefix}{name}".upper()),
        populate_by_name=False,
    )


class SlackSettings(AdapterSettings):
    """`switchboard bot slack` (Socket Mode), or POST /slack/events on `switchboard serve` (SLACK_MODE=http)."""

    model_config = prefixed("SLACK_")
    optional_keys = ("bot_token", "app_token")
    signing_secrets = ("signing_secret",)

    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None  # Socket Mode
    signing_secret: SecretStr | None = None  # HTTP mode
    mode: Literal["socket", "http"] = "socket"
    api_url: str = "https://slack.com/api/"
    ask_ephemeral: bool = False
    # native: Slack's streaming API (chat.startStream …) where the app may use it, else post-then-edit.
    streaming: Literal["native", "edit"] = "native"


class TelegramSettings(AdapterSettings):
    """`switchboard bot telegram` (long polling), or POST /telegram/webhook on `switchboard serve`."""

    model_config = prefixed("TELEGRAM_")
    optional_keys = ("bot_token",)
    signing_secrets = ("webhook_secret",)

    bot_token: SecretStr | None = None
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    api_url: str = "https://api.telegram.org/bot"


class DiscordSettings(AdapterSettings):
    """`switchboard bot discord`."""

    model_config = prefixed("DISCORD_")
    optional_keys = ("bot_token",)

    bot_token: SecretStr | None = None
    threads: bool = False  # answer mentions in a new thread (a bot's `threads` in the bots file overrides it)


class WhatsAppSettings(AdapterSettings):
    """POST /whatsapp/webhook on `switchboard serve` (the Cloud API delivers over HTTP only), mounted when
    WHATSAPP_ACCESS_TOKEN is set."""

    model_config = prefixed("WHATSAPP_")
    optional_keys = ("access_token",)
    signing_secrets = ("app_secret", "verify_token")

    access_token: SecretStr | None = None  # a System User's permanent token (README "WhatsApp")
    app_secret: SecretStr | None = None  # signs every delivery (X-Hub-Signature-256)
    verify_token: SecretStr | None = None  # echoed by Meta when the webhook URL is registered
    phone_number_id: str | None = None  # the business number answered (the bots file may map more)
    api_url: str = "https://graph.facebook.com"
    api_version: str = "v23.0"
    # An approved message template (its name and language code) sent instead of an answer outside the 24-hour
    # customer-service window, e.g. asking the user to write again; unset: such messages are only logged.
    template: str | None = None
    template_language: str = "en_US"


class TeamsSettings(AdapterSettings):
    """POST /teams/messages on `switchboard serve` (webhook only), mounted when TEAMS_APP_ID and
    TEAMS_APP_PASSWORD are set. The endpoints are Microsoft's; tests point them at a fake on loopback."""

    model_config = prefixed("TEAMS_")
    optional_keys = ("app_password",)

    app_id: str | None = None  # the Azure Bot's Microsoft App ID: the audience of Teams' tokens
    app_password: SecretStr | None = None  # its client secret, for the bot's own tokens
    tenant_id: str | None = None  # a single-tenant bot's tenant; None: a multi-tenant bot (botframework.com)
    # Where the bot's tokens come from (client credentials) and where Teams' signing keys are published.
    login_url: str = "https://login.microsoftonline.com"
    openid_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    # native: Teams' streaming protocol in personal chats; edit: post, then update every ~1.5 s everywhere.
    streaming: Literal["native", "edit"] = "native"


# `switchboard bot PLATFORM` → the settings it reads.
ADAPTER_SETTINGS: dict[str, type[AdapterSettings]] = {
    "slack": SlackSettings,
    "telegram": TelegramSettings,
    "discord": DiscordSettings,
}
# Platforms only the web server serves (their webhook), with no `switchboard bot PLATFORM`.
WEBHOOK_ONLY_SETTINGS: dict[str, type[AdapterSettings]] = {"whatsapp": WhatsAppSettings, "teams": TeamsSettings}


# --- the bots file's per-platform tables --------------------------------------------------------------------

# Ids in the bots file: TOML strings or integers, compared as text. One that could never match is a typo.
SlackId = Annotated[str, BeforeValidator(str), StringConstraints(pattern=r"^[A-Z0-9]+$")]
ChatId = Annotated[str, BeforeValidator(str), StringConstraints(pattern=r"^-?[0-9]+$")]
PhoneNumberId = Annotated[str, BeforeValidator(str), StringConstraints(pattern=r"^[0-9]+$")]


class BotTable(BaseModel):
    """A bot's table for one platform (`[bots.NAME.<platform>]`): its scopes (channels, teams, chats, guilds),
    each a set of ids that `Responder.bot_for` looks up. A key the platform does not know is refused
    (core.answer.profiles.load_tables validates every table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def scope(self, key: str) -> frozenset[str]:
        ids: frozenset[str] = getattr(self, key)
        return ids


class SlackTable(BotTable):
    channels: frozenset[SlackId] = frozenset()
    teams: frozenset[SlackId] = frozenset()  # a whole workspace


class VoiceReplyTable(BotTable):
    """A table of a platform with voice notes: `voice_reply = true` also sends the answer to one as speech."""

    voice_reply: bool = False


class TelegramTable(VoiceReplyTable):
    chats: frozenset[ChatId] = frozenset()


class WhatsAppTable(VoiceReplyTable):
    phone_numbers: frozenset[PhoneNumberId] = frozenset()  # business phone number ids (not the numbers)


class TeamsTable(BotTable):
    """Teams ids: a channel or chat's conversation id (19:…@thread.tacv2) and a tenant's GUID."""

    conversations: frozenset[str] = frozenset()
    tenants: frozenset[str] = frozenset()
