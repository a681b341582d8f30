"""The Docker deployment run for real: a Docker engine, docker/README.md's commands in a copy of the repository, and
what the tests measure.

Where the upstream images cannot be pulled (no container registry from CI), scripts/docker-standins.sh has built
local STAND-INS under the same tags from Debian packages: test infrastructure, not what users run (docker/README.md
says how they differ). The project's own files (Dockerfile, compose files, nginx.conf) are used unchanged.

No engine is a failure, never a quiet skip: only SWITCHBOARD_SKIP_DOCKER=1 (a laptop without one) skips.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.support import REPO
from tests.support.ports import free_port_block

README = REPO / "docker" / "README.md"
SINGLE, CLUSTER = "docker/compose.yml", "docker/compose.cluster.yml"
# Our own project names: a developer's real deployment (projects `switchboard`, `switchboard-cluster`) and its
# volumes are never touched, whatever `down -v` the tests run.
PROJECTS = {SINGLE: "switchboard-test", CLUSTER: "switchboard-cluster-test"}
TIMES = REPO / "tests" / "output" / "docker-times.json"
# Lines of docker/README.md that are commands: code-block lines, and whole commands in inline `…` spans (not
# mentions such as `docker compose run`).
INLINE = re.compile(r"`((?:docker compose -f|docker build|openssl) [^`]+)`")


def _readme_commands() -> list[str]:
    """Each fenced block of the README as one shell script, except blocks of `docker` lines: one command a line.
    Then the inline commands. (A comment after `#` is part of the line; the shell drops it.)"""
    text = README.read_text()
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        lines = block.splitlines()
        if all(line.startswith("docker ") for line in lines):
            commands += lines
        else:
            commands.append(block.strip())
    outside = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return commands + [c for c in INLINE.findall(outside) if c not in commands]


@dataclass
class Readme:
    """docker/README.md's commands, run by a fragment that names exactly one of them; test_zz_readme checks at
    the end that every one ran, so the README cannot drift from what works."""

    commands: list[str] = field(default_factory=_readme_commands)
    ran: set[str] = field(default_factory=set)

    def find(self, fragment: str, *, exact: bool = False) -> str:
        found = [c for c in self.commands if (c == fragment if exact else fragment in c)]
        assert len(found) == 1, f"docker/README.md should show exactly one command with {fragment!r}: {found}"
        return found[0]


@dataclass
class Deployment:
    """A copy of the repository, set up as docker/README.md tells a user, where its commands run."""

    root: Path
    web_port: int
    readme: Readme
    env: dict[str, str]
    times: dict[str, float]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def environment(self, command: str) -> dict[str, str]:
        # The project name follows the compose file the command names (compose.yml when it names none).
        return {**self.env, "COMPOSE_PROJECT_NAME": PROJECTS[CLUSTER if CLUSTER in command else SINGLE]}

    def sh(self, command: str, *, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.root,
            env=self.environment(command),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def run(self, fragment: str, *, exact: bool = False, timeout: float = 600, check: bool = True) -> str:
        """Run the README command with this fragment; its stdout."""
        command = self.readme.find(fragment, exact=exact)
        self.readme.ran.add(command)
        return self.sh(command, timeout=timeout, check=check).stdout

    def timed(self, step: str, action: Callable[[], Any]) -> Any:
        started = time.monotonic()
        value = action()
        self.times[step] = round(time.monotonic() - started, 1)
        return value

    def compose(self, file: str, args: str, *, timeout: float = 600, check: bool = True) -> str:
        """A compose command of the tests' own (not from the README)."""
        return self.sh(f"docker compose -f {file} {args}", timeout=timeout, check=check).stdout

    def services(self, file: str) -> list[dict[str, Any]]:
        out = self.compose(file, "ps --all --format json")
        # Compose 2.21+ prints one JSON object a line (earlier: one array).
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_healthy(self, file: str, expected: dict[str, int], timeout: float = 300) -> None:
        """Until each service has this many running, healthy containers."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.services(file)
            healthy = {s: sum(r["Service"] == s and r["Health"] == "healthy" for r in rows) for s in expected}
            if healthy == expected:
                return
            if time.monotonic() > deadline:
                logs = self.compose(file, "logs --tail 30", check=False)
                raise AssertionError(f"{file}: not healthy after {timeout:.0f}s: {healthy}\n{rows}\n{logs}")
            time.sleep(2)


def container(file: str, service: str, index: int = 1) -> str:
    """The name Compose gives a service's container in the tests' project."""
    return f"{PROJECTS[file]}-{service}-{index}"


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"the Docker engine does not answer ({(info.stderr.strip().splitlines() or ['no output'])[-1]})"
    compose = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=60)
    if compose.returncode != 0:
        return "no `docker compose` (Compose v2)"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    if os.environ.get("SWITCHBOARD_SKIP_DOCKER") == "1":
        pytest.skip("SWITCHBOARD_SKIP_DOCKER=1: no Docker engine here, the deployment is not run")
    problem = _engine_problem()
    if problem:
        pytest.fail(
            f"{problem}: run `bash scripts/setup.sh --dev` as root (installs and starts Docker), "
            "or set SWITCHBOARD_SKIP_DOCKER=1 on a machine that cannot run it",
            pytrace=False,
        )


def _bridge_address() -> str:
    """The host's address on Docker's default bridge: containers reach the host there (this machine only). Docker
    20.10 reports only the subnet of its default bridge; the host (docker0) has its first address."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "--format", "{{json (index .IPAM.Config 0)}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    config = json.loads(out)
    return str(config.get("Gateway") or ipaddress.ip_network(config["Subnet"])[1])


@pytest.fixture(scope="session")
def bridge_llm(engine: None) -> Iterator[FakeOpenAI]:
    """The scripted fake LLM, where the containers reach it."""
    server = FakeOpenAI(host=_bridge_address()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bridge_slack(engine: None) -> Iterator[FakeSlack]:
    """The fake Slack (Web API and Socket Mode), where the `slack` profile's bot reaches it."""
    server = FakeSlack(host=_bridge_address()).start()
    yield server
    server.stop()


def _copy_repository(target: Path) -> None:
    """The working tree as git sees it (tracked and new files, not ignored ones): what a user's clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def set_env(path: Path, values: dict[str, str]) -> None:
    """NAME=value lines, as a user edits them: each NAME must already be listed."""
    text = path.read_text()
    for name, value in values.items():
        text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)
        assert count == 1, f"{path.name} should list {name}"
    path.write_text(text)


@pytest.fixture(scope="session")
def deployment(
    engine: None, bridge_llm: FakeOpenAI, bridge_slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """docker/README.md's "Start": env files from the examples, secrets filled; then, as it says, `.env` edited
    (secret key, no change-me left, the LLM, the Slack bot's tokens) and the published ports picked free on
    loopback. The LLM and Slack are the tests' fakes on the host."""
    root = tmp_path_factory.mktemp("deploy")
    _copy_repository(root)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # no buildx here: the classic builder (docker/README.md says so)
    web, weaviate_http = free_port_block()
    weaviate_grpc = free_port_block()[0]
    times: dict[str, float] = {}
    deploy = Deployment(root=root, web_port=web, readme=Readme(), env=env, times=times)
    deploy.run("cp .env.example .env")
    secret = deploy.run("openssl rand -hex 32", exact=True).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    app_env = root / ".env"
    app_env.write_text(re.sub(r"^([A-Z_]+)=change-me$", r"\1=", app_env.read_text(), flags=re.M))
    set_env(
        app_env,
        {
            "SWITCHBOARD_SECRET_KEY": secret,
            "LLM_BASE_URL": bridge_llm.base_url,
            "LLM_MODEL": "fake-chat",
            "LLM_API_KEY": "sk-test",
            "LLM_TIMEOUT": "10",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": bridge_slack.api_url,
        },
    )
    # Shorter than the defaults, so the past-the-grace-period case takes seconds; still 10 s apart, as documented.
    set_env(
        root / "docker" / ".env",
        {
            "PUBLISH_WEB": f"127.0.0.1:{web}",
            "PUBLISH_WEAVIATE_HTTP": f"127.0.0.1:{weaviate_http}",
            "PUBLISH_WEAVIATE_GRPC": f"127.0.0.1:{weaviate_grpc}",
            "PUBLIC_URL": deploy.url,
            "SHUTDOWN_GRACE_SECONDS": "8",
            "STOP_GRACE_PERIOD": "20s",
        },
    )
    try:
        yield deploy
    finally:
        TIMES.parent.mkdir(exist_ok=True)
        TIMES.write_text(json.dumps(times, indent=2) + "\n")


def sse(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a Server-Sent Events response, as they arrive."""
    event = "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))
            event = "message"


@dataclass
class Visitor:
    """A widget session from the demo page's origin, over plain HTTP."""

    url: str
    token: str
    conversation: str = "conversation-0001"

    @classmethod
    def open(cls, url: str, bot: str = "default") -> Visitor:
        response = httpx.post(f"{url}/api/session", json={"bot": bot}, headers={"Origin": url}, timeout=30)
        assert response.status_code == 200, response.text
        return cls(url=url, token=response.json()["token"])

    def new_conversation(self) -> None:
        """The next question starts a conversation: no history, so the LLM is not asked to condense it first."""
        self.conversation = f"conversation-{uuid.uuid4().hex[:12]}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Origin": self.url, "Authorization": f"Bearer {self.token}"}

    def ask(self, question: str, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
        body = {"message": question, "conversation_id": self.conversation}
        with httpx.stream("POST", f"{self.url}/api/chat", json=body, headers=self.headers, timeout=timeout) as r:
            assert r.status_code == 200, r.read().decode()
            return list(sse(r))

    def history(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/api/history", params={"conversation_id": self.conversation}, headers=self.headers, timeout=30
        )
        assert response.status_code == 200, response.text
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages
