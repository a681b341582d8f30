"""The widget's voice endpoints against the real server: POST /api/transcribe through the fake OpenAI-compatible
audio server, POST /api/speech with espeak-ng, and every refusal (voice off, no token, too large, too long, not
audio, rate limited, the service failing, no speech-to-text at all) → 4xx/5xx with a reason, never 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.voice import whisper
from tests.conftest import web_settings
from tests.fakes.openai_audio_server import FakeOpenAIAudio
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import RunningServer, run_server
from tests.support.voice import MAX_SECONDS, TTS_MAX_CHARS, recording, voice_bots, voice_server
from tests.test_voice import audio_api  # noqa: F401  (the fake speech-to-text server)
from widget.sessions import SessionTokens


@pytest.fixture(scope="module")
def voice_web(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("voice-web")
    # A low session limit, so that the rate-limit test reaches it quickly.
    with voice_server(settings, fake_llm, host_site[0], tmp, audio_api, rate_limit_session="6/minute") as running:
        yield running


@pytest.fixture(autouse=True)
def _healthy(audio_api: FakeOpenAIAudio) -> None:  # noqa: F811
    audio_api.fail, audio_api.uploads[:] = False, []


def token(web: RunningServer, origin: str, bot: str = "docs") -> tuple[str, dict[str, object]]:
    response = httpx.post(f"{web.url}/api/session", json={"bot": bot}, headers={"Origin": origin}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["token"], response.json()["bot"]


def post(web: RunningServer, path: str, origin: str, bearer: str | None, **kwargs: object) -> httpx.Response:
    headers = {"Origin": origin, **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
    headers.update(kwargs.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.post(f"{web.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_the_session_says_which_bots_have_voice(voice_web: RunningServer, host_site: tuple[str, Path]) -> None:
    _, docs = token(voice_web, host_site[0])
    _, quiet = token(voice_web, host_site[0], bot="quiet")
    assert (docs["voice"], docs["speech"]) == (True, True)
    assert (quiet["voice"], quiet["speech"]) == (False, False)


def test_transcribes_a_browser_recording(
    voice_web: RunningServer,
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
) -> None:
    bearer, _ = token(voice_web, host_site[0])
    audio = recording(3)
    response = post(voice_web, "/api/transcribe", host_site[0], bearer, content=audio,
                    headers={"Content-Type": "audio/webm;codecs=opus"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {"text": audio_api.transcript}
    (upload,) = audio_api.uploads
    assert (upload.filename, upload.content_type, upload.audio) == ("recording.webm", "audio/webm", audio)


def test_speaks_an_answer(voice_web: RunningServer, host_site: tuple[str, Path]) -> None:
    bearer, _ = token(voice_web, host_site[0])
    response = post(voice_web, "/api/speech", host_site[0], bearer, json={"text": "The dashboard listens on 8470."})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav" and response.content[8:12] == b"WAVE"


@pytest.mark.parametrize(
    ("bot", "bearer", "status", "reason"),
    [("quiet", True, 403, "voice is not enabled"), ("docs", False, 401, "missing session token")],
)
def test_voice_needs_a_session_of_a_bot_with_voice(
    voice_web: RunningServer, host_site: tuple[str, Path], bot: str, bearer: bool, status: int, reason: str
) -> None:
    held, _ = token(voice_web, host_site[0], bot=bot)
    for path, body in (("/api/transcribe", {"content": recording(2)}), ("/api/speech", {"json": {"text": "hi"}})):
        response = post(voice_web, path, host_site[0], held if bearer else None, **body)
        assert response.status_code == status and reason in response.json()["detail"], response.text


def test_a_session_of_a_bot_no_longer_configured_is_a_403(
    voice_web: RunningServer, host_site: tuple[str, Path]
) -> None:
    secret = voice_web.settings.secret_key
    assert secret is not None
    retired, _ = SessionTokens(secret.get_secret_value(), 3600, 60).mint(
        bot="retired", origin=host_site[0], user_id=None, previous=None
    )  # as a token minted before the bot was removed from the bots file
    for path, body in (("/api/transcribe", {"content": recording(2)}), ("/api/speech", {"json": {"text": "hi"}})):
        response = post(voice_web, path, host_site[0], retired, **body)
        assert response.status_code == 403 and "no longer configured" in response.json()["detail"], response.text


@pytest.mark.parametrize(
    ("audio", "status", "reason"),
    [
        (lambda: bytes(2 * 1024 * 1024), 413, "too large"),  # over VOICE_MAX_MB (1 MB)
        (lambda: recording(MAX_SECONDS + 4), 422, f"{MAX_SECONDS} s"),
        (lambda: recording(MAX_SECONDS + 4, "pcm_s16le", "wav"), 422, f"the limit is {MAX_SECONDS} s"),
        (lambda: b"%PDF-1.7 definitely not a recording", 400, "not audio"),
        (lambda: b"", 400, "not audio"),
    ],
)
def test_unusable_recordings_are_refused_with_a_reason(
    voice_web: RunningServer,
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
    audio,
    status,
    reason,
) -> None:
    bearer, _ = token(voice_web, host_site[0])
    response = post(voice_web, "/api/transcribe", host_site[0], bearer, content=audio())
    assert response.status_code == status and reason in response.json()["detail"], response.text
    assert audio_api.uploads == []


@pytest.mark.parametrize(
    ("text", "reason"), [("x" * (TTS_MAX_CHARS + 1), f"at most {TTS_MAX_CHARS}"), ("  ", "no text")]
)
def test_unusable_text_is_refused(voice_web: RunningServer, host_site: tuple[str, Path], text: str, reason: str):
    bearer, _ = token(voice_web, host_site[0])
    response = post(voice_web, "/api/speech", host_site[0], bearer, json={"text": text})
    assert response.status_code == 422 and reason in response.json()["detail"], response.text


def test_a_failing_speech_service_is_a_502(
    voice_web: RunningServer,
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
) -> None:
    bearer, _ = token(voice_web, host_site[0])
    audio_api.fail = True
    response = post(voice_web, "/api/transcribe", host_site[0], bearer, content=recording(2))
    assert response.status_code == 502 and "speech-to-text service failed" in response.json()["detail"]


def test_transcription_is_rate_limited(voice_web: RunningServer, host_site: tuple[str, Path]) -> None:
    bearer, _ = token(voice_web, host_site[0])
    statuses = [post(voice_web, "/api/transcribe", host_site[0], bearer, content=b"x").status_code for _ in range(7)]
    assert statuses == [400] * 6 + [429]  # RATE_LIMIT_SESSION=6/minute, shared with the session's chat


def test_without_speech_to_text_the_mic_is_off_and_transcribe_says_why(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(whisper, "available", lambda: False)  # neither STT_BASE_URL nor the `voice` extra
    configured = web_settings(settings, fake_llm, host_site[0], tmp_path, bots_file=voice_bots(tmp_path, host_site[0]))
    with run_server(configured) as web:
        bearer, public = token(web, host_site[0])
        assert (public["voice"], public["speech"]) == (False, True)  # espeak-ng still reads aloud
        response = post(web, "/api/transcribe", host_site[0], bearer, content=recording(2))
    assert response.status_code == 503
    assert response.json()["detail"].startswith("speech-to-text is not configured (set STT_BASE_URL")
