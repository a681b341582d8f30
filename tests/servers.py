"""Running the real web server on a free loopback port, for tests: uvicorn + create_app in a thread, or the
`switchboard serve` command in its own process (a replica)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from core.config import Settings
from tests.conftest import REPO, free_port_block
from widget.app import create_app

# Content that must never execute in the widget: in a document and in model output.
HOSTILE = (
    '<script>window.__xss = "script"</script> '
    '<img src="x" onerror="window.__xss = \'img\'"> '
    '[click me](javascript:window.__xss="link") '
    "<a href=\"javascript:window.__xss='a'\">html link</a> "
    "<b onmouseover=\"window.__xss='b'\">bold</b>"
)


@dataclass
class RunningServer:
    url: str
    settings: Settings


@contextmanager
def run_server(settings: Settings) -> Iterator[RunningServer]:
    port, _ = free_port_block()
    settings = settings.model_copy(update={"server_port": port})
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the web server did not start; see the log above")
        time.sleep(0.05)
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        thread.join(60)


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
