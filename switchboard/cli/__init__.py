"""`switchboard ...`: the command line, one module per topic registering its commands on `app`."""

from __future__ import annotations

import logging
import sys

# The order the topics register their commands in is the order of `switchboard --help`.
# isort: off
from switchboard.cli import knowledge, quality, answers, sources, surfaces, access, services  # noqa: F401

# isort: on
from switchboard.cli.base import app, err

__all__ = ["app", "main"]


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("core.shutdown").setLevel(logging.INFO)  # "shutting down: N answers in flight"
    logging.getLogger("core.ingest.schedule").setLevel(logging.INFO)  # each scheduled sync (serve, sync --watch)
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
