"""The widget's voice endpoints, for bots whose `[bots.NAME.widget]` table says `voice = true`:

- `POST /api/transcribe`: the recording as the request body (any audio type: MediaRecorder's WebM/Opus, MP4, OGG,
  WAV) → `{"text": …}`, for the visitor to send or edit;
- `POST /api/speech`: `{"text": …}` → the text read aloud (audio/wav from espeak-ng, audio/mpeg from an endpoint).

Both take the widget session's token and count against its rate limits. Refusals say why: 403 voice off, 413 too
large, 422 too long (or text too long), 400 not audio, 503 no speech service, 502 the service failed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from core.errors import (
    AudioTooLarge,
    AudioTooLong,
    NotAudio,
    TextTooLong,
    VoiceError,
    VoiceNotConfigured,
    VoiceRejected,
)
from widget.deps import SessionDep, StateDep
from widget.routes import limit_session
from widget.sessions import Session

logger = logging.getLogger(__name__)
router = APIRouter()

TRANSCRIBE_PATH = "/api/transcribe"
# The longest text a request may carry: TTS_MAX_CHARS applies on top (422 with the limit).
_MAX_SPEECH_CHARS = 4096


class SpeechRequest(BaseModel):
    text: str = Field(max_length=_MAX_SPEECH_CHARS)


def _status(error: VoiceError) -> int:
    match error:
        case AudioTooLarge():
            return 413
        case AudioTooLong() | TextTooLong():
            return 422
        case NotAudio():
            return 400
        case VoiceNotConfigured():
            return 503
        case VoiceRejected():
            return 422
    return 502  # the speech service failed: not this server's fault, nor the visitor's


@contextmanager
def _refusals(action: str) -> Iterator[None]:
    """A voice error as the HTTP refusal that says why; a failing service also logged (a refusal is the caller's)."""
    try:
        yield
    except VoiceError as exc:
        if not isinstance(exc, VoiceRejected | VoiceNotConfigured):
            logger.warning("%s failed: %s", action, exc)
        raise HTTPException(_status(exc), str(exc)) from None


async def _voice_session(request: Request, session: Session, state: StateDep) -> None:
    bot = state.bots.get(session.bot)  # a session outlives its bot when the bots file is edited and reloaded
    if bot is None:
        raise HTTPException(403, f"assistant {session.bot!r} is no longer configured; request a new session")
    if not bot.voice:
        raise HTTPException(403, "voice is not enabled for this assistant")
    await limit_session(state, request, session)


@router.post(TRANSCRIBE_PATH)
async def transcribe(request: Request, session: SessionDep, state: StateDep) -> dict[str, str]:
    await _voice_session(request, session, state)
    audio = await request.body()  # at most VOICE_MAX_MB: the body limit for this path (widget.app)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    with _refusals("transcription"):
        text = await state.assistant.transcribe(audio, filename="recording", content_type=content_type)
    return {"text": text}


@router.post("/api/speech")
async def speech(body: SpeechRequest, request: Request, session: SessionDep, state: StateDep) -> Response:
    await _voice_session(request, session, state)
    with _refusals("text-to-speech"):
        spoken = await state.assistant.speak(body.text)
    return Response(spoken.audio, media_type=spoken.content_type, headers={"Cache-Control": "no-store"})
