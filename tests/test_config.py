import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bots.settings import (
    ADAPTER_SETTINGS,
    WEBHOOK_ONLY_SETTINGS,
    DiscordSettings,
    SlackSettings,
    SlackTable,
    TeamsSettings,
    TelegramSettings,
    TelegramTable,
    WhatsAppTable,
)
from core.answer.profiles import BotProfile, load_profiles, load_tables
from core.config import Settings
from core.errors import ConfigError
from tests.support import REPO
from tests.support.adapters import adapter_settings
from widget.embeds import WidgetBot
from widget.settings import WebSettings

EXAMPLE = REPO / ".env.example"


def test_env_example_documents_exactly_the_settings() -> None:
    """Core's settings, the web server's and every chat adapter's (SLACK_*, …), each variable once."""
    documented = set(re.findall(r"^([A-Z_]+)=", EXAMPLE.read_text(), re.M))
    classes = (Settings, WebSettings, *ADAPTER_SETTINGS.values(), *WEBHOOK_ONLY_SETTINGS.values())
    assert documented == {f.validation_alias for cls in classes for f in cls.model_fields.values()}
    assert SlackSettings.model_fields["bot_token"].validation_alias == "SLACK_BOT_TOKEN"


def test_env_example_loads_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"^([A-Z_]+)=", EXAMPLE.read_text(), re.M):
        monkeypatch.delenv(name, raising=False)
    settings = WebSettings(_env_file=EXAMPLE)
    assert settings.weaviate_url is None and settings.embed_model_path is None
    assert settings.weaviate_local_port == 8099
    # A verbatim copy must not turn the local model off or leave a guessable signing secret behind.
    assert settings.llm_is_local and settings.llm_api_key is None and settings.embed_api_key is None
    assert settings.secret_key is None and settings.identity_secret is None
    slack, telegram = SlackSettings(_env_file=EXAMPLE), TelegramSettings(_env_file=EXAMPLE)
    assert (slack.mode, slack.bot, slack.streaming, telegram.mode) == ("socket", "default", "native", "polling")
    assert slack.bot_token is None and slack.signing_secret is None and telegram.webhook_secret is None
    assert not DiscordSettings(_env_file=EXAMPLE).threads
    teams = TeamsSettings(_env_file=EXAMPLE)
    assert teams.app_id is None and teams.app_password is None and teams.streaming == "native"


def test_placeholders_count_as_unset_but_never_sign() -> None:
    for cls in (Settings, WebSettings):
        settings = cls(_env_file=None, llm_api_key="change-me", weaviate_api_key="CHANGE-ME-too")
        assert settings.llm_is_local and settings.weaviate_api_key is None
    for field, variable in (("secret_key", "SWITCHBOARD_SECRET_KEY"), ("identity_secret", "IDENTITY_SECRET")):
        with pytest.raises(ValidationError, match=f"{variable} still holds the placeholder"):
            WebSettings(_env_file=None, **{field: "change-me"})
        assert Settings(_env_file=None, **{field: "change-me"}), "not core's: the web server's settings refuse it"


def test_adapter_settings_follow_the_same_placeholder_rule() -> None:
    slack = adapter_settings(SlackSettings, bot_token="change-me", app_token="xapp-1", mode="http")
    assert slack.bot_token is None and slack.app_token is not None and slack.mode == "http"
    assert adapter_settings(TelegramSettings, bot_token="CHANGE-ME").bot_token is None
    for adapter, field, variable in (
        (SlackSettings, "signing_secret", "SLACK_SIGNING_SECRET"),
        (TelegramSettings, "webhook_secret", "TELEGRAM_WEBHOOK_SECRET"),
    ):
        with pytest.raises(ValidationError, match=f"{variable} still holds the placeholder"):
            adapter_settings(adapter, **{field: "change-me"})
    with pytest.raises(ValidationError, match="DISCORD_BOT_TOKEN still holds the placeholder"):
        adapter_settings(DiscordSettings, environment="production", bot_token="change-me")


def test_adapter_settings_read_their_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_MODE", "http")
    monkeypatch.setenv("SLACK_BOT", "ops")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_URL", "https://bot.example/telegram/webhook")
    monkeypatch.setenv("DISCORD_THREADS", "true")
    monkeypatch.setenv("SWITCHBOARD_ENV", "production")
    slack = adapter_settings(SlackSettings)
    assert (slack.mode, slack.bot, slack.environment) == ("http", "ops", "production")
    assert adapter_settings(TelegramSettings).webhook_url == "https://bot.example/telegram/webhook"
    assert adapter_settings(DiscordSettings).threads
    for generic in ("MODE", "BOT", "BOT_TOKEN", "API_URL"):  # a field's bare name is not its variable
        monkeypatch.setenv(generic, "http")
    assert (SlackSettings(_env_file=None).bot, TelegramSettings(_env_file=None).mode) == ("ops", "polling")
    assert SlackSettings(_env_file=None).bot_token is None and DiscordSettings(_env_file=None).bot_token is None
    monkeypatch.setenv("SLACK_STREAMING", "sometimes")
    with pytest.raises(ValidationError, match="SLACK_STREAMING"):  # what the user set, as core's errors say
        adapter_settings(SlackSettings)


def test_production_refuses_placeholders_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="SWITCHBOARD_SECRET_KEY is required in production"):
        WebSettings(_env_file=None, environment="production")
    assert Settings(_env_file=None, environment="production").environment == "production", "the web server's key"
    with pytest.raises(ValidationError, match="EMBED_API_KEY still holds the placeholder"):
        Settings(_env_file=None, environment="production", embed_api_key="change-me")
    with pytest.raises(ValidationError, match="EMBED_API_KEY still holds the placeholder"):
        WebSettings(_env_file=None, environment="production", secret_key="s3cret", embed_api_key="change-me")
    with pytest.raises(ValidationError, match="SWITCHBOARD_SECRET_KEY still holds the placeholder"):
        WebSettings(_env_file=None, environment="production", secret_key="change-me")
    with pytest.raises(ValidationError, match="WEAVIATE_API_KEY is required"):
        Settings(_env_file=None, environment="production", weaviate_url="http://db:8080")
    with pytest.raises(ValidationError, match="WEAVIATE_API_KEY is required"):
        WebSettings(_env_file=None, environment="production", secret_key="s3cret", weaviate_url="http://db:8080")
    with pytest.raises(ValidationError, match="CHUNK_OVERLAP"):
        Settings(_env_file=None, chunk_size=400, chunk_overlap=300)
    with pytest.raises(ValidationError, match="invalid knowledge base name"):
        Settings(_env_file=None, default_kb="Docs!")


def test_every_channels_table_is_validated_the_same_way(tmp_path: Path) -> None:
    """`[bots.NAME.slack]` and `[bots.NAME.telegram]`: known keys map as before (TOML strings or integers), a
    typo'd key or an id that could never match stops start-up with one line naming the bot and the key."""
    bots = tmp_path / "bots.toml"

    def profiles(tables: str) -> dict[str, BotProfile]:
        bots.write_text(f'[bots.ops]\nkb = "ops"\n{tables}')
        return load_profiles(Settings(_env_file=None, bots_file=bots))

    good = profiles(
        '[bots.ops.slack]\nchannels = ["C0OPS"]\nteams = ["T0TEAM"]\n'
        '[bots.ops.telegram]\nchats = [-500, "-1001234567890"]\n'
    )
    slack = load_tables(good, "slack", SlackTable)
    assert slack["ops"].scope("channels") == {"C0OPS"} and slack["ops"].scope("teams") == {"T0TEAM"}
    assert slack["default"].scope("channels") == set(), "a bot without a table answers nowhere in particular"
    assert load_tables(good, "telegram", TelegramTable)["ops"].scope("chats") == {"-500", "-1001234567890"}
    for platform, model, table, error in (
        ("slack", SlackTable, 'chanels = ["C0OPS"]', r"\[bots.ops.slack\] chanels: Extra inputs are not permitted"),
        ("slack", SlackTable, 'channels = ["#general"]', r"\[bots.ops.slack\] channels.0: String should match"),
        ("slack", SlackTable, 'teams = "T0TEAM"', r"\[bots.ops.slack\] teams: Input should be a valid frozenset"),
        ("telegram", TelegramTable, "chat = [-500]", r"\[bots.ops.telegram\] chat: Extra inputs are not permitted"),
        ("telegram", TelegramTable, 'chats = ["@team"]', r"\[bots.ops.telegram\] chats.0: String should match"),
        (
            "whatsapp",
            WhatsAppTable,
            'phone_numbers = ["+1 555 0100"]',
            r"\[bots.ops.whatsapp\] phone_numbers.0: String",
        ),
        ("widget", WidgetBot, 'allowed_origin = ["https://a.test"]', r"\[bots.ops.widget\] allowed_origin: Extra"),
    ):
        bad = profiles(f"[bots.ops.{platform}]\n{table}\n")
        with pytest.raises(ConfigError, match=f"^SWITCHBOARD_BOTS_FILE: {error}"):
            load_tables(bad, platform, model)
