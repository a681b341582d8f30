"""The ports a web server run binds, checked before it starts anything.

`switchboard serve` starts the local Weaviate (which takes WEAVIATE_LOCAL_PORT+1…+4 besides its own two ports) and
the local model server in its start-up, and only then binds SERVER_PORT: a clash would otherwise surface as
`address already in use` after those servers were started. So: every port distinct, and each one free unless the
kit's own server already holds it (a Weaviate or model server left running is reused, not started).
"""

from __future__ import annotations

import errno
import socket

from core.answer.llm import LocalLLM
from core.errors import ConfigError
from core.store.local import LocalWeaviate
from widget.settings import WebSettings


def check_ports(settings: WebSettings) -> None:
    """Raise ConfigError (one line saying which setting to change) unless every port the run binds is usable."""
    ports = {"SERVER_PORT": settings.server_port}
    llm = LocalLLM.from_settings(settings) if settings.llm_is_local else None
    if llm is not None and llm.model() is not None:  # without a model no local server starts
        ports["LLM_LOCAL_PORT"] = llm.port
    weaviate = None if settings.weaviate_url else LocalWeaviate.from_settings(settings)
    weaviate_ports = weaviate.ports() if weaviate is not None else {}
    ports |= weaviate_ports
    _check_distinct(ports)
    running: set[str] = set()  # ports the kit's own servers hold: they are reused
    if "LLM_LOCAL_PORT" in ports and llm is not None and llm.process.ready():
        running.add("LLM_LOCAL_PORT")
    if weaviate is not None and weaviate.running():
        running |= weaviate_ports.keys()
    for what, port in ports.items():
        if what not in running:
            _check_free(what, settings.server_host if what == "SERVER_PORT" else "127.0.0.1", port)


def _check_distinct(ports: dict[str, int]) -> None:
    owner: dict[int, str] = {}
    for what, port in ports.items():
        if port in owner:
            note = " (Weaviate takes WEAVIATE_LOCAL_PORT to WEAVIATE_LOCAL_PORT+4)" if "+" in what + owner[port] else ""
            raise ConfigError(f"{owner[port]} and {what} are both port {port}{note}: give each a port of its own")
        owner[port] = what


def _check_free(what: str, host: str, port: int) -> None:
    """Bind and release, with SO_REUSEADDR as uvicorn and Weaviate set it (a port in TIME_WAIT is usable)."""
    setting = what.partition("+")[0]
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} ({what}) is already in use by another program: stop it or set {setting} to a free port"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}") from None
