"""`switchboard serve` under uvicorn, with a bounded graceful shutdown.

On SIGTERM (or Ctrl-C) uvicorn closes its listening sockets, so new connections are refused, and waits for
the open requests, streaming answers included, for up to SHUTDOWN_GRACE_SECONDS before cancelling them.
Then the lifespan shuts down: it gives chat-bot webhook answers (which run after their request) what is
left of the same period, and closes the store, the LLM and the clients.
"""

from __future__ import annotations

import math
import signal
import socket
from types import FrameType
from typing import NoReturn

import uvicorn
from fastapi import FastAPI

from core.config import Settings


class _Server(uvicorn.Server):
    """uvicorn's server, which starts the grace period of the app's answers (and logs how many are in flight)
    as it starts its own."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float):
        super().__init__(config)
        self.app = app
        self.grace = grace

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.app.state, "switchboard", None)  # None when the start-up failed
        if state is not None:
            state.assistant.in_flight.closing(self.grace)
        await super().shutdown(sockets)


def _exit_ok(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def serve(app: FastAPI, settings: Settings) -> None:
    grace = settings.shutdown_grace_seconds
    config = uvicorn.Config(
        app,
        host=settings.server_host,
        port=settings.server_port,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level="warning",
        timeout_graceful_shutdown=math.ceil(grace),
    )
    # uvicorn re-raises the signal it shut down for; under SIGTERM's default action a clean shutdown would
    # end with status 143. SIGTERM is how containers stop a service: a clean one exits 0.
    previous = signal.signal(signal.SIGTERM, _exit_ok)
    try:
        _Server(config, app, grace).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
