"""A real three-node Weaviate cluster on loopback: a replicated KB keeps serving with a node killed, and the
node catches up (asynchronous replication) after its restart; a store on the killed node switches to another."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import Response
from pydantic import SecretStr

from core.config import Settings
from core.embed import Embedder
from core.errors import StoreError
from core.ingest.pipeline import ingest
from core.kb import KBMeta
from core.process import pid_alive
from core.store.client import open_store
from core.store.local import LocalWeaviate
from core.store.search import SearchOptions, retrieve
from core.types import Done
from tests.conftest import require_weaviate_binary
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.support import REPO
from tests.support.cli import cli_environment
from tests.support.ports import free_port_block
from tests.test_cli import run
from tests.test_rag import PORT_QUESTION, SAMPLE_KB, assistant_for, collect, make_llm, message
from widget.routes import readyz

NAMES = ("node1", "node2", "node3")
# Catch-up in seconds rather than minutes: compare replicas every 5 s (the server's minimum), and propagate
# objects once 100 ms old (default 30 s).
FAST_CATCH_UP = {
    "ASYNC_REPLICATION_FREQUENCY": "5s",
    "ASYNC_REPLICATION_FREQUENCY_WHILE_PROPAGATING": "1s",
    "ASYNC_REPLICATION_PROPAGATION_DELAY": "100ms",
}
API_KEY = secrets.token_urlsafe(32)  # one cluster: every node takes the same key and inter-node password
LATE_DOC = "# Tide gauges\n\nHarbour gauge QX-7731 records the tide every six minutes.\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LocalWeaviate]]:
    root = tmp_path_factory.mktemp("cluster")
    ports = [free_port_block() for _ in NAMES]
    members = tuple((name, http) for name, (http, _) in zip(NAMES, ports, strict=True))
    nodes = [
        LocalWeaviate(
            root=root / name,
            http_port=http,
            grpc_port=grpc,
            node=name,
            cluster=members,
            extra_env=FAST_CATCH_UP,
            startup_timeout=120,
        )
        for name, (http, grpc) in zip(NAMES, ports, strict=True)
    ]
    require_weaviate_binary(nodes[0])
    shared = {"api-key": API_KEY, "cluster-password": secrets.token_urlsafe(32)}
    for node in nodes:
        node.root.mkdir()
        for name, value in shared.items():
            (node.root / name).write_text(value)
    try:
        with ThreadPoolExecutor(len(nodes)) as pool:  # each is ready only once all three elected a leader
            list(pool.map(LocalWeaviate.start, nodes))
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def on(nodes: list[LocalWeaviate], settings: Settings, **extra: object) -> Settings:
    """Settings for a KB replicated on all three nodes, reached through these nodes' URLs."""
    update = {
        "weaviate_url": ",".join(node.url for node in nodes),
        "weaviate_grpc_port": tuple(node.grpc_port for node in nodes),
        "weaviate_api_key": SecretStr(API_KEY),
        "weaviate_replication_factor": 3,
        **extra,
    }
    return settings.model_copy(update=update)


def kill(node: LocalWeaviate) -> None:
    pid = node.process.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)


async def within(seconds: float, condition: Callable[[], Awaitable[bool]], what: str) -> None:
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < seconds, f"no {what} within {seconds:.0f}s"
        await asyncio.sleep(0.5)


async def test_url_list_and_replication_factor_errors(cluster: list[LocalWeaviate], settings: Settings) -> None:
    port, grpc = free_port_block()
    dead = LocalWeaviate(root=Path(), http_port=port, grpc_port=grpc)  # nothing listens on its ports
    async with open_store(on([dead, cluster[1]], settings)) as store:  # the unreachable first URL is skipped
        assert (await store.cluster_health()).summary == "3/3 healthy at QUORUM"
    with pytest.raises(StoreError, match=rf"cannot reach Weaviate at {dead.url}: .*; {cluster[0].url}: "):
        async with open_store(on([dead, cluster[0]], settings, weaviate_api_key=SecretStr("wrong"))):
            pass
    meta = KBMeta(embed_model="m", embed_dim=3, chunk_size=1000, chunk_overlap=150)
    async with open_store(on(cluster, settings, weaviate_replication_factor=4)) as store:
        with pytest.raises(
            StoreError, match="REPLICATION_FACTOR=4 needs at least 4 Weaviate nodes but the cluster has 3"
        ):
            await store.ensure_kb("too_many_replicas", meta)


async def test_a_killed_node_keeps_the_kb_serving_and_catches_up(
    cluster: list[LocalWeaviate],
    settings: Settings,
    embedder: Embedder,
    fake_llm: FakeOpenAI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    quorum = on(cluster, settings)
    async with open_store(quorum) as store:
        await ingest(store, embedder, [str(REPO / "examples" / "docs")], kb=SAMPLE_KB, settings=quorum)
        assert (await store.cluster_health()).summary == "3/3 healthy at QUORUM"

    llm = make_llm(fake_llm.base_url)
    node3_first = on([cluster[2], *cluster[:2]], settings)  # the store talks to node3, killed while it is open
    async with open_store(node3_first) as store:
        assistant = assistant_for(node3_first, store, embedder, llm, tmp_path)
        options = SearchOptions(top_k=3, alpha=0.5)
        assert await retrieve(store, embedder, SAMPLE_KB, "cron time zone", options)
        kill(cluster[2])
        started = time.monotonic()
        # The requests that meet the dead node fail (not replayed: a write may not be safe to repeat), and
        # switch the store once...
        with caplog.at_level(logging.WARNING, "core.store.nodes"):
            failed = await asyncio.gather(
                *(retrieve(store, embedder, SAMPLE_KB, "cron time zone", options) for _ in range(2)),
                return_exceptions=True,
            )
        switched = f"switched to Weaviate node {re.escape(cluster[0].url)}, so the request can be retried"
        assert all(isinstance(e, StoreError) and re.search(switched, str(e)) for e in failed), failed
        assert [r.getMessage() for r in caplog.records if r.name == "core.store.nodes"] == [
            f"Weaviate node {cluster[2].url} is down; switched to {cluster[0].url}"
        ]
        # ...and the next ones go to node1, the first other node that answers.
        found = await retrieve(store, embedder, SAMPLE_KB, "cron time zone", options)
        assert found[0].source.endswith("guides/cron-schedules.md")
        fake_llm.script.clear()
        fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
        done = (await collect(assistant, message(PORT_QUESTION)))[-1]
        assert isinstance(done, Done) and done.cited and not done.fallback
        print(f"switched from the killed node and answered in {time.monotonic() - started:.1f}s")

    async with open_store(quorum) as store:
        # At once: still ready (the node report may not have caught up yet), and ready once it has.
        assistant = assistant_for(quorum, store, embedder, llm, tmp_path)
        response = Response()
        nodes = (await readyz(assistant, response))["weaviate_nodes"]
        assert response.status_code == 200 and nodes.startswith(("ok (2/3", "unknown:")), nodes

        async def dropped() -> bool:  # counts (in `status`) wait for a crashed node until membership drops it
            try:
                return (await store.cluster_health()).nodes[2].status == "UNREACHABLE"
            except StoreError:  # schema reads wait for the RAFT leader: none until the others elect one, if node3 led
                return False

        await within(60, dropped, "node3 dropped from the live members")

    for level in ("QUORUM", "ONE", "ALL"):
        tuned = on(cluster, settings, weaviate_consistency=level)
        async with open_store(tuned) as store:
            assistant = assistant_for(tuned, store, embedder, llm, tmp_path)
            response = Response()
            nodes = (await readyz(assistant, response))["weaviate_nodes"]
            if level == "ALL":  # every read and write would need node3
                assert nodes == "unavailable: 2/3 healthy, too few for ALL" and response.status_code == 503
                break
            assert nodes == f"ok (2/3 healthy at {level})" and response.status_code == 200
            found = await retrieve(store, embedder, SAMPLE_KB, "cron time zone", SearchOptions(top_k=3, alpha=0.5))
            assert found[0].source.endswith("guides/cron-schedules.md")
            fake_llm.script.clear()
            fake_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
            done = (await collect(assistant, message(PORT_QUESTION)))[-1]
            assert isinstance(done, Done) and done.cited and not done.fallback
    await llm.close()

    late = tmp_path / "late"
    late.mkdir()
    (late / "tides.md").write_text(LATE_DOC)
    async with open_store(quorum) as store:  # writes go on with a node down
        report = await ingest(store, embedder, [str(late)], kb=SAMPLE_KB, settings=quorum)
        assert report.added >= 1

    env = cli_environment(
        settings,
        WEAVIATE_URL=quorum.weaviate_url or "",
        WEAVIATE_GRPC_PORT=",".join(str(node.grpc_port) for node in cluster),
        WEAVIATE_API_KEY=API_KEY,
    )
    result = run(env, "status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)["weaviate"]
    assert status["healthy"] == "2/3 healthy at QUORUM" and status["serving"]
    assert [(n["name"], n["status"]) for n in status["nodes"]] == [
        ("node1", "HEALTHY"),
        ("node2", "HEALTHY"),
        ("node3", "UNREACHABLE"),
    ]

    started = time.monotonic()
    await asyncio.to_thread(cluster[2].start)  # same data directory and ports
    # A read at ONE is served by the node a client talks to when it holds a replica, so this sees node3's data.
    async with open_store(on(cluster[2:], settings, weaviate_consistency="ONE")) as store:
        options = SearchOptions(top_k=5, alpha=0.5, source_prefix=str(late))

        async def caught_up() -> bool:
            return bool(await retrieve(store, embedder, SAMPLE_KB, "harbour tide gauge", options))

        await within(90, caught_up, "node3 serving the documents written while it was down")
    print(f"node3 restarted and caught up in {time.monotonic() - started:.1f}s")
