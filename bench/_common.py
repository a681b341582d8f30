"""What the benchmark scripts share: a run's work directory and dedicated local Weaviate, each phase run in a
child process (so peak RSS is per phase), percentiles, the machine line, and the result table printed and
saved under bench/out/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import Settings
from core.embed import offline_minilm_dir
from core.store.local import LocalWeaviate

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
    """The arguments `BenchRun.phase` passes to the child: which phase, the work directory, the Weaviate's ports."""
    parser.add_argument("--phase")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--grpc", type=int)
    parser.add_argument("--extra", default="{}")


@dataclass(frozen=True)
class BenchRun:
    work: Path
    settings: Settings
    local: LocalWeaviate

    def phase(self, module: str, phase: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Runs `python -m module --phase phase …` and returns the JSON object it prints last; exits if it failed."""
        port, grpc = self.settings.weaviate_local_port, self.settings.weaviate_local_grpc_port
        args = [sys.executable, "-m", module, "--phase", phase, "--work", str(self.work)]
        args += ["--port", str(port), "--grpc", str(grpc), "--extra", json.dumps(extra)]
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"phase {phase} failed:\n{done.stderr}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@contextmanager
def bench_run(prefix: str) -> Iterator[BenchRun]:
    """A temporary work directory and a local Weaviate of its own on free loopback ports, stopped at the end."""
    from tests.support.ports import free_port_block

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        settings = settings_for(work, *free_port_block())
        local = LocalWeaviate.from_settings(settings)
        local.start()
        try:
            yield BenchRun(work, settings, local)
        finally:
            local.stop()


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
