"""Running the real web server on a free loopback port, for tests: uvicorn + create_app in a thread. (The
`switchboard serve` command in its own process is tests.support.cli's.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from tests.support.ports import free_port_block
from widget.app import create_app
from widget.settings import WebSettings
from widget.webhooks import Webhooks

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
    settings: WebSettings


@contextmanager
def run_server(settings: WebSettings, webhooks: Webhooks | None = None) -> Iterator[RunningServer]:
    """`webhooks`: the chat platforms it serves over HTTP (none without)."""
    port, _ = free_port_block()
    settings = settings.model_copy(update={"server_port": port})
    app = create_app(settings, webhooks=webhooks)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
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
