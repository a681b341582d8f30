"""One writer per knowledge base across processes: two real `switchboard ingest` runs on one KB take turns (the
second says it waits), a holder killed with SIGKILL releases the KB, and on both backends (an flock in the data
directory, a Redis lease) the lock refuses or waits, stays held while its holder lives, and frees when it dies."""

from __future__ import annotations

import asyncio
import fcntl
import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.config import Settings
from core.ingest import lock as kblock
from core.ingest.lock import KBBusy, kb_write_lock
from tests.conftest import StateBackend
from tests.support import REPO

EXE = str(REPO / ".venv" / "bin" / "switchboard")


def write_docs(root: Path, prefix: str, count: int) -> Path:
    root.mkdir()
    for i in range(count):
        (root / f"{prefix}-{i}.md").write_text(
            f"# {prefix} page {i}\n\nThe {prefix} component, part {i}, runs daily.\n"
        )
    return root


def lock_held(path: Path) -> bool:
    if not path.exists():
        return False
    with path.open("a") as probe:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
    return False


@contextmanager
def ingest_process(env: dict[str, str], source: Path, kb: str, tmp: Path) -> Iterator[subprocess.Popen[str]]:
    log = (tmp / f"{source.name}.err").open("w")
    process = subprocess.Popen([EXE, "ingest", str(source), "--kb", kb], env=env, cwd=tmp, stderr=log, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
        log.close()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def documents(env: dict[str, str], kb: str, tmp: Path) -> int:
    listed = subprocess.run([EXE, "kb", "list", "--json"], env=env, cwd=tmp, capture_output=True, text=True)
    return {k["name"]: k["documents"] for k in json.loads(listed.stdout)}[kb]


def test_two_ingests_of_one_kb_take_turns(cli_env: dict[str, str], settings: Settings, tmp_path: Path, kb: str) -> None:
    first_docs, second_docs = write_docs(tmp_path / "first", "alpha", 60), write_docs(tmp_path / "second", "beta", 2)
    lock = settings.data_dir / "locks" / f"{kb}.lock"
    with ingest_process(cli_env, first_docs, kb, tmp_path) as first:
        wait_until(lambda: lock_held(lock) or first.poll() is not None, 300, "the first ingest never wrote")
        os.kill(first.pid, signal.SIGSTOP)  # paused while it holds the KB
        try:
            assert first.poll() is None, "the first ingest finished before the test could pause it"
            with ingest_process(cli_env, second_docs, kb, tmp_path) as second:
                err = tmp_path / "second.err"
                wait_until(lambda: "waiting for it to finish" in err.read_text(), 120, "the second never waited")
                assert f"pid {first.pid} on" in err.read_text()  # says who it waits for
                time.sleep(1)
                assert second.poll() is None  # still waiting, nothing written
                os.kill(first.pid, signal.SIGCONT)
                assert first.wait(300) == 0
                assert second.wait(300) == 0
        finally:
            if first.poll() is None:
                os.kill(first.pid, signal.SIGCONT)
    assert documents(cli_env, kb, tmp_path) == 62


def test_a_killed_ingest_releases_the_kb(cli_env: dict[str, str], settings: Settings, tmp_path: Path, kb: str) -> None:
    docs = write_docs(tmp_path / "docs", "gamma", 60)
    lock = settings.data_dir / "locks" / f"{kb}.lock"
    with ingest_process(cli_env, docs, kb, tmp_path) as killed:
        wait_until(lambda: lock_held(lock) or killed.poll() is not None, 300, "the ingest never wrote")
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    started = time.monotonic()
    again = subprocess.run(
        [EXE, "ingest", str(docs), "--kb", kb], env=cli_env, cwd=tmp_path, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "waiting" not in again.stderr and time.monotonic() - started < 120
    assert documents(cli_env, kb, tmp_path) == 60


# --- the lock itself, on both backends ----------------------------------------------------------------------


def _hold(settings: Settings, kb: str, ready: Path) -> None:
    """A process that takes the KB and keeps it until killed (with a short Redis lease, renewed meanwhile)."""
    kblock.LEASE_SECONDS = 1.0

    async def go() -> None:
        async with kb_write_lock(settings, kb):
            ready.write_text("held")
            await asyncio.sleep(3600)

    asyncio.run(go())


async def test_the_lock_refuses_or_waits_and_frees_when_its_holder_dies(state: StateBackend, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("spawn").Process(target=_hold, args=(state.settings, "kb_x", ready))
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.is_alive() and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # longer than the holder's Redis lease: it is renewed, not lost
        with pytest.raises(KBBusy, match=rf"'kb_x' is being written by another process \(pid {holder.pid} on "):
            async with kb_write_lock(state.settings, "kb_x", wait=False):
                pass
        async with kb_write_lock(state.settings, "kb_y", wait=False):  # other KBs are free
            pass
        waits: list[str] = []
        waiter = asyncio.create_task(_take(state.settings, "kb_x", waits))
        await asyncio.sleep(1)
        assert not waiter.done() and waits == [f"pid {holder.pid} on {os.uname().nodename}"]
        os.kill(holder.pid or 0, signal.SIGKILL)
        await asyncio.wait_for(waiter, 10)  # flock: at once; Redis: when the 1 s lease runs out
    finally:
        holder.kill()
        holder.join(10)
    async with kb_write_lock(state.settings, "kb_x", wait=False):  # released after use
        pass


async def _take(settings: Settings, kb: str, waits: list[str]) -> None:
    async with kb_write_lock(settings, kb, on_wait=waits.append):
        pass
