"""Retrieval evaluation: recall@k and MRR@10 over a JSONL file of questions with expected sources."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.embed import Embedder
from core.errors import SwitchboardError
from core.store.client import Store
from core.store.search import SearchOptions, retrieve

MRR_DEPTH = 10


@dataclass(frozen=True, kw_only=True)
class QA:
    question: str
    expected: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class QuestionResult:
    question: str
    expected: tuple[str, ...]
    retrieved: tuple[str, ...]  # distinct sources in rank order
    recall: float
    reciprocal_rank: float


@dataclass(frozen=True, kw_only=True)
class EvalReport:
    k: int
    recall_at_k: float
    mrr_at_10: float
    questions: tuple[QuestionResult, ...]


def load_qa(path: Path) -> list[QA]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SwitchboardError(f"{path}: cannot read ({exc.strerror})") from exc
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, expected = row["question"], row["expected_sources"]
            if not isinstance(question, str) or not isinstance(expected, list) or not expected:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise SwitchboardError(
                f'{path}:{number}: expected {{"question": "...", "expected_sources": ["..."]}}'
            ) from None
        items.append(QA(question=question, expected=tuple(str(e) for e in expected)))
    if not items:
        raise SwitchboardError(f"{path}: no questions")
    return items


def matches(source: str, expected: str) -> bool:
    """An expected source matches a full URL/path, or a path suffix on a '/' boundary ('guide/install.md')."""
    return source == expected or source.endswith("/" + expected.lstrip("/"))


def score(qa: QA, ranked_sources: list[str], k: int) -> QuestionResult:
    distinct = list(dict.fromkeys(ranked_sources))
    top_k = distinct[:k]
    found = sum(1 for e in qa.expected if any(matches(s, e) for s in top_k))
    rank = next((i for i, s in enumerate(distinct[:MRR_DEPTH], 1) if any(matches(s, e) for e in qa.expected)), None)
    return QuestionResult(
        question=qa.question,
        expected=qa.expected,
        retrieved=tuple(distinct[:MRR_DEPTH]),
        recall=found / len(qa.expected),
        reciprocal_rank=1.0 / rank if rank else 0.0,
    )


async def evaluate(store: Store, embedder: Embedder, kb: str, qa: list[QA], *, k: int, alpha: float) -> EvalReport:
    await store.require_chunks(kb)
    # Ranks are over distinct documents, so fetch enough chunks to see MRR_DEPTH of them.
    options = SearchOptions(top_k=max(k, MRR_DEPTH) * 4, alpha=alpha)
    results = []
    for item in qa:
        sources = await retrieve(store, embedder, kb, item.question, options)
        results.append(score(item, [s.source for s in sources], k))
    n = len(results)
    return EvalReport(
        k=k,
        recall_at_k=sum(r.recall for r in results) / n,
        mrr_at_10=sum(r.reciprocal_rank for r in results) / n,
        questions=tuple(results),
    )
