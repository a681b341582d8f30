"""Real-component fixtures: a Weaviate server on free loopback ports and the offline embedding model.

Missing components fail the run loudly (pytest.fail) instead of skipping: scripts/setup.sh installs them.
Plain helpers that bench/ uses too (ports, redis-server, the `switchboard` command) are in tests/support.
"""

from __future__ import annotations

import functools
import http.server
import ipaddress
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from core.config import Settings
from core.embed import Embedder, create_embedder, offline_minilm_dir
from core.shared_state import SharedState, open_redis
from core.store.client import Store, open_store
from core.store.local import LocalWeaviate
from tests.fakes.openai_server import FakeOpenAI
from tests.support import REPO
from tests.support.cli import cli_environment
from tests.support.ports import free_port_block
from tests.support.redis_server import redis_server
from widget.settings import WebSettings

if TYPE_CHECKING:
    from tests.servers import RunningServer


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def make_settings(data_dir: Path, http_port: int, grpc_port: int, **extra: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        weaviate_local_port=http_port,
        weaviate_local_grpc_port=grpc_port,
        weaviate_startup_timeout=120,
        _env_file=None,  # tests never read a developer's .env
        **extra,
    )


def require_weaviate_binary(local: LocalWeaviate) -> None:
    if local.find_binary() is None:
        pytest.fail(
            f"no Weaviate {local.version} server binary found (data dir, embedded cache, PATH, GOPATH/bin): "
            "run `bash scripts/setup.sh` first",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def weaviate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One real Weaviate for the session, started through the kit's own launcher."""
    data_dir = tmp_path_factory.mktemp("switchboard")
    http_port, grpc_port = free_port_block()
    settings = make_settings(data_dir, http_port, grpc_port)
    local = LocalWeaviate.from_settings(settings)
    require_weaviate_binary(local)
    local.start()
    yield settings
    local.stop()


@pytest.fixture(scope="session")
def settings(weaviate_server: Settings, models_dir: Path) -> Settings:
    model = offline_minilm_dir(models_dir)
    if model is None:
        pytest.fail("offline embedding model packages missing: run `bash scripts/setup.sh`", pytrace=False)
    return weaviate_server.model_copy(update={"embed_model_path": model})


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> Embedder:
    return create_embedder(settings)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with open_store(settings) as opened:
        yield opened


@pytest.fixture
def kb() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def real_errors(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """Records with a traceback or at ERROR, less grpc.aio's harmless wakeup error: it wakes every event loop
    that uses it (the test's and the server thread's) and the ones that lose the race log a BlockingIOError
    (grpc/grpc#25364)."""
    return [
        r
        for r in records
        if (r.exc_info or r.levelno >= logging.ERROR)
        and not (r.name == "asyncio" and "PollerCompletionQueue" in r.getMessage())
    ]


def loopback_allowed(settings: Settings) -> Settings:
    """The test sites serve on 127.0.0.1, an internal address URL ingestion refuses unless it is opted in."""
    return settings.model_copy(update={"ingest_allowed_hosts": ("127.0.0.1",)})


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return cli_environment(settings)


# --- the web server, with the widget's world around it ---------------------------------------------------


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _loopback_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Nothing the kit or a library runs may leave the machine (a model hub, a version check, a SaaS token
    endpoint): a Python-level connection to any address but loopback is refused as unreachable, and fails the
    test. The Docker tests talk to the daemon and its containers, so they are left out."""
    if "tests/docker/" in request.node.nodeid:
        yield
        return
    real = socket.socket.connect
    escaped: list[Any] = []

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(address[0]).is_loopback:
            escaped.append(address)
            raise OSError(f"a connection to {address[0]} left the machine (refused by tests/conftest.py)")
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert not escaped, f"connections left the machine: {escaped}"


@pytest.fixture(autouse=True)
def _fresh_llm_script(request: pytest.FixtureRequest) -> Iterator[None]:
    """Replies a test queued but did not use (it refused them, or failed half-way) must not answer the next."""
    yield
    if "fake_llm" in request.fixturenames:
        request.getfixturevalue("fake_llm").script.clear()


@pytest.fixture(scope="session")
def host_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A page server on another loopback port: another origin, like a customer's website."""
    root = tmp_path_factory.mktemp("host-site")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


WIDGET_KB = "widget_kb"


@pytest.fixture(scope="session")
async def widget_kb(settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> str:
    from core.ingest.pipeline import ingest
    from tests.servers import HOSTILE

    extra = tmp_path_factory.mktemp("hostile")
    (extra / "security.md").write_text(f"# Security notes\n\nNever paste API tokens into a chat. {HOSTILE}\n")
    async with open_store(settings) as store:
        await ingest(store, embedder, [str(REPO / "examples" / "docs"), str(extra)], kb=WIDGET_KB, settings=settings)
    return WIDGET_KB


def web_settings(settings: Settings, fake_llm: FakeOpenAI, host_origin: str, tmp: Path, **extra: object) -> WebSettings:
    """The web server's settings over `settings`: production mode (deny-by-default origins), a bots file, the
    scripted LLM."""
    bots = tmp / "bots.toml"
    bots.write_text(
        f'[bots.docs]\nkb = "{WIDGET_KB}"\npersona = "Kestrel Helper"\nwelcome = "Hi! Ask me about Kestrel."\n'
        f'[bots.docs.widget]\nallowed_origins = ["{host_origin}"]\ntitle = "Kestrel docs"\ncolor = "#0f766e"\n'
        f'[bots.closed]\nkb = "{WIDGET_KB}"\n'
    )
    return WebSettings(
        _env_file=None,
        **{
            **dict(settings),
            "environment": "production",
            "secret_key": SecretStr("test-secret-key"),
            "identity_secret": SecretStr("test-identity-secret"),
            "bots_file": bots,
            "default_kb": WIDGET_KB,
            "llm_base_url": fake_llm.base_url,
            "llm_api_key": SecretStr("sk-test"),
            "llm_model": "fake-chat",
            "llm_timeout": 3.0,
            # Test servers share a data directory with other tests' sources: only a test of the schedule runs it.
            "sync_schedule": False,
            **extra,
        },
    )


@pytest.fixture(scope="session")
def web(
    settings: Settings,
    widget_kb: str,
    fake_llm: FakeOpenAI,
    host_site: tuple[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    from tests.servers import run_server

    tmp = tmp_path_factory.mktemp("web")
    with run_server(web_settings(settings, fake_llm, host_site[0], tmp)) as running:
        yield running


# --- shared state: a real redis-server, and the state tests run on both backends ---------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server for the session."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@dataclass(frozen=True)
class StateBackend:
    settings: WebSettings  # REDIS_URL set or not; the web server's too (rate limits, the session secret)
    redis: Redis | None  # this process's client, as open_assistant opens it


def shared(state: StateBackend) -> SharedState:
    return SharedState(state.settings.data_dir, state.redis)


@pytest.fixture(params=["sqlite", "redis"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    """Each shared-state test runs on the single-machine default and on Redis (emptied first)."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = WebSettings(data_dir=tmp_path / "data", redis_url=url, _env_file=None)
    async with open_redis(settings) as client:
        if client is not None:
            await client.flushdb()
        yield StateBackend(settings=settings, redis=client)
