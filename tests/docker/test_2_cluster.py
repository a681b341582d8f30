"""docker/compose.cluster.yml for real: three Weaviate nodes (replication factor 3, QUORUM), Redis, two web replicas
behind nginx on the published port. The widget works through nginx; a web replica down is skipped; with a
Weaviate node killed answers go on, writes too, and the restarted node catches up on them.

On CI machines nginx is a STAND-IN (Debian's 1.22, test infrastructure; see docker/README.md): it resolves the
replicas once at start instead of with `resolve`.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Page, expect

from core.answer.assistant import STORE_DOWN
from tests.docker.conftest import CLUSTER, Deployment, Visitor, container
from tests.docker.test_1_compose import QUESTION, image, widget_streams_an_answer  # noqa: F401 (the image fixture)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_widget_browser import browser, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(1800)

SERVICES = {"weaviate-node1": 1, "weaviate-node2": 1, "weaviate-node3": 1, "redis": 1, "web": 2, "proxy": 1}
LATE = "# Harbour tides\n\nThe harbour tide gauge reports every six minutes to the Kestrel tide service.\n"


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def cluster(deployment: Deployment, image: str) -> Iterator[Deployment]:  # noqa: F811
    deployment.compose(CLUSTER, "down -v --remove-orphans", check=False)  # what a killed earlier run left
    try:
        deployment.timed("cluster up", lambda: deployment.run(f"docker compose -f {CLUSTER} up -d", exact=True))
        deployment.timed("cluster healthy", lambda: deployment.wait_healthy(CLUSTER, SERVICES, timeout=420))
        deployment.timed("cluster ingest", lambda: deployment.compose(CLUSTER, "--profile tools run --rm ingest"))
        yield deployment
    finally:
        deployment.compose(CLUSTER, "down -v", check=False)
        assert deployment.services(CLUSTER) == []


def _status(cluster: Deployment, *env: str) -> dict[str, object]:
    flags = " ".join(f"-e {e}" for e in env)
    status: dict[str, object] = json.loads(cluster.compose(CLUSTER, f"exec -T {flags} web switchboard status --json"))
    return status


def test_three_nodes_healthy_at_quorum_behind_nginx(cluster: Deployment) -> None:
    weaviate = _status(cluster)["weaviate"]
    assert isinstance(weaviate, dict) and weaviate["healthy"] == "3/3 healthy at QUORUM", weaviate
    ready = httpx.get(f"{cluster.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["weaviate_nodes"].startswith("ok (3/3"), ready.text


async def test_the_widget_works_through_nginx(
    cluster: Deployment,
    page: Page,  # noqa: F811 (the browser tests' fixture)
    bridge_llm: FakeOpenAI,
) -> None:
    await widget_streams_an_answer(page, cluster.url, bridge_llm)  # through the proxy
    await expect(page.get_by_test_id("sb-citation").first).to_be_attached()


def _answered(visitor: Visitor, bridge_llm: FakeOpenAI) -> bool:
    bridge_llm.script.clear()
    bridge_llm.enqueue(Reply(chunks=["Port 8470 [1]."]))
    visitor.new_conversation()
    events = visitor.ask(QUESTION, timeout=90)
    if events[-1] == ("error", {"message": STORE_DOWN}):
        return False
    assert events[-1][0] == "done" and events[-1][1]["cited"], events
    return True


def test_a_web_replica_down_is_skipped(cluster: Deployment, bridge_llm: FakeOpenAI) -> None:
    visitor = Visitor.open(cluster.url)
    docker("stop", container(CLUSTER, "web"))
    try:
        for _ in range(4):  # round robin would give the stopped replica every other request
            assert _answered(visitor, bridge_llm)
    finally:
        docker("start", container(CLUSTER, "web"))
    cluster.wait_healthy(CLUSTER, SERVICES)


def test_a_killed_node_keeps_answers_and_writes_going_and_catches_up(
    cluster: Deployment, bridge_llm: FakeOpenAI
) -> None:
    visitor = Visitor.open(cluster.url)
    docker("kill", container(CLUSTER, "weaviate-node1"))  # the node every web replica talks to first
    killed = time.monotonic()
    # An answer that meets the dead node fails with a clear error (a request is not replayed); the store switches
    # to the next node, so within a few answers they go on.
    failures = 0
    while not _answered(visitor, bridge_llm):
        failures += 1
        assert failures <= 4 and time.monotonic() - killed < 120, "answers did not resume with a node down"
    cluster.times["answers resumed after a node kill"] = round(time.monotonic() - killed, 1)

    late = cluster.root / "late"
    late.mkdir(exist_ok=True)
    (late / "tides.md").write_text(LATE)
    # --no-deps: Compose would otherwise start the killed node first (ingest depends on all three).
    cluster.compose(CLUSTER, f"--profile tools run --rm --no-deps -v {late}:/late:ro ingest ingest /late")

    docker("start", container(CLUSTER, "weaviate-node1"))
    started = time.monotonic()
    cluster.wait_healthy(CLUSTER, SERVICES, timeout=300)

    def on_node1() -> list[object]:
        env = ("WEAVIATE_URL=http://weaviate-node1:8080", "WEAVIATE_CONSISTENCY=ONE")
        flags = " ".join(f"-e {e}" for e in env)
        out = cluster.compose(
            CLUSTER, f"exec -T {flags} web switchboard search 'harbour tide gauge' --source-prefix /late --json"
        )
        results: list[object] = json.loads(out)["results"]
        return results

    deadline = time.monotonic() + 180
    while not on_node1():  # async replication brings the restarted node up to date
        assert time.monotonic() < deadline, "node1 never served what was written while it was down"
        time.sleep(5)
    cluster.times["killed node caught up after restart"] = round(time.monotonic() - started, 1)
