"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and they do catch a wrong import."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support import REPO

PACKAGES = ("switchboard", "widget", "bots", "core")
LINT_IMPORTS = REPO / ".venv" / "bin" / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # lint-imports reads [tool.importlinter] from the working directory's pyproject.toml and analyses the
    # packages found there.
    return subprocess.run([str(LINT_IMPORTS)], cwd=root, capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_wrong_import_breaks_the_build(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("node_modules", "static", "__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    wrong = {
        "core/types.py": "from core import config as _config",  # types and errors depend on nothing
        "core/answer/assistant.py": "from widget import app as _app",  # core below the web server
        "bots/base.py": "import fastapi as _fastapi",  # adapters stay framework-free
    }
    for path, line in wrong.items():
        with (tmp_path / path).open("a") as module:
            module.write(f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    for importer, imported in (
        ("core.types", "core.config"),
        ("core.answer.assistant", "widget.app"),
        ("bots.base", "fastapi"),
    ):
        assert f"{importer} -> {imported}" in result.stdout, result.stdout
    assert "4 broken" in result.stdout


def test_surfaces_do_not_reach_into_the_assistant() -> None:
    """Surfaces call the Assistant's methods and are handed narrow collaborators (docs/architecture.md), not the
    assistant's services."""
    reach = re.compile(r"\bassistant\.(store|embedder|llm|history|answers|reranker|redis|settings)\b")
    found = {}
    for package in ("switchboard", "widget", "bots"):
        for path in (REPO / package).rglob("*.py"):
            count = len(reach.findall(path.read_text(encoding="utf-8")))
            if count:
                found[str(path.relative_to(REPO))] = count
    assert found == {}
