"""A KB's own chunks as test and training data: `switchboard eval generate` (a QA set for `switchboard eval`) and
`switchboard export raft` (RAFT fine-tuning data). Both ask the configured LLM, so both refuse the local toy
model unless --force."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.config import Settings
from switchboard.cli.base import KBOption, _fail, _kb, _run, _settings, err, eval_app, export_app, out

if TYPE_CHECKING:
    from core.answer.llm import LLM
    from core.quality.sample import KBChunk

T = TypeVar("T")
SeedOption = Annotated[int, typer.Option("--seed", help="The same seed draws the same chunks in the same order.")]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Run even with the local toy model (its questions and answers are poor).")
]


def _refuse_toy_model(settings: Settings, force: bool) -> None:
    """SmolLM2-135M (what the kit runs when no LLM endpoint is configured) writes poor questions and answers."""
    if settings.llm_is_local and not force:
        _fail(
            "the configured LLM is the local toy model (SmolLM2-135M, no LLM_BASE_URL or LLM_API_KEY set): its "
            "questions and answers are poor. Point LLM_BASE_URL/LLM_API_KEY/LLM_MODEL at a capable model, "
            "or pass --force to run anyway"
        )


def _with_chunks(
    settings: Settings,
    kb: str,
    n: int,
    label: str,
    work: Callable[[LLM, list[KBChunk], Callable[[int], None]], Awaitable[T]],
) -> T:
    """Read the KB's chunks, open the LLM, and run `work` with a progress bar counting what it keeps."""
    from core.answer.llm import open_llm
    from core.errors import LLMError
    from core.quality.sample import read_chunks
    from core.store.client import open_store

    async def go() -> T:
        async with open_store(settings) as store:
            chunks = await read_chunks(store, kb)
        async with open_llm(settings) as llm:
            if llm is None:
                raise LLMError("no language model available: set LLM_BASE_URL / LLM_API_KEY")
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
            ) as bar:
                task = bar.add_task(label, total=n)
                return await work(llm, chunks, lambda k: bar.advance(task, k))

    return _run(go)


def _write(path: Path, lines: list[dict[str, Any]]) -> None:
    try:
        path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: cannot write ({exc.strerror})")


def _rejections(rejected: dict[str, int], reasons: dict[str, str]) -> None:
    for reason, count in sorted(rejected.items(), key=lambda item: -item[1]):
        out.print(f"  rejected {count}: {reasons.get(reason, reason)}", highlight=False, soft_wrap=True)


@eval_app.command("generate")
def eval_generate(
    output: Annotated[Path, typer.Option("--out", help="The QA file to write (JSONL, for `switchboard eval`).")],
    kb: KBOption = None,
    n: Annotated[int, typer.Option("-n", min=1, max=10000, help="Questions wanted.")] = 100,
    seed: SeedOption = 0,
    force: ForceOption = False,
) -> None:
    """Write a QA set from a KB's own chunks: chunks drawn across documents (no near-duplicates), one question
    each by the configured LLM, kept when retrieval-free checks pass. Prints what was rejected and why."""
    import random

    from core.quality.questions import REASONS, generate_questions

    settings = _settings()
    name = _kb(settings, kb)
    _refuse_toy_model(settings, force)
    result = _with_chunks(
        settings,
        name,
        n,
        "Writing questions",
        lambda llm, chunks, tick: generate_questions(llm, chunks, n, random.Random(seed), tick),
    )
    _write(output, [g.qa_line() for g in result.kept])
    out.print(
        f"{output}: {len(result.kept)} questions from {len({g.chunk.doc_id for g in result.kept})} documents "
        f"({result.attempts} chunks tried, {sum(result.rejected.values())} rejected)",
        highlight=False,
        soft_wrap=True,
    )
    _rejections(result.rejected, REASONS)
    if len(result.kept) < n:
        err.print(f"fewer than {n}: the KB ran out of distinct chunks or too many questions were rejected")
    out.print(f"measure retrieval with: switchboard eval {output} --kb {name}", highlight=False, soft_wrap=True)


@export_app.command("raft")
def export_raft_command(
    output: Annotated[
        Path,
        typer.Option(
            "--out",
            help="train.jsonl: also writes train.validation.jsonl, "
            "train.plain.jsonl and train.manifest.json next to it.",
        ),
    ],
    kb: KBOption = None,
    n: Annotated[int, typer.Option("-n", min=1, max=100000, help="Examples wanted.")] = 500,
    seed: SeedOption = 0,
    oracle_share: Annotated[
        float, typer.Option("--oracle-share", help="P: share of examples whose context holds the oracle chunk.")
    ] = 0.8,
    k: Annotated[int, typer.Option("--distractors", help="K: distractor chunks in each example.")] = 4,
    validation: Annotated[float, typer.Option("--validation", help="Share held out for validation.")] = 0.1,
    bot: Annotated[str | None, typer.Option("--bot", help="Whose system prompt and persona the examples use.")] = None,
    force: ForceOption = False,
) -> None:
    """RAFT fine-tuning data: per generated question its oracle chunk with K distractors (or, for 1 − P of them,
    the distractors alone) and a reference answer quoting its evidence with citations. OpenAI chat fine-tuning
    JSONL (train and validation), a plain JSONL for other trainers, and a manifest."""
    from core.answer.profiles import DEFAULT_BOT, load_profiles
    from core.errors import SwitchboardError
    from core.quality.questions import REASONS
    from core.quality.raft import ANSWER_REASONS, RaftOptions, export_raft

    settings = _settings()
    name = _kb(settings, kb)
    try:
        options = RaftOptions(n=n, seed=seed, oracle_share=oracle_share, distractors=k, validation_share=validation)
        profiles = load_profiles(settings)
        profile = profiles.get(bot or DEFAULT_BOT)
    except SwitchboardError as exc:
        _fail(str(exc))
    if profile is None:
        _fail(f"unknown bot {bot!r}; bots: {', '.join(sorted(profiles))}")
    _refuse_toy_model(settings, force)
    result = _with_chunks(
        settings, name, n, "Writing examples", lambda llm, chunks, tick: export_raft(llm, chunks, options, tick)
    )
    if not result.examples:
        _rejections(result.rejected, {**REASONS, **ANSWER_REASONS})
        _fail(f"no example survived the checks ({result.attempts} chunks tried); nothing written")
    stem = output.with_suffix("")
    files = {
        "train": output,
        "validation": stem.with_name(f"{stem.name}.validation.jsonl"),
        "plain": stem.with_name(f"{stem.name}.plain.jsonl"),
        "manifest": stem.with_name(f"{stem.name}.manifest.json"),
    }
    for split in ("train", "validation"):
        chosen = [e for e in result.examples if e.split == split]
        _write(files[split], [e.chat(profile.persona, profile.system_prompt) for e in chosen])
    _write(files["plain"], [e.plain() for e in result.examples])
    kept = sum(e.oracle_kept for e in result.examples)
    manifest = {
        "kb": name,
        "embedder": f"{settings.embed_provider}: {settings.embed_model}",
        "llm": settings.llm_model or ("local" if settings.llm_is_local else "default"),
        "bot": profile.name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"n": n, "seed": seed, "oracle_share": oracle_share, "distractors": k, "validation": validation},
        "counts": {
            "examples": len(result.examples),
            "train": sum(e.split == "train" for e in result.examples),
            "validation": sum(e.split == "validation" for e in result.examples),
            "with_oracle": kept,
            "distractors_only": len(result.examples) - kept,
            "chunks_tried": result.attempts,
            "rejected": dict(result.rejected),
        },
        "files": {key: path.name for key, path in files.items() if key != "manifest"},
    }
    try:
        files["manifest"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        _fail(f"{files['manifest']}: cannot write ({exc.strerror})")
    train = sum(e.split == "train" for e in result.examples)
    out.print(
        f"{output}: {train} train, {len(result.examples) - train} validation examples ({kept} with the oracle, "
        f"{len(result.examples) - kept} distractors only); plain JSONL and manifest next to it",
        highlight=False,
        soft_wrap=True,
    )
    _rejections(result.rejected, {**REASONS, **ANSWER_REASONS})
