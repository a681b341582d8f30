"""The one entry point every surface calls: `Assistant.answer(message)` → an async stream of typed events.

The stream is always `Sources`, then `Delta`s, then `Done` — or a single `Failed` when nothing can be
answered (the knowledge base is unreachable, the bot is unknown). Retrieval decides the sources, not the
model: when the model cites none, `Done` carries the sources it was given as "consulted"; when the model
fails, stalls or says nothing, the answer is the best passages, labelled, and the stream still ends in Done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AsyncExitStack, aclosing, asynccontextmanager

from redis.asyncio import Redis

from core.answer.conversations import ConversationQuery
from core.answer.curated import CuratedAnswers, create_curated
from core.answer.curated_data import Match
from core.answer.gaps import Gap
from core.answer.history import HistoryStore, create_history, fit_history
from core.answer.llm import LLM, Finish, extractive_answer, open_llm
from core.answer.log import (
    AnswerLog,
    AnswerRecord,
    ConversationSummary,
    Feedback,
    Outcome,
    RatedAnswer,
    Rating,
    create_answer_log,
)
from core.answer.profiles import DEFAULT_BOT, BotProfile, load_profiles
from core.answer.prompt import answer_messages, cited_numbers, condense_messages
from core.answer.stats import Stats, answer_stats, period_gaps
from core.config import Settings
from core.embed import Embedder, create_embedder
from core.errors import ConfigError, KBNotFound, LLMError, SwitchboardError
from core.knowledge import Knowledge
from core.metrics import ANSWER_FIRST_TEXT, ANSWERS, LLM_SECONDS, RETRIEVAL
from core.shared_state import open_redis, redis_check
from core.shutdown import InFlight
from core.store.client import Store, open_store
from core.store.rerank import Reranker, open_reranker
from core.store.search import SearchOptions, retrieve
from core.types import (
    Citation,
    Delta,
    Done,
    Event,
    Failed,
    Generation,
    Message,
    Source,
    Sources,
    Turn,
    shown_source,
)
from core.voice import Speech, Voice, VoiceInfo, open_voice

logger = logging.getLogger(__name__)

DONT_KNOW = (
    "I couldn't find anything about that in the documents I have, so I won't guess. "
    "Try rephrasing, or ask about something the documentation covers."
)
STORE_DOWN = "The knowledge base is unavailable right now. Please try again in a moment."
_CONDENSED_MAX_CHARS = 300


def to_citations(sources: Sequence[Source]) -> tuple[Citation, ...]:
    return tuple(
        Citation(n=n, title=s.title, source=shown_source(s.source, s.origin), section=s.section, snippet=s.snippet)
        for n, s in enumerate(sources, 1)
    )


class Assistant:
    """What surfaces call: `answer`, and around it the conversation records (`transcript`, `rate`, `reset`), the
    KB admin facade (`knowledge`), readiness and shutdown (`drain`). Its services are its own: a surface that needs
    more is handed a narrow collaborator by the composition root, not this object's attributes."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        llm: LLM | None,
        history: HistoryStore,
        answers: AnswerLog,
        profiles: dict[str, BotProfile],
        redis: Redis | None = None,
        reranker: Reranker | None = None,
        curated: CuratedAnswers | None = None,
        voice: Voice | None = None,
    ):
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.llm = llm
        self.history = history
        self.answers = answers
        self.profiles = profiles
        self.reranker = reranker
        self.knowledge = Knowledge(store, embedder, settings)
        self.curated = curated  # operators' own answers, given instead of generated ones when a question matches
        self.redis = redis  # the process's client for state shared with other replicas (rate limits, de-dup)
        self.in_flight = InFlight()  # every answer of this process, for a graceful shutdown
        # Speech in and out (core.voice); without one, both directions are off.
        self._voice = voice or Voice(settings=settings, transcriber=None, speaker=None)

    def profile(self, bot: str | None) -> BotProfile:
        try:
            return self.profiles[bot or DEFAULT_BOT]
        except KeyError:
            raise ConfigError(f"unknown bot {bot!r}") from None

    async def search(self, kb: str, query: str, *, top_k: int | None = None, relevance: bool = False) -> list[Source]:
        """Retrieval as answers use it (the SEARCH_* settings, the reranker if any); `top_k` overrides;
        `relevance` scores each passage for the grounding threshold."""
        options = SearchOptions.from_settings(self.settings, top_k=top_k, relevance=relevance)
        return await retrieve(self.store, self.embedder, kb, query, options, self.reranker)

    async def grounding(self, kb: str, query: str) -> list[Source]:
        """The passages an answer may use: the search's, each at least ANSWER_MIN_RELEVANCE like the question."""
        found = await self.search(kb, query, relevance=True)
        threshold = self.settings.answer_min_relevance
        return [s for s in found if s.relevance is not None and s.relevance >= threshold]

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether this process can answer, and what each service it answers with says (for /readyz)."""
        checks: dict[str, str] = {}
        try:
            checks["weaviate"] = f"ok ({await asyncio.wait_for(self.store.server_version(), 5)})"
        except (SwitchboardError, TimeoutError) as exc:
            checks["weaviate"] = f"unavailable: {exc or 'no answer within 5 s'}"
        try:  # a cluster with nodes down stays ready while WEAVIATE_CONSISTENCY can still be met
            nodes = await asyncio.wait_for(self.store.cluster_health(), 5)
            checks["weaviate_nodes"] = f"ok ({nodes.summary})" if nodes.serving else f"unavailable: {nodes.summary}"
        except TimeoutError:
            # Right after a node dies the cluster's node report waits for it. Not a reason to take every replica
            # out of the load balancer at once: unknown does not count against readiness.
            checks["weaviate_nodes"] = "unknown: the cluster did not report its nodes within 5 s"
        except SwitchboardError as exc:
            checks["weaviate_nodes"] = f"unavailable: {exc}"
        if self.llm is None:  # a supported mode (the default compose file), not a fault: ready
            checks["llm"] = self.model
        else:
            checks["llm"] = "ok" if await self.llm.ping() else "unavailable"
        if self.redis is not None:
            checks["redis"] = await redis_check(self.redis)
        return all(v.startswith(("ok", "unknown", "none")) for v in checks.values()), checks

    @property
    def model(self) -> str:
        """The model answers are written with, as a person reads it."""
        return self.llm.model if self.llm else "none: answers quote passages"

    @property
    def voice(self) -> VoiceInfo:
        """Which speech services this process has (None where a direction is off)."""
        return self._voice.info

    async def transcribe(self, audio: bytes, *, filename: str = "audio", content_type: str = "") -> str:
        """A recording's words, within VOICE_MAX_MB / VOICE_MAX_SECONDS (core.voice.Voice.transcribe's errors)."""
        return await self._voice.transcribe(audio, filename=filename, content_type=content_type)

    async def speak(self, text: str, *, voice_note: bool = False) -> Speech:
        """`text` as audio, within TTS_MAX_CHARS (core.voice.Voice.speak's errors); `voice_note`: OGG/Opus."""
        return await self._voice.speak(text, voice_note=voice_note)

    async def drain(self) -> None:
        """On shutdown: let the answers in flight finish, for at most SHUTDOWN_GRACE_SECONDS."""
        await self.in_flight.drain(self.settings.shutdown_grace_seconds)

    async def reset(self, channel: str, conversation_id: str) -> None:
        await self.history.reset(channel, conversation_id)

    async def logged(self, answer_id: str) -> AnswerRecord | None:
        """One answer as the answer log keeps it (question, sources, who asked)."""
        return await self.answers.get(answer_id)

    async def transcript(self, channel: str, conversation_id: str) -> list[AnswerRecord]:
        """A conversation's logged answers, oldest first."""
        return await self.answers.conversation(channel, conversation_id)

    async def latest_conversation(self, channel: str, prefix: str) -> str | None:
        """The most recently active conversation whose key starts with `prefix` (a user's, across browsers)."""
        return await self.answers.latest_conversation(channel, prefix)

    async def feedback(self, answer_id: str) -> Feedback | None:
        """The rating given to one answer, if any."""
        return await self.answers.feedback(answer_id)

    async def stats(self, *, period: float, bot: str | None, gaps: bool = True) -> Stats:
        """Analytics over the answer log (core.answer.stats), knowledge gaps clustered with the kit's embedder
        (without `gaps`: left out, see gaps())."""
        return await answer_stats(self.answers, self.embedder if gaps else None, period=period, bot=bot)

    async def gaps(self, *, period: float, bot: str | None) -> tuple[Gap, ...]:
        """Only the knowledge gaps of stats()."""
        return await period_gaps(self.answers, self.embedder, period=period, bot=bot)

    async def rated_answers(self, *, bot: str | None, rating: Rating | None, limit: int) -> list[RatedAnswer]:
        """The latest feedback first, from every channel, each with the answer it judges (the admin API)."""
        return await self.answers.rated_answers(bot=bot, rating=rating, limit=limit)

    async def conversations(self, query: ConversationQuery) -> list[ConversationSummary]:
        """One bot's conversations on every channel (those matching the query's text and dates), the most
        recently active first (the admin API and console)."""
        return await self.answers.conversations(query)

    async def engage(self, channel: str, conversation_id: str) -> None:
        """Note a conversation the bot joined, before any answer is logged (Slack: a thread it was mentioned in
        answers follow-ups without a mention)."""
        await self.answers.engage(channel, conversation_id)

    async def engaged(self, channel: str, conversation_id: str) -> bool:
        return await self.answers.engaged(channel, conversation_id)

    async def rate(
        self, answer_id: str, rating: Rating, comment: str | None = None, *, within: tuple[str, str] | None = None
    ) -> bool:
        """Store a rating next to the answer it judges; False when there is no such answer. `within`
        (channel, conversation key prefix): only an answer given there, for surfaces whose callers may rate only
        their own answers."""
        record = await self.answers.get(answer_id)
        if record is None:
            return False
        if within is not None and (record.channel != within[0] or not record.conversation.startswith(within[1])):
            return False
        await self.answers.add_feedback(answer_id, rating, comment)
        return True

    async def answer(self, message: Message) -> AsyncIterator[Event]:
        clock = _Clock()
        with self.in_flight.track():
            async with aclosing(self._answer(message, clock)) as events:
                async for event in events:
                    if isinstance(event, Delta):
                        clock.first_text()
                    yield event

    async def _answer(self, message: Message, clock: _Clock) -> AsyncGenerator[Event, None]:
        try:
            profile = self.profile(message.bot)
        except ConfigError as exc:
            yield Failed(reason=str(exc))
            return
        stored = message.history
        if stored is None:
            stored = tuple(await self.history.load(message.channel, message.conversation_id))
        turns = fit_history(stored, self.settings.history_max_tokens)
        query = await self._standalone_query(message.query or message.text, turns)
        hit = await self._curated(profile, query)
        if hit is not None:
            citations = hit.curated.citations
            yield Sources(sources=citations)
            yield Delta(text=hit.curated.answer)
            yield await self._finish(
                message, profile, hit.curated.answer, citations, clock, cited=bool(citations), curated=True
            )
            return
        try:
            with RETRIEVAL.time():
                relevant = await self.grounding(profile.kb, query)
        except KBNotFound:
            logger.warning("bot %s has no documents in KB %s", profile.name, profile.kb)
            relevant = []
        except SwitchboardError:
            logger.exception("retrieval failed for bot %s", profile.name)
            yield Failed(reason=STORE_DOWN)
            return

        citations = to_citations(relevant)
        yield Sources(sources=citations)
        if not relevant:
            yield Delta(text=DONT_KNOW)
            yield await self._finish(message, profile, DONT_KNOW, (), clock, outcome="dont_know")
            return

        text = ""
        finish: Finish | None = None
        failure: str | None = None if self.llm else "no language model available"
        if self.llm is not None:
            messages = answer_messages(
                message.text, relevant, turns, persona=profile.persona, system_prompt=profile.system_prompt
            )
            options = message.generation or Generation()
            generating = time.monotonic()
            try:
                async for piece in self.llm.stream(
                    messages, max_tokens=options.max_tokens, temperature=options.temperature, stop=options.stop
                ):
                    if isinstance(piece, Finish):
                        finish = piece
                        continue
                    text += piece
                    yield Delta(text=piece)
            except LLMError as exc:
                failure = str(exc)
            LLM_SECONDS.observe(time.monotonic() - generating)
        if failure is not None or not text.strip():
            logger.warning("answering from passages: %s", failure or "the model returned nothing")
            extra = extractive_answer(citations)
            extra = f"\n\n{extra}" if text.strip() else extra
            text += extra
            yield Delta(text=extra)
            yield await self._finish(message, profile, text, citations, clock, outcome="fallback")
            return

        numbers = cited_numbers(text, len(citations))
        if numbers:
            by_number = {c.n: c for c in citations}
            cited = tuple(by_number[n] for n in numbers)
            yield await self._finish(message, profile, text, cited, clock, model=finish)
        else:
            yield await self._finish(message, profile, text, citations, clock, cited=False, model=finish)

    async def _curated(self, profile: BotProfile, query: str) -> Match | None:
        """The bot's curated answer for this (standalone) question, if one is close enough."""
        if self.curated is None:
            return None
        try:
            return await self.curated.match(profile.name, query)
        except Exception:  # a broken curated store must not stop answers: generate as usual
            logger.exception("curated answers unavailable for bot %s", profile.name)
            return None

    async def _standalone_query(self, question: str, turns: Sequence[Turn]) -> str:
        """Fold a follow-up ("and on Docker?") into a self-contained search query using recent turns."""
        if not turns or self.llm is None:
            return question
        try:
            condensed = (await self.llm.complete(condense_messages(question, turns), max_tokens=64)).strip()
        except LLMError as exc:
            logger.warning("query condensation failed, searching with the question and the last one: %s", exc)
            condensed = ""
        if not condensed or len(condensed) > _CONDENSED_MAX_CHARS:
            last_user = next((t.content for t in reversed(turns) if t.role == "user"), "")
            return f"{last_user} {question}".strip()
        return condensed

    async def _finish(
        self,
        message: Message,
        profile: BotProfile,
        text: str,
        citations: tuple[Citation, ...],
        clock: _Clock,
        *,
        outcome: Outcome = "answered",
        cited: bool = True,
        model: Finish | None = None,
        curated: bool = False,
    ) -> Done:
        """Remember the turn, log the answer with its sources, outcome and timings, and close the stream.

        `cited`: the model cited the sources; "I don't know" has none, quoted passages always cite theirs."""
        cited = cited and outcome != "dont_know"
        fallback = outcome == "fallback"
        first_token_ms, total_ms = clock.timings()
        ANSWERS.labels(message.channel, outcome).inc()
        if first_token_ms is not None:
            ANSWER_FIRST_TEXT.observe(first_token_ms / 1000)
        turns = [Turn(role="user", content=message.text), Turn(role="assistant", content=text)]
        answer_id = ""
        try:
            if message.history is None:
                await self.history.append(message.channel, message.conversation_id, turns)
            answer_id = await self.answers.record(
                channel=message.channel,
                conversation=message.conversation_id,
                bot=profile.name,
                question=message.text,
                answer=text,
                citations=citations,
                cited=cited,
                fallback=fallback,
                user_id=message.user_id,
                outcome=outcome,
                first_token_ms=first_token_ms,
                total_ms=total_ms,
                curated=curated,
            )
        except Exception:  # losing memory or the log must not lose the answer itself
            logger.exception("could not save conversation %s/%s", message.channel, message.conversation_id)
        return Done(
            answer_id=answer_id,
            text=text,
            citations=citations,
            cited=cited,
            fallback=fallback,
            finish_reason=model.reason if model else "stop",
            usage=model.usage if model else None,
            curated=curated,
        )


class _Clock:
    """One answer's timings: from the question to its first text (what the asker waits for) and to the end."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._first: float | None = None

    def first_text(self) -> None:
        if self._first is None:
            self._first = time.monotonic()

    def timings(self) -> tuple[float | None, float]:
        """(to the first text, to now) in milliseconds."""
        now = time.monotonic()
        first = None if self._first is None else (self._first - self._start) * 1000
        return first, (now - self._start) * 1000


@asynccontextmanager
async def open_assistant(
    settings: Settings, *, redis: Redis | None = None, keep_running: bool = False
) -> AsyncIterator[Assistant]:
    """Everything an answer needs, opened once per process (server lifespan, bot, CLI command). `redis`: the
    process's shared-state client (core.shared_state.open_redis) when the caller opened it to build its own
    shared state on it too (the web server's limits and jobs); else it is opened here."""
    profiles = load_profiles(settings)
    embedder = await asyncio.to_thread(create_embedder, settings)
    answers = create_answer_log(settings)
    async with AsyncExitStack() as stack:
        if redis is None:  # first: a wrong REDIS_URL fails before Weaviate and the LLM start
            redis = await stack.enter_async_context(open_redis(settings))
        store = await stack.enter_async_context(open_store(settings, keep_running=keep_running))
        llm = await stack.enter_async_context(open_llm(settings, keep_running=keep_running))
        reranker = await stack.enter_async_context(open_reranker(settings))
        voice = await stack.enter_async_context(open_voice(settings))
        history = create_history(settings, redis)
        await history.purge_expired()  # retention at startup, then on writes (at most hourly)
        await answers.purge_expired()
        yield Assistant(
            settings=settings,
            store=store,
            embedder=embedder,
            llm=llm,
            history=history,
            answers=answers,
            profiles=profiles,
            redis=redis,
            reranker=reranker,
            curated=create_curated(settings, embedder),
            voice=voice,
        )
