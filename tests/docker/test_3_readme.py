"""Every command docker/README.md shows ran in this session's deployment (tests/docker/test_1_compose.py and
test_2_cluster.py run them): a command that no test runs is a command nobody knows still works."""

from __future__ import annotations

from tests.docker.conftest import Deployment


def test_every_readme_command_ran(deployment: Deployment) -> None:
    assert len(deployment.readme.commands) >= 10, deployment.readme.commands
    missing = [c for c in deployment.readme.commands if c not in deployment.readme.ran]
    assert missing == [], "docker/README.md commands no test ran (run the whole tests/docker/):\n" + "\n".join(missing)
