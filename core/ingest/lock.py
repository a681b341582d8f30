"""One writer per knowledge base, across processes: `switchboard ingest`, the compose `ingest` container and the
server's admin jobs.

An ingest plans against the chunks stored when it starts, so two at once (or a document deleted meanwhile) could
each delete chunks the other has just written. The lock follows the deployment's shared state: with REDIS_URL, a
Redis lock (SET NX PX with a token, renewed while held, released by compare-and-delete: redis-py's Lock) that
every machine sees; without it, an flock on a file per KB in the data directory. A holder that dies releases it:
the kernel drops its flock at once, and its Redis lease runs out within LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from core.config import Settings
from core.errors import SwitchboardError
from core.shared_state import open_redis, redis_errors, redis_key

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30.0  # a dead holder's Redis lock expires after this; a live one renews it every third of it
_POLL = 0.2  # seconds between attempts while waiting


class KBBusy(SwitchboardError):
    """Another writer holds the knowledge base."""


def _me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


@asynccontextmanager
async def kb_write_lock(
    settings: Settings, kb: str, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> AsyncIterator[None]:
    """Hold the KB for writing. Busy: wait (calling `on_wait` once with who holds it), or KBBusy if not `wait`."""
    if settings.redis_url is None:
        async with _file_lock(settings.data_dir / "locks" / f"{kb}.lock", kb, wait, on_wait):
            yield
        return
    async with open_redis(settings) as redis:
        assert redis is not None
        async with _redis_lock(redis, kb, wait, on_wait):
            yield


def _busy(kb: str, holder: str) -> str:
    return f"knowledge base {kb!r} is being written by another process ({holder or 'unknown'})"


async def _acquire(
    kb: str,
    try_once: Callable[[], Awaitable[bool]],
    holder: Callable[[], Awaitable[str]],
    wait: bool,
    on_wait: Callable[[str], None] | None,
) -> None:
    told = False
    while not await try_once():
        who = await holder()
        if not wait:
            raise KBBusy(f"{_busy(kb, who)}; try again when it is done")
        if not told:
            logger.warning("%s; waiting for it to finish", _busy(kb, who))
            if on_wait is not None:
                on_wait(who)
            told = True
        await asyncio.sleep(_POLL)


@asynccontextmanager
async def _file_lock(path: Path, kb: str, wait: bool, on_wait: Callable[[str], None] | None) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as file:

        async def try_once() -> bool:
            try:  # non-blocking, so that waiting stays cancellable (a thread blocked in flock is not)
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        async def holder() -> str:
            return path.read_text().strip()

        await _acquire(kb, try_once, holder, wait, on_wait)
        try:
            file.truncate(0)
            file.write(_me())  # for the message others see while they wait
            file.flush()
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


@asynccontextmanager
async def _redis_lock(redis: Redis, kb: str, wait: bool, on_wait: Callable[[str], None] | None) -> AsyncIterator[None]:
    name = redis_key("lock", "kb", kb)
    lock = Lock(redis, name, timeout=LEASE_SECONDS)
    token = f"{_me()} [{uuid.uuid4().hex}]"  # unique, and says who holds it

    async def try_once() -> bool:
        with redis_errors(f"locking knowledge base {kb!r}"):
            return await lock.acquire(blocking=False, token=token)

    async def holder() -> str:
        with redis_errors(f"locking knowledge base {kb!r}"):
            value = await redis.get(name)
        return str(value).rsplit(" [", 1)[0] if value else ""

    await _acquire(kb, try_once, holder, wait, on_wait)
    renewer = asyncio.create_task(_renew(lock, kb))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        with contextlib.suppress(LockError):  # expired and maybe taken by another: not ours to delete
            await lock.release()


async def _renew(lock: Lock, kb: str) -> None:
    while True:
        await asyncio.sleep(LEASE_SECONDS / 3)
        try:
            await lock.reacquire()
        except LockError:
            logger.error("lost the write lock on knowledge base %r (Redis unreachable for too long?)", kb)
            return
