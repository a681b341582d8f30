"""Retrieval evaluation: recall@k and MRR@10 over a JSONL file of questions with expected sources."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from core.config import Fusion, KeywordField
from core.embed import Embedder
from core.errors import ConfigError, SwitchboardError
from core.kb import validate_kb_name
from core.store.client import Store
from core.store.search import OVERFETCH, SearchOptions, retrieve

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


def ranking_options(options: SearchOptions, k: int) -> SearchOptions:
    """Ranks are over distinct documents, so ask for enough passages to see MRR_DEPTH of them: with at most
    `doc_cap` passages per document that many per document, uncapped OVERFETCH per document."""
    return dataclasses.replace(options, top_k=max(k, MRR_DEPTH) * (options.doc_cap or OVERFETCH))


async def evaluate(
    store: Store, embedder: Embedder, kb: str, qa: list[QA], *, k: int, options: SearchOptions
) -> EvalReport:
    await store.require_chunks(kb)
    options = ranking_options(options, k)
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


# --- two runs side by side (`switchboard eval --compare`) --------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EvalRun:
    """What one evaluation run searches: a KB, k, and the search options."""

    kb: str
    k: int
    options: SearchOptions

    def settings(self) -> dict[str, object]:
        o = self.options
        return {
            "kb": self.kb,
            "alpha": o.alpha,
            "k": self.k,
            "doc_cap": o.doc_cap,
            "doc_damping": o.doc_damping,
            "doc_length_penalty": o.doc_length_penalty,
            "keyword_fields": o.keyword_fields,
            "fusion": o.fusion,
            "question_words": "on" if o.keyword_question_words else "off",
        }

    def describe(self) -> str:
        return ", ".join(f"{key} {'+'.join(v) if isinstance(v, tuple) else v}" for key, v in self.settings().items())

    def with_overrides(self, spec: str) -> EvalRun:
        """This run with `key=value` overrides, space- or comma-separated: kb, alpha, k, doc_cap, doc_damping,
        doc_length_penalty, keyword_fields (fields joined with '+', e.g. keyword_fields=text+title), fusion
        (relative or ranked) and question_words (off: BM25 leaves out a question's opening such as "how do I")."""
        pairs = spec.replace(",", " ").split()
        if not pairs:
            raise ConfigError("--compare needs key=value overrides, e.g. --compare alpha=0.5 or --compare kb=docs_v2")
        run = self
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or key not in _OVERRIDES:
                raise ConfigError(f"--compare: {pair!r} is not one of {', '.join(f'{k}=…' for k in _OVERRIDES)}")
            try:
                run = _OVERRIDES[key](run, value)
            except ValueError as exc:
                raise ConfigError(f"--compare: {pair!r}: {exc}") from None
        if run == self:
            raise ConfigError(f"--compare {spec!r} changes nothing: both runs would be the same")
        return run


def _bounded(value: str, kind: type[int] | type[float], low: float, high: float) -> Any:
    number = kind(value)
    if not low <= number <= high:
        raise ValueError(f"must be between {low} and {high}")
    return number


def _choice(value: str, *allowed: str) -> str:
    if value not in allowed:
        raise ValueError(f"must be {' or '.join(allowed)}")
    return value


def _fusion(value: str) -> Fusion:
    return "ranked" if _choice(value, "relative", "ranked") == "ranked" else "relative"


def _keyword_fields(value: str) -> tuple[KeywordField, ...]:
    fields = tuple(value.split("+"))
    allowed = get_args(KeywordField)
    if not fields or not set(fields) <= set(allowed):
        raise ValueError(f"fields are {', '.join(allowed)}, joined with '+'")
    return fields  # type: ignore[return-value]  # checked against KeywordField just above


_OVERRIDES: dict[str, Callable[[EvalRun, str], EvalRun]] = {
    "kb": lambda run, v: dataclasses.replace(run, kb=validate_kb_name(v)),
    "alpha": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, alpha=_bounded(v, float, 0.0, 1.0))
    ),
    "k": lambda run, v: dataclasses.replace(run, k=_bounded(v, int, 1, 100)),
    "doc_cap": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, doc_cap=_bounded(v, int, 0, 100))
    ),
    "doc_damping": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, doc_damping=_bounded(v, float, -1.0, 1.0))
    ),
    "doc_length_penalty": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, doc_length_penalty=_bounded(v, float, 0.0, 1.0))
    ),
    "keyword_fields": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, keyword_fields=_keyword_fields(v))
    ),
    "fusion": lambda run, v: dataclasses.replace(run, options=dataclasses.replace(run.options, fusion=_fusion(v))),
    "question_words": lambda run, v: dataclasses.replace(
        run, options=dataclasses.replace(run.options, keyword_question_words=_choice(v, "on", "off") == "on")
    ),
}


@dataclass(frozen=True, kw_only=True)
class Change:
    """One question that two runs answered differently: its recall@k and the rank (within MRR_DEPTH) of the
    first expected source in each."""

    question: str
    expected: tuple[str, ...]
    recall_a: float
    recall_b: float
    rank_a: int | None
    rank_b: int | None

    @property
    def kind(self) -> str:
        if self.recall_a > self.recall_b:
            return "lost"  # found at k by the first run only
        if self.recall_b > self.recall_a:
            return "gained"
        return "moved"


def rank(result: QuestionResult) -> int | None:
    return round(1 / result.reciprocal_rank) if result.reciprocal_rank else None


def changes(a: EvalReport, b: EvalReport) -> list[Change]:
    """The questions whose recall@k or rank differ, lost ones first, then gained, then rank moves."""
    found = [
        Change(
            question=x.question,
            expected=x.expected,
            recall_a=x.recall,
            recall_b=y.recall,
            rank_a=rank(x),
            rank_b=rank(y),
        )
        for x, y in zip(a.questions, b.questions, strict=True)
        if x.recall != y.recall or rank(x) != rank(y)
    ]
    order = {"lost": 0, "gained": 1, "moved": 2}
    return sorted(found, key=lambda c: order[c.kind])
