"""Answer benchmark: `Assistant.answer()` against the same LLM called directly with the same prompt.

    python -m bench.answer [--questions 12] [--max-tokens 96]

Local Weaviate + sample docs + the local model (llama.cpp server, SmolLM2), temperature 0 so both sides
generate the same tokens. The two sides run as separate passes, never interleaved: llama.cpp reuses the
KV cache of the previous prompt's common prefix, so back-to-back identical prompts would flatter the second.
Target: the kit adds at most 10% over the direct call, plus retrieval time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bench._common import REPO, peak_rss_mb, print_table, save, settings_for
from core.answer.assistant import open_assistant
from core.answer.llm import LocalLLM
from core.answer.prompt import answer_messages
from core.ingest.pipeline import ingest
from core.store.local import LocalWeaviate
from core.types import Delta, Done, Message, Sources
from tests.support.ports import free_port_block

KB = "bench_answer"


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(questions: list[str], max_tokens: int, work: Path) -> dict[str, object]:
    port, grpc = free_port_block()
    llm_port, _ = free_port_block()
    settings = settings_for(work, port, grpc).model_copy(
        update={"default_kb": KB, "llm_local_port": llm_port, "llm_temperature": 0.0, "llm_max_tokens": max_tokens}
    )
    local = LocalWeaviate.from_settings(settings)
    local.start()
    try:
        async with open_assistant(settings) as assistant:
            assert assistant.llm is not None
            await ingest(
                assistant.store, assistant.embedder, [str(REPO / "examples" / "docs")], kb=KB, settings=settings
            )
            kit: list[tuple[float, float, float]] = []  # (retrieval, first token, total)
            for i, question in enumerate(questions):
                started = time.perf_counter()
                retrieved = first = 0.0
                async for event in assistant.answer(Message(text=question, channel="bench", conversation_id=str(i))):
                    now = time.perf_counter() - started
                    if isinstance(event, Sources):
                        retrieved = now
                    elif isinstance(event, Delta) and not first:
                        first = now
                    elif isinstance(event, Done):
                        kit.append((retrieved, first, now))
            direct: list[tuple[float, float]] = []  # (first token, total), same prompt as the kit built
            for question in questions:
                relevant = await assistant.grounding(KB, question)  # the passages answer() gives the model
                messages = answer_messages(question, relevant, [], persona=settings.bot_name, system_prompt=None)
                started = time.perf_counter()
                first = 0.0
                async for _ in assistant.llm.stream(messages):
                    first = first or time.perf_counter() - started
                direct.append((first, time.perf_counter() - started))
            llm_pid = LocalLLM.from_settings(settings).process.pid()
            llm_rss = vm_hwm_mb(llm_pid) if llm_pid else 0.0
    finally:
        local.stop()
    return {"kit": kit, "direct": direct, "kit_rss_mb": peak_rss_mb(), "llm_rss_mb": llm_rss}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    lines = (REPO / "examples" / "qa" / "sample.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()][: args.questions]
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as tmp:
        result = asyncio.run(run(questions, args.max_tokens, Path(tmp)))

    kit = result["kit"]
    direct = result["direct"]
    assert isinstance(kit, list) and isinstance(direct, list)
    med = statistics.median
    retrieval = med(k[0] for k in kit) * 1000
    kit_ttft, kit_total = med(k[1] for k in kit) * 1000, med(k[2] for k in kit) * 1000
    raw_ttft, raw_total = med(d[0] for d in direct) * 1000, med(d[1] for d in direct) * 1000
    rows = [
        ("", "Switchboard answer()", "direct LLM call", "kit overhead beyond retrieval (target <= 10%)"),
        ("retrieval (to Sources event)", f"{retrieval:.0f} ms", "", ""),
        (
            "time to first token, median",
            f"{kit_ttft:.0f} ms",
            f"{raw_ttft:.0f} ms",
            f"{(kit_ttft - retrieval) / raw_ttft - 1:+.1%}",
        ),
        (
            "total time, median",
            f"{kit_total:.0f} ms",
            f"{raw_total:.0f} ms",
            f"{(kit_total - retrieval) / raw_total - 1:+.1%}",
        ),
        (
            "peak RSS",
            f"kit process {result['kit_rss_mb']:.0f} MB",
            f"llama server {result['llm_rss_mb']:.0f} MB",
            f"together {float(result['kit_rss_mb']) + float(result['llm_rss_mb']):.0f} MB",
        ),  # type: ignore[arg-type]
    ]
    title = (
        f"Switchboard answer benchmark: {platform.machine()}, {len(kit)} questions, max_tokens {args.max_tokens}, "
        "SmolLM2-135M Q4_1 on llama.cpp, temperature 0"
    )
    print_table(title, rows)
    save("answer", result)


if __name__ == "__main__":
    main()
