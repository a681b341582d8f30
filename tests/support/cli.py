"""Running the real `switchboard` command: the environment it runs with, and `switchboard serve` in its own
process (a replica)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from core.config import Settings
from tests.support import REPO
from tests.support.ports import free_port_block


def cli_environment(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for running the real `switchboard` console script against these settings' Weaviate."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEAVIATE_", "EMBED_", "SWITCHBOARD_"))}
    env.update(
        SWITCHBOARD_DATA_DIR=str(settings.data_dir),
        WEAVIATE_LOCAL_PORT=str(settings.weaviate_local_port),
        WEAVIATE_LOCAL_GRPC_PORT=str(settings.weaviate_local_grpc_port),
        EMBED_MODEL_PATH=str(settings.embed_model_path),
        LLM_LOCAL_PORT=str(free_port_block()[1]),  # `serve` checks its ports: never another checkout's model server
        SYNC_SCHEDULE="false",  # the data directory holds other tests' sources: only a test of the schedule runs it
        **extra,
    )
    return env


@dataclass(frozen=True)
class ServeProcess:
    url: str
    pid: int


@contextmanager
def serve_process(env: dict[str, str], cwd: Path) -> Iterator[ServeProcess]:
    """`switchboard serve` in its own process, configured by `env` alone; yields it once it answers."""
    port, _ = free_port_block()
    exe = shutil.which("switchboard", path=str(REPO / ".venv" / "bin")) or "switchboard"
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [exe, "serve", "--port", str(port)], env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _answers(f"{url}/healthz"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`switchboard serve` did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield ServeProcess(url=url, pid=process.pid)
    finally:
        process.terminate()
        process.wait(60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
