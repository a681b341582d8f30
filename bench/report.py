"""`switchboard report` on a large answer log: the analytics' time with 100,000 answers.

    python -m bench.report [--answers 100000]

Fills a fresh answer log with synthetic answers over 30 days (tests/support/answer_log.synthetic: 3 bots,
4 channels, 10% "I don't know", ratings on 1 answer in 10), then times core.answer.stats for several periods
and bots (counts only, and with the knowledge gaps clustered by the offline embedder), the queries of the
console's Conversations and Feedback pages, and the real `switchboard report --json` command end to end
(process start, imports and the embedder's load included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from core.answer.conversations import ConversationQuery
from core.answer.stats import answer_stats
from core.config import Settings
from core.embed import create_embedder, offline_minilm_dir
from tests.support import REPO
from tests.support.answer_log import fill, synthetic

DAY = 86400.0
T = TypeVar("T")


def timed(run: Coroutine[Any, Any, T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = asyncio.run(run)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        log = fill(work / "answers.sqlite3", synthetic(args.answers, time.time()))
        print(
            f"filled {args.answers:,} answers in {time.perf_counter() - started:.1f} s "
            f"({(work / 'answers.sqlite3').stat().st_size / 1e6:.0f} MB); "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        )
        model = offline_minilm_dir(work / "models")
        embedder = create_embedder(Settings(embed_model_path=model, _env_file=None))  # type: ignore[call-arg]
        print(f"{'period':>6} {'bot':>8} {'answers':>8} {'counts s':>9} {'+gaps s':>8} {'gap groups':>10}")
        for days, bot in ((1, None), (7, None), (7, "support"), (30, None), (30, "support")):
            counts_s, stats = timed(answer_stats(log, None, period=days * DAY, bot=bot))
            gaps_s, with_gaps = timed(answer_stats(log, embedder, period=days * DAY, bot=bot))
            print(
                f"{days:>5}d {bot or 'all':>8} {stats.questions:>8,} {counts_s:>9.2f} {gaps_s:>8.2f} "
                f"{len(with_gaps.gaps):>10}"
            )
        # What the console's other pages over the answer log read (the latest 200 of each).
        conversations_s, conversations = timed(log.conversations(ConversationQuery(bot="support", limit=200)))
        print(f"Conversations page query (one bot, latest 200 of its conversations): {conversations_s:.2f} s")
        feedback_s, rated = timed(log.rated_answers(rating="down", limit=200))
        print(f"Feedback page query (latest 200 thumbs-down, every bot): {feedback_s:.2f} s")
        assert len(conversations) == 200 and len(rated) == 200
        exe = shutil.which("switchboard", path=str(REPO / ".venv" / "bin")) or "switchboard"
        env = {**os.environ, "SWITCHBOARD_DATA_DIR": str(work), "EMBED_MODEL_PATH": str(model)}
        for extra in (["--no-gaps"], []):
            started = time.perf_counter()
            subprocess.run(
                [exe, "report", "--since", "7d", "--json", *extra], env=env, check=True, stdout=subprocess.DEVNULL
            )
            print(f"`switchboard report --since 7d --json {' '.join(extra)}`: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
