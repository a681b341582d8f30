"""Interrupt ingestion for real (Weaviate SIGKILLed mid-batch; Ctrl-C to the CLI), run it again, and
check the KB holds exactly the right chunks: none duplicated, none missing, none stale."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.config import Settings
from core.ingest.pipeline import chunks_for
from core.ingest.sources import RawDoc
from core.kb import collection_name
from core.store.client import open_store
from core.store.local import LocalWeaviate
from tests.conftest import make_settings, require_weaviate_binary
from tests.support import REPO
from tests.support.cli import cli_environment
from tests.support.ports import free_port_block

pytestmark = pytest.mark.slow
WORDS = [
    "queue",
    "worker",
    "lease",
    "retry",
    "backoff",
    "schedule",
    "cron",
    "webhook",
    "token",
    "dashboard",
    "metric",
    "latency",
    "shard",
    "replica",
    "snapshot",
    "backup",
    "restore",
    "migration",
    "index",
    "vector",
    "chunk",
    "embed",
    "search",
    "answer",
    "cite",
    "source",
    "policy",
    "quota",
]


def write_corpus(root: Path, docs: int = 36, sections: int = 8) -> list[Path]:
    rng = random.Random(7)
    paths = []
    for d in range(docs):
        parts = [f"# Document {d}"]
        for s in range(sections):
            sentences = (" ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + "." for _ in range(9))
            parts.append(f"## Section {s}\n\n" + " ".join(sentences))
        path = root / f"doc{d:02d}.md"
        path.write_text("\n\n".join(parts) + "\n")
        paths.append(path)
    return paths


@pytest.fixture
def server(tmp_path: Path, settings: Settings) -> Iterator[tuple[Settings, LocalWeaviate]]:
    http_port, grpc_port = free_port_block()
    own = make_settings(tmp_path / "data", http_port, grpc_port, embed_model_path=settings.embed_model_path)
    local = LocalWeaviate.from_settings(own)
    require_weaviate_binary(local)
    local.start()
    yield own, local
    local.stop()


def count(local: LocalWeaviate, kb: str) -> int:
    query = {"query": f"{{ Aggregate {{ {collection_name(kb)} {{ meta {{ count }} }} }} }}"}
    try:
        body = httpx.post(
            f"{local.url}/v1/graphql", json=query, headers={"Authorization": f"Bearer {local.api_key}"}, timeout=5
        ).json()
        return int(body["data"]["Aggregate"][collection_name(kb)][0]["meta"]["count"])
    except (httpx.HTTPError, KeyError, TypeError, IndexError):
        return 0


def start_ingest(settings: Settings, corpus: Path, kb: str) -> subprocess.Popen[str]:
    # Small batches: many writes, so the interruption lands mid-ingest.
    env = cli_environment(settings, EMBED_BATCH_SIZE="8")
    return subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "switchboard"), "ingest", str(corpus), "--kb", kb],
        env=env,
        cwd=corpus.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_some_chunks(local: LocalWeaviate, kb: str, process: subprocess.Popen[str], at_least: int) -> None:
    deadline = time.monotonic() + 240
    while count(local, kb) < at_least:
        assert process.poll() is None, "ingest finished before it could be interrupted"
        assert time.monotonic() < deadline, "no chunks written in time"
        time.sleep(0.05)


async def assert_exact(settings: Settings, kb: str, paths: list[Path], corpus: Path, local: LocalWeaviate) -> None:
    expected = set()
    for path in paths:
        raw = RawDoc(source=str(path), origin=str(corpus), suffix=".md", data=path.read_bytes(), explicit=False)
        expected |= {(c.doc_id, c.position, c.content_hash) for c in chunks_for(raw, settings)}
    async with open_store(settings) as store:
        index = await store.stored_chunks(kb)
    stored = {(doc, c.position, c.content_hash) for doc, chunks in index.items() for c in chunks.values()}
    assert stored == expected
    assert count(local, kb) == len(expected)  # no duplicates hiding behind the set


async def test_weaviate_killed_mid_batch_then_rerun(tmp_path: Path, server: tuple[Settings, LocalWeaviate]) -> None:
    settings, local = server
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    paths = write_corpus(corpus)
    process = start_ingest(settings, corpus, "killed")
    wait_for_some_chunks(local, "killed", process, 40)
    pid = local.process.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("error: Weaviate"), stderr

    local.start()  # recovers from its write-ahead log
    assert count(local, "killed") > 0
    rerun = start_ingest(settings, corpus, "killed")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    await assert_exact(settings, "killed", paths, corpus, local)


async def test_ctrl_c_then_rerun(tmp_path: Path, server: tuple[Settings, LocalWeaviate]) -> None:
    settings, local = server
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    paths = write_corpus(corpus)
    process = start_ingest(settings, corpus, "interrupted")
    wait_for_some_chunks(local, "interrupted", process, 40)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert 0 < count(local, "interrupted") < 36 * 8

    # A document that changed meanwhile is also put right by the rerun.
    paths[0].write_text("# Document 0\n\nRewritten while the ingest was stopped.\n")
    rerun = start_ingest(settings, corpus, "interrupted")
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    await assert_exact(settings, "interrupted", paths, corpus, local)
