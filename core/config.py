"""Settings: the only place that reads the environment (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WEAVIATE_VERSION = "1.39.0"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = Field("development", validation_alias="SWITCHBOARD_ENV")
    data_dir: Path = Field(Path(".switchboard"), validation_alias="SWITCHBOARD_DATA_DIR")
    default_kb: str = Field("default", validation_alias="SWITCHBOARD_KB")

    # An external Weaviate; when unset the kit runs a local one (see core.store.local). Several nodes of one
    # cluster: comma-separated URLs, the first reachable one is used; gRPC ports: one for all, or one per URL.
    weaviate_url: str | None = Field(None, validation_alias="WEAVIATE_URL")
    weaviate_api_key: SecretStr | None = Field(None, validation_alias="WEAVIATE_API_KEY")
    weaviate_grpc_port: Annotated[tuple[Annotated[int, Field(ge=1, le=65535)], ...], NoDecode] = Field(
        (), validation_alias="WEAVIATE_GRPC_PORT"
    )
    weaviate_timeout: float = Field(10.0, validation_alias="WEAVIATE_TIMEOUT")
    # A replicated Weaviate: how many nodes must answer a read/write, and the replication factor of new KBs.
    weaviate_consistency: Literal["ONE", "QUORUM", "ALL"] = Field("QUORUM", validation_alias="WEAVIATE_CONSISTENCY")
    weaviate_replication_factor: int = Field(1, ge=1, le=15, validation_alias="WEAVIATE_REPLICATION_FACTOR")
    # The local Weaviate: ports (cluster ports follow the HTTP port) and binary.
    weaviate_local_port: int = Field(8099, validation_alias="WEAVIATE_LOCAL_PORT")
    weaviate_local_grpc_port: int = Field(50099, validation_alias="WEAVIATE_LOCAL_GRPC_PORT")
    weaviate_binary: Path | None = Field(None, validation_alias="WEAVIATE_BINARY")
    weaviate_startup_timeout: float = Field(90.0, validation_alias="WEAVIATE_STARTUP_TIMEOUT")

    # Embeddings: local ONNX (fastembed) by default, or any OpenAI-compatible endpoint.
    embed_provider: Literal["local", "openai"] = Field("local", validation_alias="EMBED_PROVIDER")
    embed_model: str = Field("sentence-transformers/all-MiniLM-L6-v2", validation_alias="EMBED_MODEL")
    embed_model_path: Path | None = Field(None, validation_alias="EMBED_MODEL_PATH")
    embed_base_url: str | None = Field(None, validation_alias="EMBED_BASE_URL")
    embed_api_key: SecretStr | None = Field(None, validation_alias="EMBED_API_KEY")
    embed_batch_size: int = Field(32, ge=1, le=2048, validation_alias="EMBED_BATCH_SIZE")
    embed_threads: int | None = Field(None, ge=1, validation_alias="EMBED_THREADS")

    # Chunking, in characters.
    chunk_size: int = Field(1000, ge=200, le=8000, validation_alias="CHUNK_SIZE")
    chunk_overlap: int = Field(150, ge=0, validation_alias="CHUNK_OVERLAP")

    # Retrieval.
    search_alpha: float = Field(0.75, ge=0.0, le=1.0, validation_alias="SEARCH_ALPHA")
    search_top_k: int = Field(5, ge=1, le=100, validation_alias="SEARCH_TOP_K")

    # Generation: any OpenAI-compatible chat endpoint. With neither LLM_BASE_URL nor LLM_API_KEY set, the kit
    # runs a local llama.cpp server with SmolLM2 (the `local` extra).
    llm_base_url: str | None = Field(None, validation_alias="LLM_BASE_URL")
    llm_api_key: SecretStr | None = Field(None, validation_alias="LLM_API_KEY")
    llm_model: str | None = Field(None, validation_alias="LLM_MODEL")
    llm_temperature: float = Field(0.2, ge=0.0, le=2.0, validation_alias="LLM_TEMPERATURE")
    llm_max_tokens: int = Field(512, ge=16, le=32768, validation_alias="LLM_MAX_TOKENS")
    llm_timeout: float = Field(60.0, gt=0, validation_alias="LLM_TIMEOUT")  # longest wait for the next token
    llm_connect_timeout: float = Field(5.0, gt=0, validation_alias="LLM_CONNECT_TIMEOUT")
    llm_local_port: int = Field(8098, validation_alias="LLM_LOCAL_PORT")
    llm_local_model_path: Path | None = Field(None, validation_alias="LLM_LOCAL_MODEL_PATH")
    llm_local_context: int = Field(4096, ge=512, validation_alias="LLM_LOCAL_CONTEXT")
    llm_local_startup_timeout: float = Field(120.0, validation_alias="LLM_LOCAL_STARTUP_TIMEOUT")

    # Answers: persona, grounding threshold, memory.
    bots_file: Path | None = Field(None, validation_alias="SWITCHBOARD_BOTS_FILE")
    bot_name: str = Field("Switchboard", validation_alias="BOT_NAME")
    system_prompt: str | None = Field(None, validation_alias="SYSTEM_PROMPT")
    answer_min_relevance: float = Field(0.3, ge=-1.0, le=1.0, validation_alias="ANSWER_MIN_RELEVANCE")
    history_max_turns: int = Field(10, ge=0, le=200, validation_alias="HISTORY_MAX_TURNS")
    history_max_tokens: int = Field(1500, ge=0, validation_alias="HISTORY_MAX_TOKENS")
    # A conversation nobody continued for this long is forgotten (in Redis and in SQLite).
    history_ttl_days: int = Field(30, ge=1, validation_alias="HISTORY_TTL_DAYS")
    # Questions, answers and feedback older than this are purged from the answer log (empty: kept).
    answer_log_retention_days: int | None = Field(None, ge=1, validation_alias="ANSWER_LOG_RETENTION_DAYS")

    # The web server and widget (`switchboard serve`).
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

    # Shared state for several replicas (history, rate limits, session secret, event de-duplication).
    # Empty: SQLite files and in-memory limits under the data directory (one machine).
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    # SIGTERM: stop taking new work, then give in-flight answers this long to finish.
    shutdown_grace_seconds: float = Field(20.0, ge=0, validation_alias="SHUTDOWN_GRACE_SECONDS")

    # Chat bots (`switchboard bot slack|telegram|discord`). Each answers as the bot named here unless the
    # bots file maps a workspace/chat/guild or channel to another one (`[bots.NAME.slack]` etc.).
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(None, validation_alias="SLACK_APP_TOKEN")  # Socket Mode
    slack_signing_secret: SecretStr | None = Field(None, validation_alias="SLACK_SIGNING_SECRET")  # HTTP mode
    slack_mode: Literal["socket", "http"] = Field("socket", validation_alias="SLACK_MODE")
    slack_bot: str = Field("default", validation_alias="SLACK_BOT")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="SLACK_API_URL")
    slack_ask_ephemeral: bool = Field(False, validation_alias="SLACK_ASK_EPHEMERAL")
    # native: Slack's streaming API (chat.startStream …) where the app may use it, else post-then-edit.
    slack_streaming: Literal["native", "edit"] = Field("native", validation_alias="SLACK_STREAMING")
    telegram_bot_token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_mode: Literal["polling", "webhook"] = Field("polling", validation_alias="TELEGRAM_MODE")
    telegram_webhook_url: str | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_URL")
    telegram_webhook_secret: SecretStr | None = Field(None, validation_alias="TELEGRAM_WEBHOOK_SECRET")
    telegram_bot: str = Field("default", validation_alias="TELEGRAM_BOT")
    telegram_api_url: str = Field("https://api.telegram.org/bot", validation_alias="TELEGRAM_API_URL")
    discord_bot_token: SecretStr | None = Field(None, validation_alias="DISCORD_BOT_TOKEN")
    discord_bot: str = Field("default", validation_alias="DISCORD_BOT")
    discord_threads: bool = Field(False, validation_alias="DISCORD_THREADS")

    # Fetching URLs during ingestion.
    fetch_timeout: float = Field(20.0, validation_alias="FETCH_TIMEOUT")
    fetch_max_mb: float = Field(25.0, validation_alias="FETCH_MAX_MB")
    fetch_user_agent: str = Field("SwitchboardBot/0.1 (+self-hosted)", validation_alias="FETCH_USER_AGENT")
    max_file_mb: float = Field(50.0, validation_alias="INGEST_MAX_FILE_MB")
    # Internal hosts URL ingestion may fetch (hostnames or CIDRs, comma-separated); every other loopback,
    # private, link-local or metadata address is refused on every hop.
    ingest_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="INGEST_ALLOWED_HOSTS")
    # Archive-based formats (docx) and PDFs are bounded when unpacked, not only by their file size.
    max_uncompressed_mb: float = Field(100.0, gt=0, validation_alias="INGEST_MAX_UNCOMPRESSED_MB")
    max_compression_ratio: float = Field(100.0, gt=1, validation_alias="INGEST_MAX_COMPRESSION_RATIO")
    max_pdf_pages: int = Field(2000, ge=1, validation_alias="INGEST_MAX_PDF_PAGES")

    # The admin API (/admin): disabled unless a key is set. Uploads may be larger than other request bodies.
    admin_api_key: SecretStr | None = Field(None, validation_alias="ADMIN_API_KEY")
    admin_max_upload_mb: float | None = Field(None, gt=0, validation_alias="ADMIN_MAX_UPLOAD_MB")

    @field_validator("default_kb")
    @classmethod
    def _kb_name(cls, value: str) -> str:
        from core.kb import validate_kb_name

        return validate_kb_name(value)

    @field_validator("weaviate_url")
    @classmethod
    def _node_urls(cls, value: str | None) -> str | None:
        for url in _split(value):
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL (several nodes: comma-separated URLs)")
        return value

    @field_validator("public_url", "ingest_allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return tuple(_split(value)) if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(web_origin(url) for url in value)

    @field_validator("weaviate_grpc_port", mode="before")
    @classmethod
    def _port_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(_split(value))
        return (value,) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size // 2:
            raise ValueError("CHUNK_OVERLAP must be less than half of CHUNK_SIZE")
        if self.environment == "production" and self.weaviate_url and not self.weaviate_api_key:
            raise ValueError("WEAVIATE_API_KEY is required for an external Weaviate in production")
        ports, urls = len(self.weaviate_grpc_port), len(_split(self.weaviate_url))
        if ports > 1 and ports != urls:
            raise ValueError(
                f"WEAVIATE_GRPC_PORT lists {ports} ports for {urls} WEAVIATE_URL node(s): "
                "give one port for every node, or one per URL in the same order"
            )
        if self.environment == "production" and not self.secret_key:
            raise ValueError("SWITCHBOARD_SECRET_KEY is required in production (e.g. `openssl rand -hex 32`)")
        if self.admin_api_key is not None and len(self.admin_api_key.get_secret_value()) < 16:
            raise ValueError("ADMIN_API_KEY must be at least 16 characters (e.g. `openssl rand -hex 32`)")
        for name in (*_OPTIONAL_KEYS, *_SIGNING_SECRETS):
            secret = getattr(self, name)
            if secret is None or not is_placeholder(secret.get_secret_value()):
                continue
            if self.environment == "production" or name in _SIGNING_SECRETS:
                # Anything signed or checked with a published placeholder can be forged by anyone.
                variable = type(self).model_fields[name].validation_alias  # what the user sets: SWITCHBOARD_SECRET_KEY
                raise ValueError(f"{variable} still holds the placeholder from .env.example: set a real value")
            setattr(self, name, None)  # an optional key left as in .env.example is simply not set
        return self

    @property
    def weaviate_nodes(self) -> list[tuple[str, int | None]]:
        """WEAVIATE_URL's nodes, each with its gRPC port (None: the scheme's default)."""
        urls, ports = _split(self.weaviate_url), self.weaviate_grpc_port
        if len(ports) > 1:
            return list(zip(urls, ports, strict=True))
        return [(url, ports[0] if ports else None) for url in urls]

    @property
    def weaviate_dir(self) -> Path:
        return self.data_dir / "weaviate"

    @property
    def admin_upload_bytes(self) -> int:
        """The body limit of one upload request, all files together."""
        return int((self.admin_max_upload_mb or self.max_file_mb) * 1e6)

    @property
    def llm_is_local(self) -> bool:
        return not self.llm_base_url and not self.llm_api_key


# Keys whose placeholder counts as unset in development, and secrets a placeholder must never stand in for.
_OPTIONAL_KEYS = (
    "weaviate_api_key",
    "embed_api_key",
    "llm_api_key",
    "slack_bot_token",
    "slack_app_token",
    "telegram_bot_token",
    "discord_bot_token",
)
_SIGNING_SECRETS = ("secret_key", "identity_secret", "slack_signing_secret", "telegram_webhook_secret", "admin_api_key")


def is_placeholder(value: str) -> bool:
    """The `change-me` values of .env.example (and the empty string)."""
    return not value.strip() or value.strip().lower().startswith("change-me")


def web_origin(url: str) -> str:
    """The origin a browser sends for pages under `url`: scheme://host[:port], without a default port or path."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    port = "" if parsed.port in (None, {"http": 80, "https": 443}[parsed.scheme]) else f":{parsed.port}"
    return f"{parsed.scheme}://{host}{port}"


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in value.split(",")] if value else []


@lru_cache
def get_settings() -> Settings:
    return Settings()
