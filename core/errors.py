"""A small error hierarchy. Messages are one line and say what to do; the CLI prints them as they are."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error the kit reports to a person."""


class ConfigError(SwitchboardError, ValueError):
    """A setting is missing or contradicts another (a ValueError, so pydantic validators report it)."""


class StoreError(SwitchboardError):
    """Weaviate is unreachable or refused an operation."""


class KBNotFound(StoreError):
    """The named knowledge base does not exist."""


class EmptyKB(StoreError):
    """The knowledge base exists but holds no chunks."""


class EmbedderMismatch(StoreError):
    """The knowledge base was built with another embedding model."""


class EmbedError(SwitchboardError):
    """The embedding model could not be loaded or called."""


class IngestError(SwitchboardError):
    """A source could not be read, fetched or parsed."""


class UnsupportedSource(IngestError):
    """A file type or URL scheme the kit does not ingest."""


class IngestStopped(SwitchboardError):
    """Ingestion stopped on request (SIGTERM) between documents; running it again finishes it."""


class RerankError(SwitchboardError):
    """The reranker endpoint failed, timed out or returned something unusable (retrieval keeps its own order)."""


class LLMError(SwitchboardError):
    """The language model endpoint failed, stalled or returned something unusable."""


class StateError(SwitchboardError):
    """Redis, the state several replicas share (REDIS_URL), is unreachable or refused an operation."""


class AnswerFailed(SwitchboardError):
    """No answer came: the core's `Failed` reason (safe to show a user), or a stream that ended before `Done`."""


class CuratedError(SwitchboardError):
    """A curated answer (or a file of them) is invalid: empty, too long, or a bad line."""


class VoiceError(SwitchboardError):
    """Speech could not be transcribed or synthesised: the speech service failed, timed out or is not set up."""


class VoiceNotConfigured(VoiceError):
    """No speech-to-text (or text-to-speech) service is available: STT_BASE_URL / TTS_BASE_URL is not set."""


class VoiceRejected(VoiceError):
    """The input itself is unusable (a surface answers 4xx with this message): see the subclasses."""


class NotAudio(VoiceRejected):
    """The upload is not audio ffprobe can read."""


class AudioTooLarge(VoiceRejected):
    """The upload is over VOICE_MAX_MB."""


class AudioTooLong(VoiceRejected):
    """The recording lasts longer than VOICE_MAX_SECONDS."""


class TextTooLong(VoiceRejected):
    """The text to speak is over TTS_MAX_CHARS."""
