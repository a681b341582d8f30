"""The widget's microphone and "read aloud" in a real browser: Chromium's fake microphone plays a WAV that
espeak-ng spoke, MediaRecorder records it, the real server sends it to the fake speech-to-text server, and the
transcript lands in the input; the answer is read aloud (espeak-ng) and stopped. All by keyboard."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.fakes.openai_audio_server import FakeOpenAIAudio
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer
from tests.support.voice import spoken_wav
from tests.test_voice import audio_api  # noqa: F401  (the fake speech-to-text server)
from tests.test_voice_api import voice_web  # noqa: F401  (the server with a voice bot and a bot without)
from tests.test_widget_browser import CHROMIUM_FLAGS, OUTPUT, host_page, last_answer

# The sample docs answer this (the fake speech-to-text hears it, whatever the microphone said).
QUESTION = "Which port does the Kestrel dashboard listen on?"
ANSWER = (
    "The Kestrel dashboard listens on port **8470** by default [1]. You can change it in the configuration file, "
    "under the dashboard section, and restart the service for the new port to take effect, thirty seconds later."
)


@pytest.fixture(autouse=True)
def _hears_the_question(audio_api: FakeOpenAIAudio) -> None:  # noqa: F811
    audio_api.transcript, audio_api.uploads[:] = QUESTION, []


@pytest.fixture(scope="module")
async def mic_browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    """Chromium whose microphone is a WAV file (allowed without a prompt), playing audio without a gesture."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `bash scripts/setup.sh --dev`", pytrace=False)
    question = tmp_path_factory.mktemp("mic") / "question.wav"
    question.write_bytes(spoken_wav("How do I reset my password for the admin console?"))
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={question}",
        "--autoplay-policy=no-user-gesture-required",
    ]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS + flags)
        yield launched
        await launched.close()


@pytest.fixture
async def page(mic_browser: Browser) -> AsyncIterator[Page]:
    context = await mic_browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


def seconds_of(audio: bytes) -> float:
    """The decoded length (MediaRecorder's WebM declares none)."""
    command = ["ffmpeg", "-v", "error", "-i", "-", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"]
    return len(subprocess.run(command, input=audio, capture_output=True, check=True, timeout=30).stdout) / 32000


async def test_speak_a_question_then_hear_the_answer(
    page: Page,
    voice_web: RunningServer,  # noqa: F811
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
    fake_llm: FakeOpenAI,
) -> None:
    await page.goto(host_page(host_site, voice_web, "voice.html"))
    await page.get_by_test_id("sb-launcher").click()
    mic, status, field = (
        page.get_by_test_id("sb-mic"),
        page.get_by_test_id("sb-voice-status"),
        page.get_by_test_id("sb-input"),
    )
    await expect(mic).to_be_visible()  # shown once the session said this bot has voice
    await expect(mic).to_have_attribute("aria-label", "Speak your question")

    await mic.focus()
    await page.keyboard.press("Enter")  # keyboard operable: a real button
    await expect(mic).to_have_attribute("aria-pressed", "true")
    await expect(mic).to_have_attribute("aria-label", "Stop recording")
    await expect(status).to_contain_text("Recording")
    await page.wait_for_timeout(2500)
    OUTPUT.mkdir(exist_ok=True)
    await page.screenshot(path=str(OUTPUT / "widget-recording.png"))
    await page.keyboard.press("Space")
    await expect(field).to_have_value(audio_api.transcript, timeout=15_000)
    await expect(field).to_be_focused()  # ready to edit or send
    await expect(mic).to_have_attribute("aria-pressed", "false")
    await expect(status).to_contain_text("edit it or press Enter to send")
    (upload,) = audio_api.uploads
    assert upload.content_type == "audio/webm" and upload.filename == "recording.webm"
    assert 1.5 < seconds_of(upload.audio) < 10  # the fake microphone's speech, as MediaRecorder recorded it

    fake_llm.enqueue(Reply(chunks=[ANSWER]))
    await field.press("Enter")  # the visitor sends it; nothing was sent for them
    await expect(last_answer(page)).to_contain_text("thirty seconds", timeout=15_000)
    read = last_answer(page).get_by_test_id("sb-read-aloud")
    async with page.expect_response("**/api/speech") as spoken:
        await read.click()
    response = await spoken.value
    assert response.status == 200 and response.headers["content-type"] == "audio/wav"
    assert "[1]" not in (response.request.post_data_json or {})["text"]  # citation markers are not read out
    await expect(read).to_have_attribute("aria-pressed", "true")
    await expect(read).to_have_attribute("aria-label", "Stop reading aloud")
    await read.press("Enter")  # the stop control
    await expect(read).to_have_attribute("aria-pressed", "false")


async def test_escape_discards_a_recording(
    page: Page,
    voice_web: RunningServer,  # noqa: F811
    host_site: tuple[str, Path],
    audio_api: FakeOpenAIAudio,  # noqa: F811
) -> None:
    await page.goto(host_page(host_site, voice_web, "voice-cancel.html"))
    await page.get_by_test_id("sb-launcher").click()
    mic = page.get_by_test_id("sb-mic")
    await mic.click()
    await expect(mic).to_have_attribute("aria-pressed", "true")
    await mic.press("Escape")
    await expect(mic).to_have_attribute("aria-pressed", "false")
    await expect(page.get_by_test_id("sb-panel")).to_be_visible()  # Escape cancelled the recording, not the panel
    await page.wait_for_timeout(500)
    assert audio_api.uploads == [] and await page.get_by_test_id("sb-input").input_value() == ""


async def test_a_bot_without_voice_shows_no_microphone(
    page: Page,
    voice_web: RunningServer,  # noqa: F811
    host_site: tuple[str, Path],
    fake_llm: FakeOpenAI,
) -> None:
    await page.goto(host_page(host_site, voice_web, "quiet.html", bot="quiet"))
    await page.get_by_test_id("sb-launcher").click()
    await expect(page.get_by_test_id("sb-input")).to_be_visible()
    await page.wait_for_timeout(300)  # the session's reply has arrived (the welcome is shown by then)
    await expect(page.get_by_test_id("sb-mic")).to_be_hidden()
    fake_llm.enqueue(Reply(chunks=["It listens on port 8470 [1]."]))
    await page.get_by_test_id("sb-input").fill(QUESTION)
    await page.get_by_test_id("sb-input").press("Enter")
    await expect(last_answer(page)).to_contain_text("8470", timeout=15_000)
    await expect(last_answer(page).get_by_test_id("sb-read-aloud")).to_have_count(0)
