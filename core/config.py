"""Core's settings, and how every settings class reads the environment (and `.env`): no other module reads it.
Each chat adapter's settings are its own (bots.settings), and so are the web server's (widget.settings), read the
same way."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WEAVIATE_VERSION = "1.39.0"
Environment = Literal["development", "production"]
KeywordField = Literal["text", "title", "section"]
DEFAULT_KEYWORD_FIELDS: tuple[KeywordField, ...] = ("text",)
DEFAULT_DOC_CAP = 1
DEFAULT_DOC_DAMPING = 0.0
DEFAULT_DOC_LENGTH_PENALTY = 0.1
# How Weaviate merges the BM25 and vector lists: by normalised scores, or by reciprocal rank.
Fusion = Literal["relative", "ranked"]


# How every settings class reads its values (core's here, each chat adapter's in bots.settings, the web server's
# in widget.settings): the environment, then `.env`; an empty variable counts as unset, variables of other classes
# are ignored.
ENV_CONFIG = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore", populate_by_name=True
)


class Settings(BaseSettings):
    model_config = ENV_CONFIG

    environment: Environment = Field("development", validation_alias="SWITCHBOARD_ENV")
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
    # A heading starts a new chunk only once the current chunk has this many characters (0: at every heading).
    chunk_merge_below: int = Field(0, ge=0, validation_alias="CHUNK_MERGE_BELOW")

    # Retrieval.
    search_alpha: float = Field(0.75, ge=0.0, le=1.0, validation_alias="SEARCH_ALPHA")
    search_top_k: int = Field(5, ge=1, le=100, validation_alias="SEARCH_TOP_K")
    # The chunk fields BM25 searches (comma-separated: text, title, section). Title and section words repeat on
    # every chunk of a long document, so searching them let long documents crowd out short answers.
    search_keyword_fields: Annotated[tuple[KeywordField, ...], NoDecode] = Field(
        DEFAULT_KEYWORD_FIELDS, min_length=1, validation_alias="SEARCH_KEYWORD_FIELDS"
    )
    # At most this many passages of one document in the results (0: no cap), so one long document cannot take
    # every slot; 4× SEARCH_TOP_K candidates are fetched to fill them (at least 40 with damping).
    search_doc_cap: int = Field(DEFAULT_DOC_CAP, ge=0, le=100, validation_alias="SEARCH_DOC_CAP")
    # A document's score: its best passage's plus this share of the scores of its other passages among the 40
    # candidates. Negative pushes down a long page that matches a little everywhere (0: best passage only).
    search_doc_damping: float = Field(DEFAULT_DOC_DAMPING, ge=-1.0, le=1.0, validation_alias="SEARCH_DOC_DAMPING")
    # A document's score loses this × ln(its chunk count): a long document has many chances for one passage to
    # match a question by chance, so its best passage is discounted (0: no discount).
    search_doc_length_penalty: float = Field(
        DEFAULT_DOC_LENGTH_PENALTY, ge=0.0, le=1.0, validation_alias="SEARCH_DOC_LENGTH_PENALTY"
    )
    # Whether BM25 also matches a question's opening ("How do I", "What's"): off, BM25 matches its subject and
    # the vectors still read the whole question; on, pages that say "how do I" everywhere gain.
    search_keyword_question_words: bool = Field(False, validation_alias="SEARCH_KEYWORD_QUESTION_WORDS")
    # An optional reranker: any server speaking the common /rerank API (Cohere, Jina, Infinity, vLLM), e.g.
    # https://api.jina.ai/v1 (POST …/rerank). Off when RERANK_BASE_URL is empty; if it fails, the hybrid order
    # stands. It scores RERANK_TOP_N hybrid candidates (at least SEARCH_TOP_K).
    rerank_base_url: str | None = Field(None, validation_alias="RERANK_BASE_URL")
    rerank_model: str | None = Field(None, validation_alias="RERANK_MODEL")
    rerank_api_key: SecretStr | None = Field(None, validation_alias="RERANK_API_KEY")
    rerank_top_n: int = Field(20, ge=1, le=1000, validation_alias="RERANK_TOP_N")
    rerank_timeout: float = Field(5.0, gt=0, validation_alias="RERANK_TIMEOUT")

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
    # A question at least this similar (cosine, the configured embedder) to a curated answer's question or one of
    # its paraphrases gets that answer. 0.9 suits all-MiniLM-L6-v2: rewordings of one question score above it,
    # related but different questions below; lower it for looser matching, raise it for other embedders.
    curated_min_similarity: float = Field(0.9, ge=0.0, le=1.0, validation_alias="CURATED_MIN_SIMILARITY")
    # Questions, answers and feedback older than this are purged from the answer log (empty: kept).
    answer_log_retention_days: int | None = Field(None, ge=1, validation_alias="ANSWER_LOG_RETENTION_DAYS")

    # Voice (core.voice). Speech-to-text: any OpenAI-compatible /v1/audio/transcriptions endpoint; without
    # STT_BASE_URL, the offline Whisper base model of the `voice` extra if installed, else speech-to-text is off.
    stt_base_url: str | None = Field(None, validation_alias="STT_BASE_URL")
    stt_model: str = Field("whisper-1", validation_alias="STT_MODEL")
    stt_api_key: SecretStr | None = Field(None, validation_alias="STT_API_KEY")
    # Text-to-speech: any OpenAI-compatible /v1/audio/speech endpoint; without TTS_BASE_URL, espeak-ng (offline).
    tts_base_url: str | None = Field(None, validation_alias="TTS_BASE_URL")
    tts_model: str = Field("tts-1", validation_alias="TTS_MODEL")
    tts_voice: str = Field("alloy", validation_alias="TTS_VOICE")
    tts_api_key: SecretStr | None = Field(None, validation_alias="TTS_API_KEY")
    tts_espeak_voice: str = Field("en-us", validation_alias="TTS_ESPEAK_VOICE")
    tts_max_chars: int = Field(2000, ge=1, le=4096, validation_alias="TTS_MAX_CHARS")  # 4096: OpenAI's limit
    voice_max_mb: float = Field(10.0, gt=0, le=25, validation_alias="VOICE_MAX_MB")  # 25: OpenAI's upload limit
    voice_max_seconds: float = Field(120.0, gt=0, validation_alias="VOICE_MAX_SECONDS")
    # The longest wait for a speech service, and for one audio conversion or espeak-ng run.
    voice_timeout: float = Field(60.0, gt=0, validation_alias="VOICE_TIMEOUT")

    # Shared state for several replicas (history, rate limits, session secret, event de-duplication).
    # Empty: SQLite files and in-memory limits under the data directory (one machine).
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")
    # SIGTERM: stop taking new work, then give in-flight answers this long to finish.
    shutdown_grace_seconds: float = Field(20.0, ge=0, validation_alias="SHUTDOWN_GRACE_SECONDS")

    # Fetching URLs during ingestion.
    fetch_timeout: float = Field(20.0, validation_alias="FETCH_TIMEOUT")
    fetch_max_mb: float = Field(25.0, validation_alias="FETCH_MAX_MB")
    fetch_user_agent: str = Field("SwitchboardBot/0.1 (+self-hosted)", validation_alias="FETCH_USER_AGENT")
    # A crawl (`source add --crawl`) starts one request per this many seconds at most (robots.txt may ask more).
    crawl_delay_seconds: float = Field(0.5, ge=0, le=60, validation_alias="CRAWL_DELAY_SECONDS")
    max_file_mb: float = Field(50.0, validation_alias="INGEST_MAX_FILE_MB")
    # Internal hosts URL ingestion may fetch (hostnames or CIDRs, comma-separated); every other loopback,
    # private, link-local or metadata address is refused on every hop.
    ingest_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias="INGEST_ALLOWED_HOSTS")
    # Archive-based formats (docx) and PDFs are bounded when unpacked, not only by their file size.
    max_uncompressed_mb: float = Field(100.0, gt=0, validation_alias="INGEST_MAX_UNCOMPRESSED_MB")
    max_compression_ratio: float = Field(100.0, gt=1, validation_alias="INGEST_MAX_COMPRESSION_RATIO")
    max_pdf_pages: int = Field(2000, ge=1, validation_alias="INGEST_MAX_PDF_PAGES")

    # Connector sources (`source add confluence:SPACE`, `notion:ID`, `drive:FOLDER_ID`): each service's account.
    # Confluence: the site (Cloud: https://you.atlassian.net/wiki) with a user's e-mail and API token, or a Data
    # Center personal access token alone (no user).
    confluence_url: str | None = Field(None, validation_alias="CONFLUENCE_URL")
    confluence_user: str | None = Field(None, validation_alias="CONFLUENCE_USER")
    confluence_api_token: SecretStr | None = Field(None, validation_alias="CONFLUENCE_API_TOKEN")
    # Notion: an integration's secret (the pages must be shared with the integration).
    notion_token: SecretStr | None = Field(None, validation_alias="NOTION_TOKEN")
    notion_base_url: str = Field("https://api.notion.com", validation_alias="NOTION_BASE_URL")
    # Google Drive: a service account's JSON key file (share the folders with its e-mail address).
    google_service_account_file: Path | None = Field(None, validation_alias="GOOGLE_SERVICE_ACCOUNT_FILE")
    google_drive_endpoint: str | None = Field(None, validation_alias="GOOGLE_DRIVE_ENDPOINT")

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

    @field_validator("ingest_allowed_hosts", "search_keyword_fields", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return comma_separated(value)

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
        unset_placeholders(self, optional=_OPTIONAL_KEYS, signing=(), production=self.environment == "production")
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
    def llm_is_local(self) -> bool:
        return not self.llm_base_url and not self.llm_api_key


# Keys whose placeholder counts as unset in development (core has no signing secrets: the web server's are
# widget.settings').
_OPTIONAL_KEYS = (
    "weaviate_api_key",
    "embed_api_key",
    "llm_api_key",
    "rerank_api_key",
    "stt_api_key",
    "tts_api_key",
    "confluence_api_token",
    "notion_token",
)


def unset_placeholders(
    settings: BaseSettings, *, optional: tuple[str, ...], signing: tuple[str, ...], production: bool
) -> None:
    """The placeholder rule of every settings class (core's, the web server's, each chat adapter's), for its secret
    fields: an optional key left at its .env.example placeholder is simply not set (in production it is refused),
    and a signing secret never holds one. Called last in the class's "after" model validator."""
    for name in (*optional, *signing):
        secret = getattr(settings, name)
        if secret is None or not is_placeholder(secret.get_secret_value()):
            continue
        if production or name in signing:
            # Anything signed or checked with a published placeholder can be forged by anyone.
            variable = type(settings).model_fields[name].validation_alias  # what the user sets: SLACK_BOT_TOKEN
            raise ValueError(f"{variable} still holds the placeholder from .env.example: set a real value")
        setattr(settings, name, None)


def is_placeholder(value: str) -> bool:
    """The `change-me` values of .env.example (and the empty string)."""
    return not value.strip() or value.strip().lower().startswith("change-me")


def comma_separated(value: object) -> object:
    """A "before" validator's step for list settings: a variable's `a, b` → ("a", "b"); other values as they are."""
    return tuple(_split(value)) if isinstance(value, str) else value


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in value.split(",")] if value else []


@lru_cache
def get_settings() -> Settings:
    return Settings()
