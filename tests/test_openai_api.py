"""The OpenAI-compatible API with real clients (openai SDK, LangChain, LiteLLM) against the real server,
real Weaviate and the scripted fake LLM. Responses are validated strictly with the SDK's own models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from core.config import Settings
from tests.conftest import web_settings
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.servers import RunningServer, run_server
from tests.support.cli import cli_environment
from tests.test_cli import run
from widget.apikeys import ApiKeys

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
        ({"response_format": {"type": "json_object"}}, openai.BadRequestError, 400, "unsupported_parameter"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}},
            openai.BadRequestError,
            400,
            "unsupported_parameter",
        ),
    ],
    ids=["unknown-model", "n", "tools", "logprobs", "image", "no-user-message", "temperature", "json", "schema"],
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
    over = web.settings.api_max_body_bytes  # API_MAX_BODY_BYTES, not the widget's MAX_BODY_BYTES
    huge = httpx.post(f"{web.url}/v1/chat/completions", headers=headers, content=b"{" + b" " * over + b"}")
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


def test_lone_surrogates_are_refused_in_openais_shape(web: RunningServer) -> None:
    """JSON may escape a lone surrogate; no UTF-8 encoder downstream accepts it, so it is a 400, not a 500."""
    headers = {"Authorization": f"Bearer {new_key(web)}", "Content-Type": "application/json"}
    question = [{"role": "user", "content": QUESTION}]
    for fields in (
        {"messages": [{"role": "user", "content": "Which port \ud800?"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Which port \udfff?"}]}]},
        {"messages": question, "user": "\ud800"},
        {"messages": question, "stop": ["\ud800"]},
    ):
        for stream in (False, True):
            raw = json.dumps({"model": "docs", "stream": stream, **fields}).encode()  # ASCII: "\\ud800" escapes
            response = httpx.post(f"{web.url}/v1/chat/completions", headers=headers, content=raw, timeout=30)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and "unicode" in error["message"].lower()


def test_long_conversations_and_prompts_fit(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    """Chat UIs resend the whole conversation and send long system and title prompts: 30 turns of ~1 KB with a
    3,000-character system prompt, and a 3,000-character title prompt as the user message (only its end is
    searched; the model reads all of it)."""
    api = client(web, new_key(web))
    system = ("You are a meticulous assistant for the Kestrel team. " * 60)[:3000]
    history: list[dict[str, str]] = []
    for i in range(30):
        history.append({"role": "user", "content": f"Question {i} about Kestrel: " + "dashboard settings " * 50})
        history.append({"role": "assistant", "content": f"Answer {i} [1]. " + "The dashboard port is set. " * 35})
    messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": QUESTION}]
    assert len(json.dumps(messages)) > 60_000  # well over the widget's MAX_BODY_BYTES
    fake_llm.enqueue(Reply(chunks=[QUESTION]), Reply(chunks=["Port 8470 [1]."]))
    answered = api.chat.completions.create(model="docs", messages=messages)  # type: ignore[arg-type]
    assert answered.choices[0].message.content == "Port 8470 [1]."

    instructions = ("### Task: Generate a concise, 3-5 word title with an emoji for the chat below. " * 40)[:2900]
    title_prompt = f"{instructions}\n<chat_history>\nUSER: {QUESTION}\nASSISTANT: Port 8470 [1].\n</chat_history>"
    assert len(title_prompt) > 3000 > web.settings.max_message_chars
    fake_llm.enqueue(Reply(chunks=["Kestrel dashboard port"]))
    titled = api.chat.completions.create(model="docs", messages=[{"role": "user", "content": title_prompt}])
    assert titled.choices[0].message.content == "Kestrel dashboard port"
    assert title_prompt in fake_llm.chat_requests()[-1]["messages"][-1]["content"]


def test_finish_reason_comes_from_the_model(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    api = client(web, new_key(web))
    question: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
    fake_llm.enqueue(Reply(chunks=["The dashboard listens"], finish_reason="length"))
    completion = api.chat.completions.create(model="docs", messages=question, max_tokens=4)
    assert completion.choices[0].finish_reason == "length"

    fake_llm.enqueue(Reply(chunks=["The dashboard", " listens"], finish_reason="length"))
    stream = api.chat.completions.create(model="docs", messages=question, max_tokens=4, stream=True)
    reasons = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length"]

    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    assert api.chat.completions.create(model="docs", messages=question).choices[0].finish_reason == "stop"


def test_max_tokens_above_the_servers_ceiling_is_lowered(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    completion = client(web, new_key(web)).chat.completions.create(
        model="docs", messages=[{"role": "user", "content": QUESTION}], max_tokens=100_000
    )
    assert completion.choices[0].message.content == "Port 8470 [1]."
    assert fake_llm.chat_requests()[-1]["max_tokens"] == web.settings.llm_max_tokens


def test_model_retrieval_and_unknown_paths_use_openais_shape(web: RunningServer) -> None:
    key = new_key(web, "docs")
    api = client(web, key)
    model = api.models.retrieve("docs")
    assert (model.id, model.object, model.owned_by) == ("docs", "model", "switchboard")
    for hidden in ("closed", "nobody"):  # out of the key's scope, or no such bot: the same answer
        with pytest.raises(openai.NotFoundError) as caught:
            api.models.retrieve(hidden)
        assert caught.value.code == "model_not_found"

    headers = {"Authorization": f"Bearer {key}"}
    for method, path, status in [
        ("GET", "/v1/nope", 404),
        ("POST", "/v1/embeddings", 404),
        ("GET", "/v1/chat/completions", 405),
        ("GET", "/v1", 404),
    ]:
        response = httpx.request(method, f"{web.url}{path}", headers=headers)
        assert response.status_code == status, (method, path)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert httpx.get(f"{web.url}/v1/nope").json()["error"]["message"] == "Invalid URL (GET /v1/nope)"
    assert httpx.get(f"{web.url}/nope").json() == {"detail": "Not Found"}  # elsewhere: FastAPI's shape


def test_sources_are_url_citation_annotations(
    web: RunningServer, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenAI's own slot for sources, for clients that drop unknown fields; the `switchboard` field stays."""
    api = client(web, new_key(web))
    fake_llm.enqueue(Reply(chunks=["The dashboard listens on ", "port 8470 [1]."]))
    raw = api.chat.completions.with_raw_response.create(model="docs", messages=[{"role": "user", "content": QUESTION}])
    body = raw.http_response.json()
    message = ChatCompletion.model_validate(body, strict=True).choices[0].message
    assert message.annotations is not None and len(message.annotations) == 1
    cited = message.annotations[0].url_citation
    source = body["switchboard"]["sources"][0]
    assert cited.url == source["source"] and source["title"] in cited.title
    assert message.content is not None and message.content[cited.start_index : cited.end_index] == "[1]"

    fake_llm.enqueue(Reply(chunks=["The dashboard listens ", "on port 8470."]))  # cites nothing: consulted
    stream = api.chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}], stream=True)
    chunks = [ChatCompletionChunk.model_validate(c.model_dump(), strict=True) for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    annotations = (final.choices[0].delta.model_extra or {})["annotations"]
    assert len(annotations) == len((final.model_extra or {})["switchboard"]["sources"]) > 1
    assert {(a["url_citation"]["start_index"], a["url_citation"]["end_index"]) for a in annotations} == {(0, len(text))}

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download
    import litellm

    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    reply = litellm.completion(
        model="openai/docs",
        api_base=f"{web.url}/v1",
        api_key=new_key(web),
        messages=[{"role": "user", "content": QUESTION}],
    )
    annotation = reply.choices[0].message.annotations[0]
    assert annotation["type"] == "url_citation" and annotation["url_citation"]["url"] == source["source"]


def test_usage_counts_the_prompt_the_model_was_sent(web: RunningServer, fake_llm: FakeOpenAI) -> None:
    api = client(web, new_key(web))
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    completion = api.chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}])
    sent = fake_llm.chat_requests()[-1]["messages"]  # persona, passages and question
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == sum(math.ceil(len(m["content"]) / 4) for m in sent)
    assert completion.usage.prompt_tokens > 3 * math.ceil(len(QUESTION) / 4)

    reported = {"prompt_tokens": 1234, "completion_tokens": 7, "total_tokens": 1241}
    fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."], usage=reported))  # the model server's own count wins
    stream = api.chat.completions.create(
        model="docs",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = [c.usage for c in stream if c.usage]
    assert len(usage) == 1 and usage[0].model_dump(exclude_none=True) == reported
