"""Rate limits and the session-signing secret on both backends (memory/data dir, Redis); what replicas share
only through Redis; and Redis failures as one-line StateErrors that never show the password."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from core.answer.history import create_history
from core.config import Settings
from core.errors import ConfigError, StateError
from core.shared_state import open_redis, state_backend
from core.types import Turn
from tests.conftest import StateBackend, web_settings
from tests.fakes.openai_server import FakeOpenAI
from tests.servers import run_server
from tests.support.ports import free_port_block
from tests.support.redis_server import redis_server
from widget.apikeys import ApiKeys
from widget.ratelimit import create_rate_limits
from widget.sessions import SessionTokens, TokenError, signing_secret


async def test_rate_limits_count_per_kind_and_key_and_say_when_to_retry(state: StateBackend) -> None:
    settings = state.settings.model_copy(update={"rate_limit_session": "3/minute", "rate_limit_ip": "2/hour"})
    limits = create_rate_limits(settings, state.redis)
    assert [await limits.hit("session", "s:a") for _ in range(3)] == [None, None, None]
    wait = await limits.hit("session", "s:a")
    assert wait is not None and 55 <= wait <= 60, "Retry-After: when the oldest hit leaves the window"
    assert await limits.hit("session", "s:b") is None, "another session has its own window"
    assert await limits.hit("ip", "s:a") is None, "another kind has its own window"
    await limits.hit("ip", "10.0.0.1")
    await limits.hit("ip", "10.0.0.1")
    hourly = await limits.hit("ip", "10.0.0.1")
    assert hourly is not None and 3500 < hourly <= 3600


async def test_replicas_share_rate_limits_only_through_redis(state: StateBackend) -> None:
    settings = state.settings.model_copy(update={"rate_limit_ip": "2/minute"})
    async with open_redis(settings) as other:
        here, there = create_rate_limits(settings, state.redis), create_rate_limits(settings, other)
        assert await here.hit("ip", "10.0.0.2") is None and await there.hit("ip", "10.0.0.2") is None
        shared = await here.hit("ip", "10.0.0.2") is not None
    assert shared == (state.redis is not None)


async def test_tokens_minted_by_one_replica_verify_on_another(state: StateBackend, tmp_path: Path) -> None:
    """Replicas agree on the signing secret through Redis even with separate data directories; without Redis
    only processes sharing the data directory do; SWITCHBOARD_SECRET_KEY, when set, is the secret everywhere."""
    elsewhere = state.settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
    async with open_redis(elsewhere) as other:
        here = SessionTokens(await signing_secret(state.settings, state.redis), ttl=60, renew_seconds=600)
        same_dir = SessionTokens(await signing_secret(state.settings, other), ttl=60, renew_seconds=600)
        other_dir = SessionTokens(await signing_secret(elsewhere, other), ttl=60, renew_seconds=600)
        token, session = here.mint(bot="docs", origin="https://a.example", user_id=None, previous=None)
        assert same_dir.verify(token) == session
        if state.redis is None:
            with pytest.raises(TokenError):
                other_dir.verify(token)
        else:
            assert other_dir.verify(token) == session
        fixed = elsewhere.model_copy(update={"secret_key": SecretStr("a-configured-secret")})
        assert await signing_secret(fixed, other) == "a-configured-secret"


async def test_unreachable_or_refused_redis_is_a_one_line_error(redis_url: str, tmp_path: Path) -> None:
    port = free_port_block()[0]
    nobody = Settings(data_dir=tmp_path, redis_url=f"redis://:hunter2@127.0.0.1:{port}/0", _env_file=None)
    assert state_backend(nobody) == f"Redis at redis://127.0.0.1:{port}/0"
    with pytest.raises(StateError, match=f"cannot use Redis at redis://127.0.0.1:{port}/0 \\(REDIS_URL\\)") as caught:
        async with open_redis(nobody):
            pass
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError, match="REDIS_URL: Redis URL must specify one of"):
        async with open_redis(Settings(data_dir=tmp_path, redis_url="http://127.0.0.1:6379", _env_file=None)):
            pass
    wrong = redis_url.replace("://:", "://:wrong")
    with pytest.raises(StateError, match=r"invalid username-password pair|WRONGPASS|invalid password"):
        async with open_redis(Settings(data_dir=tmp_path, redis_url=wrong, _env_file=None)):
            pass


async def test_redis_going_away_mid_run_is_a_state_error(tmp_path: Path) -> None:
    with ExitStack() as running:
        url = running.enter_context(redis_server(tmp_path))
        settings = Settings(data_dir=tmp_path, redis_url=url, _env_file=None)
        async with open_redis(settings) as redis:
            history = create_history(settings, redis)
            await history.append("web", "c1", [Turn(role="user", content="q")])
            running.close()  # Redis stops
            with pytest.raises(StateError, match=r"Redis failed while loading a conversation: .* see REDIS_URL"):
                await history.load("web", "c1")


def test_the_server_answers_503_with_the_reason_while_redis_is_down(
    settings: Settings, fake_llm: FakeOpenAI, host_site: tuple[str, Path], tmp_path: Path
) -> None:
    origin = host_site[0]
    with ExitStack() as redis:
        url = redis.enter_context(redis_server(tmp_path))
        with run_server(web_settings(settings, fake_llm, origin, tmp_path, redis_url=SecretStr(url))) as web:
            key, _ = ApiKeys(web.settings.data_dir / "api-keys.sqlite3").create(name="t", bots=())
            redis.close()  # Redis stops under the running server
            minted = httpx.post(f"{web.url}/api/session", json={"bot": "docs"}, headers={"Origin": origin})
            assert minted.status_code == 503 and minted.headers["Retry-After"] == "5"
            assert "Redis failed while counting a request against the rate limits" in minted.json()["detail"]
            chat = {"model": "docs", "messages": [{"role": "user", "content": "hi"}]}
            api = httpx.post(f"{web.url}/v1/chat/completions", json=chat, headers={"Authorization": f"Bearer {key}"})
            assert api.status_code == 503 and api.json()["error"]["type"] == "server_error", api.text
            ready = httpx.get(f"{web.url}/readyz", timeout=15)
            assert ready.status_code == 503 and ready.json()["redis"].startswith("unavailable"), ready.text
