"""A real redis-server (Debian's package) for the shared-state tests and the replica benchmark."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port_block


@contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """A real redis-server: loopback only, password-protected, nothing written to disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `bash scripts/setup.sh --dev` (Debian package redis-server)",
            pytrace=False,
        )
    port, password = free_port_block()[0], secrets.token_urlsafe(16)
    config, log = root / "redis.conf", root / "redis.log"  # a config file keeps the password out of `ps`
    config.write_text(
        f'port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\nsave ""\nappendonly no\n'
        f"dir {root}\nlogfile {log}\n"
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    process = subprocess.Popen([binary, str(config)])
    try:
        with redis.Redis.from_url(url) as client:
            deadline = time.monotonic() + 20
            while not _answers(client):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start: {log.read_text() if log.exists() else ''}", pytrace=False)
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
