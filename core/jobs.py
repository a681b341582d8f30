"""Ingestion jobs in the background of a server process: one at a time per KB, with progress and a summary.

One KB at a time because an ingest plans against the chunks stored when it starts: two at once (or a document
deleted meanwhile) could each write chunks the other has just removed. Jobs are asyncio tasks and their records
live in memory (the latest KEEP of them): they are lost on restart, and each server process has its own. A
shared job store (Redis) is a later step.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from core.errors import SwitchboardError
from core.ingest import IngestReport, Progress

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
JobKind = Literal["upload", "urls"]  # what was submitted: files (inputs are their names) or URLs
Work = Callable[[Progress], Awaitable[IngestReport]]
KEEP = 500


class KBBusy(SwitchboardError):
    """An ingestion job is queued or running on the knowledge base."""


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

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class _JobProgress:
    """The ingest Progress protocol, written into the record that status requests read."""

    def __init__(self, job: Job):
        self._job = job

    def stage(self, description: str, total: int) -> None:
        self._job.stage, self._job.done, self._job.total = description, 0, total

    def advance(self, count: int) -> None:
        self._job.done += count


class Jobs:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}  # oldest first
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, *, kb: str, kind: JobKind, inputs: Sequence[str], work: Work, cleanup: Callable[[], None] | None = None
    ) -> Job:
        """Queue `work` on the KB; `cleanup` runs when the job ends, whether it ran, failed or was cancelled."""
        job = Job(id=uuid.uuid4().hex, kb=kb, kind=kind, inputs=tuple(inputs))
        self._jobs[job.id] = job
        self._forget_finished()
        task = asyncio.create_task(self._run(job, work, cleanup))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Work, cleanup: Callable[[], None] | None) -> None:
        try:
            async with self._locks[job.kb]:
                job.state, job.started_at = "running", time.time()
                job.report = await work(_JobProgress(job))
                job.state, job.done = "done", job.total
        except asyncio.CancelledError:
            job.state, job.error = "failed", "the server stopped before the job finished; submit it again"
            raise
        except SwitchboardError as exc:
            job.state, job.error = "failed", str(exc)
        except Exception as exc:
            logger.exception("ingestion job %s failed", job.id)
            job.state, job.error = "failed", f"unexpected error ({exc.__class__.__name__}); see the server log"
        finally:
            job.finished_at = time.time()
            if cleanup is not None:
                cleanup()

    def _forget_finished(self) -> None:
        finished = [job for job in self._jobs.values() if not job.active]
        for job in finished[: max(0, len(self._jobs) - KEEP)]:
            del self._jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self, kb: str | None = None) -> list[Job]:
        """Newest first."""
        return [job for job in reversed(self._jobs.values()) if kb is None or job.kb == kb]

    @asynccontextmanager
    async def exclusive(self, kb: str) -> AsyncIterator[None]:
        """Hold the KB for a quick change (deleting a document), or KBBusy while a job has it or waits for it."""
        if any(job.active for job in self.recent(kb)):
            raise KBBusy(f"an ingestion job is queued or running on knowledge base {kb!r}; try again when it is done")
        async with self._locks[kb]:
            yield

    async def close(self) -> None:
        """Cancel running and queued jobs (server shutdown, before the store closes)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
