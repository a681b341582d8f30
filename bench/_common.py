"""What the benchmark scripts share: the bench run's settings against a dedicated local Weaviate, running one
phase in a child process (so peak RSS is per phase), percentiles, the machine line, and the result table
printed and saved under bench/out/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import Settings
from core.embed import offline_minilm_dir

REPO = Path(__file__).resolve().parent.parent


def settings_for(work: Path, port: int, grpc: int) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=work / "data",
        weaviate_local_port=port,
        weaviate_local_grpc_port=grpc,
        embed_model_path=offline_minilm_dir(work / "models"),
    )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def add_phase_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments `run_phase` passes to the child: which phase, the work directory, the Weaviate's ports."""
    parser.add_argument("--phase")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--grpc", type=int)
    parser.add_argument("--extra", default="{}")


def run_phase(module: str, phase: str, work: Path, port: int, grpc: int, extra: dict[str, Any]) -> dict[str, Any]:
    """Runs `python -m module --phase phase …` and returns the JSON object it prints last; exits if it failed."""
    args = [sys.executable, "-m", module, "--phase", phase, "--work", str(work)]
    args += ["--port", str(port), "--grpc", str(grpc), "--extra", json.dumps(extra)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"phase {phase} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def ms(seconds: list[float], q: int = 50) -> float:
    """The q-th percentile of durations in seconds, in milliseconds."""
    return statistics.quantiles(seconds, n=100)[q - 1] * 1000


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def print_table(title: str, rows: Sequence[Sequence[str]]) -> None:
    print(title)
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)))


def save(name: str, result: Any) -> None:
    """Writes bench/out/<name>.json."""
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
