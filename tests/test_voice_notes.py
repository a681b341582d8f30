"""Voice notes on Telegram and WhatsApp end to end: real espeak-ng speech encoded by ffmpeg as OGG/Opus (what
both apps record), downloaded by the real python-telegram-bot / the Graph API client from their loopback fakes,
transcribed and spoken by the fake OpenAI audio server, answered by the real core over the real Weaviate and
the scripted fake LLM. Also WhatsApp's template outside the 24-hour window."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bots import voicenotes
from bots.whatsapp.bot import TEXT_ONLY
from core.config import Settings
from core.voice import Voice
from tests.fakes import whatsapp_server as wa
from tests.fakes.openai_audio_server import FakeOpenAIAudio
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.whatsapp_server import FakeWhatsApp
from tests.servers import RunningServer, run_server
from tests.test_telegram import final, has_final, polling_bot
from tests.test_voice import espeak_wav, ffmpeg
from tests.test_whatsapp import OTHER_NUMBER, answered, deliver, wa_settings
from widget.webhooks import Webhooks

QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = ["The dashboard ", "listens on **port 8470** [1]."]
QUOTE = f"🎤 “{QUESTION}”"
MAX_SECONDS = 10.0
SPEAKER_CHAT = 303  # a Telegram chat mapped to the bot that replies with its voice too


def ogg_opus(text: str) -> bytes:
    return ffmpeg(espeak_wav(text), "-c:a", "libopus", "-b:a", "24k", "-f", "ogg")


@pytest.fixture(scope="module")
def note() -> bytes:
    return ogg_opus(QUESTION)  # about 3 seconds


@pytest.fixture(scope="module")
def long_note() -> bytes:
    return ogg_opus(" ".join([QUESTION] * 6))  # well over MAX_SECONDS


@pytest.fixture(scope="module")
def audio_api() -> Iterator[FakeOpenAIAudio]:
    fake = FakeOpenAIAudio(transcript=QUESTION).start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _reset_audio(audio_api: FakeOpenAIAudio) -> None:
    audio_api.fail, audio_api.uploads[:], audio_api.speeches[:] = False, [], []


@pytest.fixture(scope="module")
def fake_tg() -> Iterator[FakeTelegram]:
    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_wa() -> Iterator[FakeWhatsApp]:
    server = FakeWhatsApp().start()
    yield server
    server.stop()


def voice_settings(settings: Settings, fake_llm: FakeOpenAI, audio_api: FakeOpenAIAudio, tmp: Path) -> Any:
    """The web settings with speech through the fake audio API, and a `speaker` bot that also replies by voice."""
    from tests.conftest import web_settings

    base = web_settings(
        settings, fake_llm, "http://127.0.0.1:1", tmp,
        stt_base_url=audio_api.v1, stt_model="whisper-1", tts_base_url=audio_api.v1, tts_model="tts-1",
        voice_max_seconds=MAX_SECONDS, voice_max_mb=1.0,
    )  # fmt: skip
    assert base.bots_file is not None
    base.bots_file.write_text(
        base.bots_file.read_text() + '[bots.speaker]\nkb = "widget_kb"\npersona = "Kestrel Voice"\n'
        f'[bots.speaker.telegram]\nchats = ["{SPEAKER_CHAT}"]\nvoice_reply = true\n'
        f'[bots.speaker.whatsapp]\nphone_numbers = ["{OTHER_NUMBER}"]\nvoice_reply = true\n'
    )
    return base


@pytest.fixture(scope="module")
async def polling(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_tg: FakeTelegram,
    audio_api: FakeOpenAIAudio,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Settings]:
    core = voice_settings(settings, fake_llm, audio_api, tmp_path_factory.mktemp("tgvoice"))
    async with polling_bot(core, fake_tg):
        yield core


@pytest.fixture(scope="module")
def server(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    fake_wa: FakeWhatsApp,
    audio_api: FakeOpenAIAudio,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    core = voice_settings(settings, fake_llm, audio_api, tmp_path_factory.mktemp("wavoice"))
    with run_server(core, Webhooks(whatsapp=wa_settings(fake_wa, template="write_again"))) as running:
        yield running


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    """What the bot sent to a chat (sendMessage), in order."""
    return [str(c.params["text"]) for c in fake.of("sendMessage", chat_id=chat_id)]


async def until(predicate: Any, fake: FakeTelegram | FakeWhatsApp, timeout: float = 20.0) -> None:
    await asyncio.to_thread(fake.wait_for, predicate, timeout)


def test_answers_are_read_without_marks_and_cut_at_a_sentence() -> None:
    answer = "Set `DASHBOARD_PORT` [1], see [the guide](https://kestrel.example/ports).\n\n- _Restart_ it [2]. Done."
    assert voicenotes.spoken(answer, 1000) == "Set DASHBOARD PORT, see the guide. - Restart it. Done."
    assert voicenotes.spoken(answer, 45) == "Set DASHBOARD PORT, see the guide."
    assert voicenotes.spoken("one two three four", 10) == "one two", "no sentence end: cut between words"


# --- Telegram ---------------------------------------------------------------------------------------------------


async def test_telegram_voice_note_is_downloaded_transcribed_quoted_and_answered(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI, audio_api: FakeOpenAIAudio, note: bytes
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    fake_tg.push(fake_tg.voice(note, duration=3, chat_id=111))
    await until(lambda: has_final(fake_tg, 111), fake_tg)
    assert fake_tg.of("getFile"), "downloaded through the Bot API"
    (upload,) = audio_api.uploads
    assert upload.audio == note and upload.filename.endswith(".ogg"), "OGG/Opus sent as recorded, not re-encoded"
    assert texts(fake_tg, 111)[0] == QUOTE, "the transcript quoted first, so the user sees what was understood"
    assert QUESTION in fake_llm.chat_requests()[-1]["messages"][-1]["content"]
    last = final(fake_tg, 111).params
    assert "port 8470" in last["text"] and "<b>Sources:</b>" in last["text"]
    assert fake_tg.of("sendVoice", chat_id=111) == [], "no voice reply unless the bot enables it"


async def test_telegram_voice_reply_when_the_bot_enables_it(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI, audio_api: FakeOpenAIAudio, note: bytes
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    fake_tg.push(fake_tg.voice(note, duration=3, chat_id=SPEAKER_CHAT))
    await until(lambda: fake_tg.of("sendVoice", chat_id=SPEAKER_CHAT), fake_tg)
    assert has_final(fake_tg, SPEAKER_CHAT), "the text answer first, then its voice"
    assert fake_tg.voices[-1].startswith(b"OggS"), "the fake refuses anything but OGG/Opus"
    assert audio_api.speeches[-1]["input"] == "The dashboard listens on port 8470.", "read without marks"
    assert fake_tg.of("sendVoice", chat_id=SPEAKER_CHAT)[-1].params["reply_parameters"]["message_id"] > 0


async def test_telegram_voice_notes_in_groups_only_as_replies_to_the_bot(
    polling: Settings, fake_tg: FakeTelegram, fake_llm: FakeOpenAI, note: bytes
) -> None:
    fake_llm.enqueue(Reply(chunks=ANSWER))
    fake_tg.push(fake_tg.voice(note, duration=3, chat_id=-611, chat_type="supergroup"))
    fake_tg.push(fake_tg.voice(note, duration=3, chat_id=-612, chat_type="supergroup", reply_to_bot=True))
    await until(lambda: has_final(fake_tg, -612), fake_tg)
    assert texts(fake_tg, -611) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("declared too long", voicenotes.too_long(MAX_SECONDS)),
        ("declared too big", voicenotes.too_big(1.0)),
        ("too long", voicenotes.too_long(MAX_SECONDS)),
        ("not audio", voicenotes.NOT_AUDIO),
        ("service fails", voicenotes.FAILED),
        ("transcriber crashes", voicenotes.FAILED),
        ("not configured", voicenotes.NOT_CONFIGURED),
    ],
)
async def test_telegram_voice_notes_that_cannot_be_heard_get_a_polite_reply(
    polling: Settings,
    fake_tg: FakeTelegram,
    audio_api: FakeOpenAIAudio,
    note: bytes,
    long_note: bytes,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
    expected: str,
) -> None:
    chat = 700 + len(fake_tg.calls)  # a fresh chat per case
    audio, where = note, dict[str, Any](duration=3)
    if case == "declared too long":
        where = {"duration": 600}
    elif case == "declared too big":
        where = {"duration": 3, "size": 5 * 1024 * 1024}
    elif case == "too long":
        audio = long_note  # the update says 3 s, the recording is longer: measured while decoding
    elif case == "not audio":
        audio = b"%PDF-1.7 certainly not a recording"
    elif case == "service fails":
        audio_api.fail = True
    elif case == "transcriber crashes":  # not a VoiceError: a bug, or a library's own exception type

        async def crash(*args: Any, **kwargs: Any) -> str:
            raise RuntimeError("ctranslate2: unsupported model")

        monkeypatch.setattr(Voice, "transcribe", crash)
    elif case == "not configured":
        info = Voice.info.fget  # type: ignore[attr-defined]
        monkeypatch.setattr(Voice, "info", property(lambda self: dataclasses.replace(info(self), stt=None)))
    gets = len(fake_tg.of("getFile"))
    with caplog.at_level(logging.INFO):
        fake_tg.push(fake_tg.voice(audio, chat_id=chat, **where))
        await until(lambda: texts(fake_tg, chat), fake_tg)
    assert texts(fake_tg, chat) == [expected]
    declared = case.startswith("declared") or case == "not configured"
    assert (len(fake_tg.of("getFile")) == gets) == declared, "refused before download when the update says so"
    assert not any(r.exc_info and r.levelno >= logging.ERROR for r in caplog.records), "no traceback"


# --- WhatsApp ---------------------------------------------------------------------------------------------------


async def test_whatsapp_voice_note_is_downloaded_transcribed_quoted_and_answered_once(
    server: RunningServer,
    fake_wa: FakeWhatsApp,
    fake_llm: FakeOpenAI,
    audio_api: FakeOpenAIAudio,
    note: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = "15550002001"
    # Answered from the request, not a queue: a late request of an earlier module's test must not take this reply.
    monkeypatch.setattr(fake_llm, "responder", lambda body: Reply(chunks=ANSWER))
    media_id = fake_wa.add_media(note)
    voice = wa.delivery(wa.audio(user, media_id))
    assert (await deliver(server, voice)).status_code == 200
    assert (await deliver(server, voice)).status_code == 200  # Meta's redelivery
    await until(lambda: answered(fake_wa, user), fake_wa)
    await asyncio.sleep(0.5)
    assert [r.path for r in fake_wa.requests if r.method == "GET"][-2:] == [
        f"/{wa.VERSION}/{media_id}",
        f"/download/{media_id}",
    ], "the media URL first, then the download with the bearer token"
    (upload,) = audio_api.uploads
    assert upload.audio == note
    sent = fake_wa.to(user)
    assert sent[0].text == QUOTE
    assert len(answered(fake_wa, user)) == 1, "a redelivery is answered once"
    assert "*port 8470* [1]" in answered(fake_wa, user)[0].text
    assert sent[0].payload["context"] == {"message_id": voice["entry"][0]["changes"][0]["value"]["messages"][0]["id"]}
    assert not [c for c in sent if c.kind == "audio"]


async def test_whatsapp_voice_reply_is_uploaded_and_sent_as_audio(
    server: RunningServer, fake_wa: FakeWhatsApp, fake_llm: FakeOpenAI, audio_api: FakeOpenAIAudio, note: bytes
) -> None:
    user = "15550002002"
    fake_llm.enqueue(Reply(chunks=ANSWER))
    await deliver(server, wa.delivery(wa.audio(user, fake_wa.add_media(note)), phone_number_id=OTHER_NUMBER))
    await until(lambda: any(c.kind == "audio" for c in fake_wa.to(user)), fake_wa)
    audio = [c for c in fake_wa.to(user) if c.kind == "audio"][-1]
    assert audio.phone_number_id == OTHER_NUMBER and audio.payload["audio"]["id"] in fake_wa.media
    assert fake_wa.uploads[-1].startswith(b"OggS"), "uploaded as OGG/Opus, which WhatsApp plays as a voice note"
    assert audio_api.speeches[-1]["input"] == "The dashboard listens on port 8470."


async def test_whatsapp_voice_notes_that_cannot_be_heard_get_a_polite_reply(
    server: RunningServer, fake_wa: FakeWhatsApp, audio_api: FakeOpenAIAudio, note: bytes
) -> None:
    big = fake_wa.add_media(note + b"\0" * (1024 * 1024))  # over VOICE_MAX_MB, known from GET /{media-id}
    cases = [("15550002010", big, voicenotes.too_big(1.0)), ("15550002011", "999999", voicenotes.FAILED)]
    for user, media_id, _ in cases:
        await deliver(server, wa.delivery(wa.audio(user, media_id)))
    for user, _, expected in cases:
        await until(lambda u=user: fake_wa.to(u), fake_wa)  # type: ignore[misc]
        assert [c.text for c in fake_wa.to(user)] == [expected]
    assert f"/download/{big}" not in fake_wa.paths(), "refused before the download"
    audio_api.fail = True
    user = "15550002012"
    await deliver(server, wa.delivery(wa.audio(user, fake_wa.add_media(note))))
    await until(lambda: fake_wa.to(user), fake_wa)
    assert [c.text for c in fake_wa.to(user)] == [voicenotes.FAILED]


async def test_whatsapp_template_outside_the_24_hour_window(
    server: RunningServer, fake_wa: FakeWhatsApp, note: bytes
) -> None:
    user, voice_user = "15550002020", "15550002021"
    fake_wa.outside_window |= {user, voice_user}
    stale = wa.text(user, QUESTION, age=25 * 3600)
    stale_voice = wa.audio(voice_user, fake_wa.add_media(note), age=30 * 3600)
    await deliver(server, wa.delivery(stale, stale_voice))
    await until(lambda: fake_wa.to(user) and fake_wa.to(voice_user), fake_wa)
    await asyncio.sleep(0.5)
    for who in (user, voice_user):
        (sent,) = fake_wa.to(who)
        assert sent.kind == "template", "the fake refuses anything else outside the window"
        assert sent.payload["template"] == {"name": "write_again", "language": {"code": "en_US"}}
    assert fake_wa.of(stale["id"]) == [], "not marked read: nothing is being answered"


async def test_whatsapp_stale_messages_get_one_template_per_sender_and_stale_taps_none(
    server: RunningServer, fake_wa: FakeWhatsApp
) -> None:
    """Templates are billed: a backlog of stale messages from one user (a redelivery after an outage) gets one,
    and a stale 👍/👎 tap gets nothing."""
    user, tapper = "15550002030", "15550002031"
    fake_wa.outside_window |= {user, tapper}
    backlog = [wa.text(user, f"{QUESTION} ({i})", age=(26 + i) * 3600) for i in range(3)]
    tap = wa.button_reply(tapper, "fb:up:whatever")
    tap["timestamp"] = str(int(time.time() - 30 * 3600))
    await deliver(server, wa.delivery(*backlog[:2], tap))
    await deliver(server, wa.delivery(backlog[2]))
    await until(lambda: fake_wa.to(user), fake_wa)
    await asyncio.sleep(1.0)
    assert [c.kind for c in fake_wa.to(user)] == ["template"]
    assert fake_wa.to(tapper) == []


async def test_whatsapp_media_is_fetched_with_the_token_only_from_the_api_host(
    server: RunningServer, fake_wa: FakeWhatsApp, audio_api: FakeOpenAIAudio, note: bytes
) -> None:
    """The bearer token goes only to the API's host (or Meta's *.fbsbx.com CDN): a lookup naming another host,
    or a webhook media id that is a URL rather than a number, sends nothing there and gets a polite reply."""
    elsewhere = FakeWhatsApp().start()
    try:
        redirected, absolute = "15550002040", "15550002041"
        media_id = fake_wa.add_media(note)
        fake_wa.media_urls[media_id] = f"{elsewhere.base_url}/download/{media_id}"
        await deliver(server, wa.delivery(wa.audio(redirected, media_id)))
        await deliver(server, wa.delivery(wa.audio(absolute, f"{elsewhere.base_url}/{wa.VERSION}/{media_id}")))
        await until(lambda: fake_wa.to(redirected) and fake_wa.to(absolute), fake_wa)
        await asyncio.sleep(0.5)
        assert [c.text for c in fake_wa.to(redirected)] == [voicenotes.FAILED]
        assert [c.text for c in fake_wa.to(absolute)] == [TEXT_ONLY]
        assert elsewhere.requests == [], "the token was never sent to another host"
        assert audio_api.uploads == []
    finally:
        elsewhere.stop()


async def test_whatsapp_download_without_a_declared_size_stops_past_the_limit(
    server: RunningServer, fake_wa: FakeWhatsApp, audio_api: FakeOpenAIAudio
) -> None:
    user = "15550002042"
    fake_wa.streamed = 0
    media_id = fake_wa.add_unsized_media(48 * 1024 * 1024)  # the lookup says no file_size; VOICE_MAX_MB is 1
    await deliver(server, wa.delivery(wa.audio(user, media_id)))
    await until(lambda: fake_wa.to(user), fake_wa)
    assert [c.text for c in fake_wa.to(user)] == [voicenotes.too_big(1.0)]
    await asyncio.sleep(0.5)
    assert fake_wa.streamed < 8 * 1024 * 1024, f"read {fake_wa.streamed} bytes of a 48 MB download"
    assert audio_api.uploads == []
