"""Running the real web server (uvicorn + create_app) in a thread on a free loopback port, for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from core.config import Settings
from tests.conftest import free_port_block
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
    server: uvicorn.Server


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
        yield RunningServer(url=f"http://127.0.0.1:{port}", settings=settings, server=server)
    finally:
        server.should_exit = True
        thread.join(60)
