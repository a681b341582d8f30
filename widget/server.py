"""`switchboard serve` under uvicorn, with a bounded graceful shutdown.

On SIGTERM (or Ctrl-C) uvicorn closes its listening sockets, so new connections are refused, and waits for
the open requests, streaming answers included, for up to SHUTDOWN_GRACE_SECONDS before cancelling them.
Then the lifespan shuts down: it gives chat-bot webhook answers (which run after their request) what is
left of the same period, and closes the store, the LLM and the clients.
"""

from __future__ import annotations

import ipaddress
import math
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import uvicorn
from fastapi import FastAPI

from core.errors import ConfigError
from widget.settings import WebSettings


class _Server(uvicorn.Server):
    """uvicorn's server, which reports once it listens, and starts the grace period of the app's answers (and
    logs how many are in flight) as it starts its own."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float, on_started: Callable[[], None]):
        super().__init__(config)
        self.app = app
        self.grace = grace
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # the app started and the port is bound (uvicorn exits when binding fails)
            self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(self.app.state, "switchboard", None)  # None when the start-up failed
        if state is not None:
            state.assistant.in_flight.closing(self.grace)
        await super().shutdown(sockets)


def _exit_ok(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def check_bind_address(settings: WebSettings) -> None:
    """Development mode generates its secrets and lets any site embed a bot that has no allow-list: fine on this
    machine, not on a network. Raises ConfigError for a non-loopback address unless DEV_ALLOW_REMOTE is set."""
    if settings.environment == "production" or settings.dev_allow_remote or _loopback(settings.server_host):
        return
    raise ConfigError(
        f"refusing to serve on {settings.server_host} in development mode: use SWITCHBOARD_ENV=production "
        "(with SWITCHBOARD_SECRET_KEY) to expose the server, or set DEV_ALLOW_REMOTE=true"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def serve(app: FastAPI, settings: WebSettings, on_started: Callable[[], None] = lambda: None) -> None:
    """Run `app` until SIGTERM or Ctrl-C; `on_started` is called once it listens on SERVER_PORT."""
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
        _Server(config, app, grace, on_started).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
