"""Free loopback ports for the real servers tests and benchmarks start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Outside the kernel's ephemeral range: an outgoing connection takes its local port from that range, so a port
# found free there can be taken by some client before our server binds it ("address already in use").
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_EPHEMERAL_LOW, _EPHEMERAL_HIGH = (
    (int(p) for p in _EPHEMERAL.read_text().split()) if _EPHEMERAL.exists() else (32768, 60999)
)
# Below the range when there is room (the usual 32768-60999), else above it; a host whose range spans nearly every
# port (1024-65535) leaves neither, and then the rare race is accepted.
if _EPHEMERAL_LOW > 21000:
    _LOW, _HIGH = 20000, _EPHEMERAL_LOW
elif _EPHEMERAL_HIGH < 64000:
    _LOW, _HIGH = _EPHEMERAL_HIGH + 1, 65536
else:
    _LOW, _HIGH = 20000, 40000
# Never hand a port out twice in one process: a client of a stopped server (a gRPC channel retries for minutes)
# would otherwise reach whatever server takes its port next — once a Weaviate cluster's gossip port.
_handed_out: set[int] = set()


def _free(port: int) -> bool:
    if port in _handed_out:
        return False
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block() -> tuple[int, int]:
    """An HTTP port with its four cluster ports (p+1..p+4) free, and a separate gRPC port."""
    for _ in range(200):
        base = random.randrange(_LOW, _HIGH - 10)
        block = [*range(base, base + 5), base + 10]
        if all(_free(p) for p in block):
            _handed_out.update(block)
            return base, base + 10
    raise RuntimeError("no free loopback ports")
