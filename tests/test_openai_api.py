"""The OpenAI-compatible API with real clients (openai SDK, LangChain, LiteLLM) against the real server,
real Weaviate and the scripted fake LLM. Responses are validated strictly with the SDK's own models."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from core.apikeys import ApiKeys
from core.config import Settings
from tests.conftest import cli_environment, web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.test_cli import run

QUESTION = "Which port does the Kestrel dashboard listen on?"


def new_key(web: RunningServer, *bots: str) -> str:
    return ApiKeys(web.settings.data_dir / "api-keys.sqlite3").create(name="test", bots=bots)[0]


def client(web: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{web.url}/v1", api_key=key, max_retries=0)


def test_models_are_the_bots_a_key_may_use(web: RunningServer) -> None:
    assert [m.id for m in client(web, new_key(web)).models.list()] == ["closed", "default", "docs"]
    assert [m.id for m in client(web, new_key(web, "docs")).models.list()] == ["docs"]


def test_non_streaming_completion_validates_and_carries_sources(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["The dashboard listens on ", "port 8470 [1]."]))
    raw = client(web, new_key(web)).chat.completions.with_raw_response.create(
        model="docs",
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0.1,
        max_tokens=77,
        stop=["\n\n"],
        user="end-user-7",
    )
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/json"
    body = raw.http_response.json()
    completion = ChatCompletion.model_validate(body, strict=True)
    assert completion.choices[0].message.content == "The dashboard listens on port 8470 [1]."
    assert completion.choices[0].finish_reason == "stop" and completion.model == "docs"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    extra = body["switchboard"]
    assert extra["cited"] and [s["n"] for s in extra["sources"]] == [1]
    assert set(extra["sources"][0]) == {"n", "title", "source", "section", "snippet"}
    sent = fake_llm.chat_requests()[-1]  # temperature, max_tokens and stop reach the model
    assert (sent["temperature"], sent["max_tokens"], sent["stop"]) == (0.1, 77, ["\n\n"])


def test_streaming_chunks_validate_with_usage_and_sources(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["Port ", "8470 ", "[1]."]))
    with httpx.stream(
        "POST",
        f"{web.url}/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {new_key(web)}"},
        json={
            "model": "docs",
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"

    payloads = [json.loads(line[6:]) for line in lines[:-1]]
    chunks = [ChatCompletionChunk.model_validate(p, strict=True) for p in payloads]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Port 8470 [1]."
    assert chunks[0].choices[0].delta.role == "assistant"
    final = next(p for p in payloads if p["choices"] and p["choices"][0]["finish_reason"] == "stop")
    assert [s["n"] for s in final["switchboard"]["sources"]] == [1]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


async def test_async_client_streams(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["Async ", "port 8470 [1]."]))
    async_client = openai.AsyncOpenAI(base_url=f"{web.url}/v1", api_key=new_key(web), max_retries=0)
    stream = await async_client.chat.completions.create(
        model="docs", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    assert "".join(pieces) == "Async port 8470 [1]."
    await async_client.close()


def test_stateless_history_and_stateful_conversations(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    api = client(web, new_key(web))
    fake_llm.enqueue(Reply(chunks=["How do I change the Kestrel dashboard port?"]), Reply(chunks=["Set it [1]."]))
    api.chat.completions.create(
        model="docs",
        messages=[
            {"role": "system", "content": "ignored: the bot's prompt governs"},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "Port 8470 [1]."},
            {"role": "user", "content": "and how do I change it?"},
        ],
    )
    condense = fake_llm.chat_requests()[-2]
    assert QUESTION in condense["messages"][-1]["content"] and condense["max_tokens"] == 64

    headers = {"X-Switchboard-Conversation": "ticket-42"}
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    api.chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}], extra_headers=headers)
    fake_llm.enqueue(Reply(chunks=["How do I change the Kestrel dashboard port?"]), Reply(chunks=["Ok [1]."]))
    api.chat.completions.create(
        model="docs", messages=[{"role": "user", "content": "and how do I change it?"}], extra_headers=headers
    )
    condense = fake_llm.chat_requests()[-2]
    assert QUESTION in condense["messages"][-1]["content"]  # the server remembered the first turn


@pytest.mark.parametrize(
    ("kwargs", "error", "status", "code"),
    [
        ({"model": "nobody"}, openai.NotFoundError, 404, "model_not_found"),
        ({"n": 2}, openai.BadRequestError, 400, "unsupported_parameter"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            openai.BadRequestError,
            400,
            "unsupported_parameter",
        ),
        ({"logprobs": True}, openai.BadRequestError, 400, "unsupported_parameter"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
                ]
            },
            openai.BadRequestError,
            400,
            "unsupported_content",
        ),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, openai.BadRequestError, 400, None),
        ({"temperature": 5}, openai.BadRequestError, 400, None),
        ({"messages": [{"role": "user", "content": "x" * 2001}]}, openai.BadRequestError, 400, "message_too_long"),
    ],
    ids=["unknown-model", "n", "tools", "logprobs", "image", "no-user-message", "temperature", "too-long"],
)
def test_refusals_use_openais_error_shape(
    web: RunningServer, kwargs: dict[str, object], error: type[openai.APIStatusError], status: int, code: str | None
) -> None:
    request = {"model": "docs", "messages": [{"role": "user", "content": QUESTION}], **kwargs}
    with pytest.raises(error) as caught:
        client(web, new_key(web)).chat.completions.create(**request)  # type: ignore[call-overload]
    assert caught.value.status_code == status
    body = caught.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    assert body["error"]["code"] == code


def test_keys_auth_scope_raw_errors_and_revocation(web: RunningServer, fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    for key in (None, "sb-nope-0000", "not-even-a-key"):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.post(f"{web.url}/v1/chat/completions", headers=headers, json={"model": "docs"})
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    scoped = client(web, new_key(web, "docs"))
    with pytest.raises(openai.NotFoundError):
        scoped.chat.completions.create(model="closed", messages=[{"role": "user", "content": QUESTION}])
    headers = {"Authorization": f"Bearer {new_key(web)}", "Content-Type": "application/json"}
    bad_json = httpx.post(f"{web.url}/v1/chat/completions", headers=headers, content=b"{nope")
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_request_error"
    huge = httpx.post(f"{web.url}/v1/chat/completions", headers=headers, content=b"{" + b" " * 20000 + b"}")
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"

    env = cli_environment(web.settings, SWITCHBOARD_BOTS_FILE=str(web.settings.bots_file))
    created = run(env, "keys", "create", "--bot", "docs", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    plain = created.stdout.strip()
    key_id = plain.split("-")[1]
    fake_llm.enqueue(Reply(chunks=["8470 [1]."]))
    assert client(web, plain).chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}])
    listed = run(env, "keys", "list", cwd=tmp_path).stdout
    assert key_id in listed and plain not in listed
    assert run(env, "keys", "revoke", key_id, cwd=tmp_path).returncode == 0
    with pytest.raises(openai.AuthenticationError):  # at once
        client(web, plain).models.list()
    bad_bot = run(env, "keys", "create", "--bot", "nobody", cwd=tmp_path)
    assert bad_bot.returncode == 1 and "unknown bot 'nobody'" in bad_bot.stderr


def test_per_key_rate_limit(
    settings: Settings, widget_kb: str, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    tight = web_settings(settings, fake_llm, host_site[0], tmp_path, rate_limit_api_key="2/minute")
    with run_server(tight) as web:
        api = client(web, new_key(web))
        api.models.list()
        api.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            api.models.list()
        assert int(caught.value.response.headers["Retry-After"]) >= 1
        assert caught.value.response.json()["error"]["code"] == "rate_limit_exceeded"


def test_langchain_and_litellm_clients(
    web: RunningServer, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_openai import ChatOpenAI

    key = new_key(web)
    fake_llm.enqueue(Reply(chunks=["LangChain ", "8470 [1]."]), Reply(chunks=["Streamed ", "8470 [1]."]))
    chat = ChatOpenAI(base_url=f"{web.url}/v1", api_key=key, model="docs", max_retries=0)
    assert chat.invoke(QUESTION).content == "LangChain 8470 [1]."
    assert "".join(str(c.content) for c in chat.stream(QUESTION)) == "Streamed 8470 [1]."

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download
    import litellm

    fake_llm.enqueue(Reply(chunks=["LiteLLM ", "8470 [1]."]))
    reply = litellm.completion(
        model="openai/docs", api_base=f"{web.url}/v1", api_key=key, messages=[{"role": "user", "content": QUESTION}]
    )
    assert reply.choices[0].message.content == "LiteLLM 8470 [1]."
