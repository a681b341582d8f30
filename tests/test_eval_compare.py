"""`switchboard eval --compare`: two KBs or two settings over the same questions, through the real console script
against the session's Weaviate; and the override parsing on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.evaluate import MRR_DEPTH, EvalRun
from core.store.search import SearchOptions
from tests.test_cli import SAMPLE_DOCS, SAMPLE_QA, one_line_error, run

BASE = EvalRun(kb="docs", k=5, options=SearchOptions(top_k=5, alpha=0.75, keyword_fields=("text",), doc_cap=1))


def test_overrides_space_or_comma_separated() -> None:
    other = BASE.with_overrides(
        "kb=docs_v2, alpha=0.5 k=3,doc_cap=0 keyword_fields=text+title doc_damping=-0.2 "
        "doc_length_penalty=0 fusion=ranked question_words=on"
    )
    assert other == EvalRun(
        kb="docs_v2",
        k=3,
        options=SearchOptions(
            top_k=5,
            alpha=0.5,
            keyword_fields=("text", "title"),
            doc_cap=0,
            doc_damping=-0.2,
            doc_length_penalty=0.0,
            fusion="ranked",
            keyword_question_words=True,
        ),
    )
    assert other.describe() == (
        "kb docs_v2, alpha 0.5, k 3, doc_cap 0, doc_damping -0.2, doc_length_penalty 0.0, keyword_fields text+title, "
        "fusion ranked, question_words on"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "needs key=value"),
        ("top=3", "is not one of kb=…, alpha=…"),
        ("alpha", "is not one of"),
        ("alpha=2", "must be between 0.0 and 1.0"),
        ("doc_damping=-3", "must be between -1.0 and 1.0"),
        ("doc_length_penalty=-0.1", "must be between 0.0 and 1.0"),
        ("k=ten", "invalid literal"),
        ("keyword_fields=text+body", "fields are text, title, section"),
        ("kb=Docs", "invalid knowledge base name"),
        ("fusion=rrf", "must be relative or ranked"),
        ("question_words=no", "must be on or off"),
        ("alpha=0.75", "changes nothing"),
    ],
)
def test_bad_overrides_say_why(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BASE.with_overrides(spec)


def rank(result: dict[str, Any]) -> int | None:
    return round(1 / result["reciprocal_rank"]) if result["reciprocal_rank"] else None


def test_compare_two_kbs_and_two_settings(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    partial = kb + "_guides"
    assert run(cli_env, "ingest", str(SAMPLE_DOCS), "--kb", kb, cwd=tmp_path).returncode == 0
    assert run(cli_env, "ingest", str(SAMPLE_DOCS / "guides"), "--kb", partial, cwd=tmp_path).returncode == 0
    try:
        # Two KBs: the one holding only the guides loses every question whose answer is elsewhere.
        compared = run(
            cli_env, "eval", str(SAMPLE_QA), "--kb", kb, "--compare", f"kb={partial}", "--json", cwd=tmp_path
        )
        assert compared.returncode == 0, compared.stderr
        payload = json.loads(compared.stdout)
        a, b = payload["a"], payload["b"]
        assert (a["kb"], b["kb"], a["questions"], b["questions"]) == (kb, partial, 30, 30)
        assert b["recall@5"] < a["recall@5"] and b["mrr@10"] < a["mrr@10"]
        assert all(s.startswith(str(SAMPLE_DOCS / "guides")) for r in b["results"] for s in r["retrieved"])
        # The changes are exactly the questions whose recall or rank differ, with both runs' ranks.
        expected = {
            x["question"]: (x["recall"], y["recall"], rank(x), rank(y))
            for x, y in zip(a["results"], b["results"], strict=True)
            if (x["recall"], rank(x)) != (y["recall"], rank(y))
        }
        changes = payload["changes"]
        assert {c["question"]: (c["recall_a"], c["recall_b"], c["rank_a"], c["rank_b"]) for c in changes} == expected
        lost = [c for c in changes if c["kind"] == "lost"]
        assert lost and all(c["recall_a"] > c["recall_b"] for c in lost)
        assert [c["kind"] for c in changes] == sorted(
            (c["kind"] for c in changes), key=["lost", "gained", "moved"].index
        )
        outside = [r for r in a["results"] if r["recall"] == 1.0 and "guides/" not in "".join(r["expected"])]
        assert {r["question"] for r in outside} <= {c["question"] for c in lost}

        # Two settings on one KB, as a table with the per-question changes.
        shown = run(cli_env, "eval", str(SAMPLE_QA), "--kb", kb, "--compare", "alpha=0.0 doc_cap=0", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        text = " ".join(shown.stdout.split())
        assert "A: kb " + kb in text and "B: kb " + kb in text and "alpha 0.0" in text and "doc_cap 0" in text
        assert "recall@5" in text and "MRR@10" in text and "30 questions:" in text
        moved = json.loads(
            run(
                cli_env, "eval", str(SAMPLE_QA), "--kb", kb, "--compare", "alpha=0.0,doc_cap=0", "--json", cwd=tmp_path
            ).stdout
        )
        assert moved["b"]["alpha"] == 0.0 and moved["b"]["doc_cap"] == 0 and moved["a"]["alpha"] == a["alpha"]
        assert f"{len(moved['changes'])} changed" in text
        for change in moved["changes"]:
            assert change["question"][:40] in text
            assert all(r is None or 1 <= r <= MRR_DEPTH for r in (change["rank_a"], change["rank_b"]))

        one_line_error(run(cli_env, "eval", str(SAMPLE_QA), "--kb", kb, "--compare", "top=3", cwd=tmp_path), "top=3")
    finally:
        for name in (kb, partial):
            run(cli_env, "kb", "delete", name, "--yes", cwd=tmp_path)
