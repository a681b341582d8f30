"""Ingestion jobs in the background of a server process: one at a time per KB, with progress and a summary.

One KB at a time because an ingest plans against the chunks stored when it starts: jobs of one process queue on
an asyncio lock, and every writer (other replicas, `switchboard ingest`) is kept out by core.ingest.lock, which the
ingest pipeline takes. Job records are kept where the deployment keeps shared state (SQLite under the data
directory, or Redis with REDIS_URL), so they survive a restart and every replica sees them; the latest KEEP.
A running job renews a lease on its record: one whose lease ran out (its server died) reads as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from redis.asyncio import Redis

from core.config import Settings
from core.errors import SwitchboardError
from core.ingest.lock import KBBusy, kb_write_lock
from core.ingest.pipeline import IngestReport, Progress
from core.shared_state import redis_errors, redis_key
from core.sqlite import connect, init_db

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
JobKind = Literal["upload", "urls", "sync"]  # what was submitted: files (inputs: their names), URLs, or a source
Work = Callable[[Progress], Awaitable[IngestReport]]
KEEP = 500
LEASE_SECONDS = 15.0  # a job whose server stopped renewing its record this long ago was interrupted
STOPPED = "the server stopped before the job finished; submit it again"


@dataclass(kw_only=True)
class Job:
    id: str
    kb: str
    kind: JobKind
    inputs: tuple[str, ...]
    state: JobState = "queued"
    stage: str = ""
    done: int = 0  # progress within the current stage
    total: int = 0
    report: IngestReport | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None  # while active: renewed by the process running it

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def _dumps(job: Job) -> str:
    return json.dumps(asdict(job))


def _loads(text: str | bytes) -> Job:
    data: dict[str, Any] = json.loads(text)
    report = data.pop("report")
    if report is not None:
        report = IngestReport(**{**report, "failures": [tuple(f) for f in report["failures"]]})
    return Job(**{**data, "inputs": tuple(data["inputs"]), "report": report})


class JobStore(Protocol):
    async def save(self, job: Job) -> None: ...

    async def get(self, job_id: str) -> Job | None: ...

    async def recent(self) -> list[Job]:
        """Newest first, at most KEEP."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created_at REAL NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created_at);
"""


class SQLiteJobs:
    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA)

    def _save(self, job: Job) -> None:
        with connect(self._path) as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                (job.id, job.created_at, _dumps(job)),
            )
            db.execute(
                "DELETE FROM jobs WHERE id NOT IN (SELECT id FROM jobs ORDER BY created_at DESC LIMIT ?)", (KEEP,)
            )
            db.execute("COMMIT")

    def _get(self, job_id: str) -> Job | None:
        with connect(self._path) as db:
            row = db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _loads(row[0]) if row else None

    def _recent(self) -> list[Job]:
        with connect(self._path) as db:
            rows = db.execute("SELECT record FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (KEEP,))
            return [_loads(r[0]) for r in rows]

    async def save(self, job: Job) -> None:
        await asyncio.to_thread(self._save, job)

    async def get(self, job_id: str) -> Job | None:
        return await asyncio.to_thread(self._get, job_id)

    async def recent(self) -> list[Job]:
        return await asyncio.to_thread(self._recent)


class RedisJobs:
    """A JSON record per job, and a sorted set of job ids by creation time (trimmed to KEEP)."""

    def __init__(self, redis: Redis):
        self._redis = redis
        self._index = redis_key("jobs")

    async def save(self, job: Job) -> None:
        with redis_errors("saving an ingestion job"):
            async with self._redis.pipeline(transaction=True) as tx:
                tx.set(redis_key("job", job.id), _dumps(job))
                tx.zadd(self._index, {job.id: job.created_at})
                await tx.execute()
            dropped = await self._redis.zrange(self._index, 0, -KEEP - 1)
            if dropped:
                await self._redis.zrem(self._index, *dropped)
                await self._redis.delete(*(redis_key("job", str(d)) for d in dropped))

    async def get(self, job_id: str) -> Job | None:
        with redis_errors("reading an ingestion job"):
            record = await self._redis.get(redis_key("job", job_id))
        return _loads(record) if record else None

    async def recent(self) -> list[Job]:
        with redis_errors("listing ingestion jobs"):
            ids = await self._redis.zrevrange(self._index, 0, KEEP - 1)
            records = await self._redis.mget([redis_key("job", str(i)) for i in ids]) if ids else []
        return [_loads(r) for r in records if r]


def create_job_store(settings: Settings, redis: Redis | None) -> JobStore:
    if redis is None:
        return SQLiteJobs(settings.data_dir / "jobs.sqlite3")
    return RedisJobs(redis)


def _as_seen(job: Job) -> Job:
    """A record as readers see it: an active job nobody renews any more was interrupted."""
    if job.active and (job.lease_until or 0) < time.time():
        return replace(job, state="failed", error=STOPPED, lease_until=None)
    return job


class _JobProgress:
    """The ingest Progress protocol, written into the record that status requests read."""

    def __init__(self, job: Job):
        self._job = job

    def stage(self, description: str, total: int) -> None:
        self._job.stage, self._job.done, self._job.total = description, 0, total

    def advance(self, count: int) -> None:
        self._job.done += count


class Jobs:
    def __init__(self, settings: Settings, store: JobStore) -> None:
        self._settings = settings
        self._store = store
        self._live: dict[str, Job] = {}  # this process's active jobs: their progress is fresher than the store's
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(
        self, *, kb: str, kind: JobKind, inputs: Sequence[str], work: Work, cleanup: Callable[[], None] | None = None
    ) -> Job:
        """Queue `work` on the KB; `cleanup` runs when the job ends, whether it ran, failed or was cancelled."""
        job = Job(id=uuid.uuid4().hex, kb=kb, kind=kind, inputs=tuple(inputs), lease_until=self._lease())
        await self._store.save(job)
        self._live[job.id] = job
        task = asyncio.create_task(self._run(job, work, cleanup))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    @staticmethod
    def _lease() -> float:
        return time.time() + LEASE_SECONDS

    async def _renew(self, job: Job, ended: asyncio.Event) -> None:
        """Keep the record's lease (and its progress, for other replicas) fresh while the job is active. Stopped
        by `ended`, not cancelled: a save cancelled half-way could land after the job's last one."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), LEASE_SECONDS / 3)
            if ended.is_set():
                return
            job.lease_until = self._lease()
            try:
                await self._store.save(job)
            except SwitchboardError as exc:
                logger.warning("could not renew ingestion job %s: %s", job.id, exc)

    async def _run(self, job: Job, work: Work, cleanup: Callable[[], None] | None) -> None:
        ended = asyncio.Event()
        renewer = asyncio.create_task(self._renew(job, ended))
        # The end state is set only after cleanup: whoever polls the live job and sees it ended finds its staged
        # files already gone.
        state: JobState = "failed"
        error: str | None = None
        try:
            async with self._locks[job.kb]:
                job.state, job.started_at = "running", time.time()
                await self._store.save(job)
                job.report = await work(_JobProgress(job))
                state, job.done = "done", job.total
        except asyncio.CancelledError:
            error = STOPPED
            raise
        except SwitchboardError as exc:
            error = str(exc)
        except Exception as exc:
            logger.exception("ingestion job %s failed", job.id)
            error = f"unexpected error ({exc.__class__.__name__}); see the server log"
        finally:
            ended.set()
            await renewer
            if cleanup is not None:
                cleanup()
            job.state, job.error = state, error
            job.finished_at, job.lease_until = time.time(), None
            try:
                await self._store.save(job)
            except SwitchboardError as exc:
                logger.error("could not save the end of ingestion job %s: %s", job.id, exc)
            del self._live[job.id]

    async def get(self, job_id: str) -> Job | None:
        live = self._live.get(job_id)
        if live is not None:
            return live
        stored = await self._store.get(job_id)
        return _as_seen(stored) if stored else None

    async def recent(self, kb: str | None = None) -> list[Job]:
        """Newest first."""
        jobs = [self._live.get(job.id) or _as_seen(job) for job in await self._store.recent()]
        return [job for job in jobs if kb is None or job.kb == kb]

    @asynccontextmanager
    async def exclusive(self, kb: str) -> AsyncIterator[None]:
        """Hold the KB for a quick change (deleting a document), or KBBusy while a job has it or waits for it, or
        another process writes to it."""
        if any(job.active and job.kb == kb for job in self._live.values()):
            raise KBBusy(f"an ingestion job is queued or running on knowledge base {kb!r}; try again when it is done")
        async with self._locks[kb], kb_write_lock(self._settings, kb, wait=False):
            yield

    async def close(self) -> None:
        """Cancel running and queued jobs (server shutdown, before the store closes): their records say so."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
