"""Free loopback ports for the real servers tests and benchmarks start."""

from __future__ import annotations

import random
import socket


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
