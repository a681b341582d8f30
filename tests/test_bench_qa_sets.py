"""The third-party QA set builder (bench/qa_sets.py) and the retrieval benchmark's scoring, on small real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.qa_sets import QASet, _faq_html, _headings_from, _sqlite_questions, build_set, question_text, split_entries
from bench.retrieval import ndcg, target
from core.evaluate import QA, load_qa, score


@pytest.mark.parametrize(
    ("heading", "question"),
    [
        ("8.1. What programs does Debian provide?", "What programs does Debian provide?"),
        ('3.1: Why does `$var` where `var="foo bar"` fail?', 'Why does $var where var="foo bar" fail?'),
        ("(1) How do I create an AUTOINCREMENT field?", "How do I create an AUTOINCREMENT field?"),
        ("T4. How can I use [fetchmail](x.html) with qmail?", "How can I use fetchmail with qmail?"),
        ("Why is **int()** broken?", "Why is int() broken?"),
    ],
)
def test_question_is_the_heading_without_numbering_or_markup(heading: str, question: str) -> None:
    assert question_text(heading) == question


def test_entries_split_at_one_heading_level() -> None:
    markdown = """# Chapter 8. Tools

Intro text that belongs to no entry.

## 8.1. What programs manage packages?

Several tools, from graphical to low level ones.

### 8.1.1. dpkg

The low-level tool.

```sh
## not a heading inside a fence
```

## 8.2. Acknowledgments:

Thanks to everybody who helped with this list.

## 8.3. Is there a short answer here?

Yes.

# Chapter 9. Next

## 9.1. How do I keep my system up to date?

Use apt regularly, it fetches the new versions of installed packages.
"""
    entries = split_entries(markdown, 2)
    assert [e.question for e in entries] == ["What programs manage packages?", "How do I keep my system up to date?"]
    first = entries[0].answer
    assert "### 8.1.1. dpkg" in first and "## not a heading inside a fence" in first
    assert "What programs" not in first and "Chapter 9" not in first and "Intro text" not in first


def test_definition_list_and_bold_paragraph_faqs(tmp_path: Path) -> None:
    gitfaq = tmp_path / "gitfaq.html"
    gitfaq.write_text(
        "<html><body><h2>Configuration</h2><div class='dlist'><dl>"
        "<dt class='hdlist1'>What should I put in <code>user.name</code>?</dt>"
        "<dd><p>You should put your personal name, generally a given name and family name.</p></dd>"
        "<dt class='hdlist1'>How do I configure a different editor?</dt>"
        "<dd><p>Set <code>core.editor</code> or the GIT_EDITOR environment variable to the editor command.</p></dd>"
        "</dl></div></body></html>"
    )
    sqlite = tmp_path / "faq.html"
    sqlite.write_text(
        "<html><body><ol><li><a href='#q1'>How do I create an AUTOINCREMENT field?</a></li></ol>"
        "<a name='q1'></a><p><b>(1) How do I create an AUTOINCREMENT field?</b></p>"
        "<blockquote><p>Short answer: a column declared INTEGER PRIMARY KEY will autoincrement.</p></blockquote>"
        "</body></html>"
    )
    (_, git), *_ = _faq_html("", [gitfaq], 3, _headings_from("dt.hdlist1", "dd"))
    assert [e.question for e in git] == ["What should I put in user.name?", "How do I configure a different editor?"]
    assert "personal name" in git[0].answer and "core.editor" not in git[0].answer
    (part, lite), *_ = _faq_html("sqlite-", [sqlite], 3, _sqlite_questions)
    assert part == "sqlite-faq" and [e.question for e in lite] == ["How do I create an AUTOINCREMENT field?"]
    assert "INTEGER PRIMARY KEY" in lite[0].answer and "(1)" not in lite[0].answer


def test_build_set_writes_gold_documents_without_their_question(tmp_path: Path) -> None:
    faq = tmp_path / "pkgtools.en.html"
    faq.write_text(
        "<html><body><div class='toc'><p>Which tool installs a package file? Which tool lists files?</p></div>"
        "<h1>Chapter 8. Tools</h1>"
        "<h2>8.1. Which tool installs a package file?</h2><p>dpkg -i installs a .deb file you downloaded.</p>"
        "<h2>8.2. Which tool lists installed files?</h2><p>dpkg -L lists the files a package installed.</p>"
        "<h2>8.3. How do I search package descriptions?</h2><p>apt-cache search matches names and descriptions.</p>"
        "</body></html>"
    )
    toc = tmp_path / "index.html"
    toc.write_text(
        "<html><body><ul><li>Which tool installs a package file?</li><li>Which tool lists installed files?</li>"
        "<li>How do I search package descriptions?</li></ul></body></html>"
    )
    guide = tmp_path / "guide.html"
    guide.write_text("<html><body><h1>Guide</h1><p>" + "Packages are archives. " * 20 + "</p></body></html>")
    huge = tmp_path / "huge.html"
    huge.write_text("<html><body><p>" + "A very long reference. " * 500 + "</p></body></html>")
    spec = QASet(
        name="mini",
        packages=(),
        licence="test",
        faqs=lambda: _faq_html("", [faq], 2),
        distractors=lambda: [toc, guide, huge],
    )
    manifest = build_set(spec, tmp_path / "out", distractor_chars=2_000)

    qa = load_qa(tmp_path / "out" / "mini" / "qa.jsonl")
    assert [q.question for q in qa] == [
        "Which tool installs a package file?",
        "Which tool lists installed files?",
        "How do I search package descriptions?",
    ]
    docs = tmp_path / "out" / "mini" / "docs"
    gold = docs / qa[0].expected[0]
    assert "dpkg -i" in gold.read_text() and "Which tool" not in gold.read_text()
    # the table of contents quotes the questions: left out; the long page does not fit the budget
    assert manifest["skipped_as_table_of_contents"] == [str(toc)]
    assert manifest["questions"] == 3 and manifest["distractors"] == 1 and manifest["documents"] == 4
    assert json.loads((tmp_path / "out" / "mini" / "manifest.json").read_text())["faq_documents"] == 3
    assert score(qa[0], [str(docs / "ref/x.md"), str(gold)], 5).reciprocal_rank == 0.5


def test_ndcg_is_binary_and_rank_discounted() -> None:
    qa = QA(question="q", expected=("faq/a.md",))
    assert ndcg(score(qa, ["/s/faq/a.md", "/s/faq/b.md"], 5)) == 1.0
    assert ndcg(score(qa, ["/s/x.md", "/s/y.md", "/s/faq/a.md"], 5)) == pytest.approx(0.5)
    assert ndcg(score(qa, ["/s/x.md"], 5)) == 0.0


def test_targets_compare_with_the_best_naive_alpha_per_set_and_on_the_mean() -> None:
    def row(recall: float, mrr: float) -> dict[str, float]:
        return {"recall@5": recall, "MRR@10": mrr, "nDCG@10": 0.0, "psg@5": 0.0}

    results = [
        {
            "set": "a",
            "sides": {"kit": row(0.90, 0.80), "naive α=0.5": row(0.80, 0.70), "naive α=0.75": row(0.85, 0.75)},
        },
        {
            "set": "b",
            "sides": {"kit": row(0.80, 0.72), "naive α=0.5": row(0.82, 0.60), "naive α=0.75": row(0.75, 0.65)},
        },
    ]
    line = target(results, "kit", ["naive α=0.5", "naive α=0.75"])
    # On the mean α=0.5 is the better baseline (recall 0.81 against 0.80); per set each metric's best alpha counts.
    assert "recall@5 +0.040 (need +0.04; worst set vs naive best -0.020 b)" in line
    assert "MRR@10 +0.110 (need +0.06; worst set vs naive best +0.050 a)" in line
