"""Third-party retrieval QA sets, built from FAQ documentation that Debian packages install — no downloads.

    python -m bench.qa_sets build [--out DIR] [--set NAME ...] [--distractor-chars N] [--pages clean|kit|trafilatura]

Each set is one or more upstream FAQs plus the rest of the same packages' documentation as distractors. Every
FAQ entry becomes its own document (`docs/faq/<part>-<n>.md`) with its heading removed; the question is that
heading as the upstream authors wrote it, only its numbering stripped; the gold source is the entry's document.
The other documentation is converted to Markdown (`docs/ref/...`) and sampled deterministically (by a hash of
its path) up to a character budget, so a run fits the machine. A distractor that quotes three or more of the
set's questions verbatim is a table of contents of the FAQ and is left out. Per set, DIR/<set>/ receives
`docs/`, `qa.jsonl` (the format `core.evaluate.load_qa` reads) and `manifest.json` (packages, licence, sizes).

The sets are built, not committed: DIR defaults to `.switchboard/bench-sets/` (gitignored).
`scripts/bench-data.sh` installs the packages first.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

from core.ingest.extract import html_to_markdown

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / ".switchboard" / "bench-sets"
DEFAULT_DISTRACTOR_CHARS = 900_000
MIN_ANSWER_CHARS = 40
# Shorter headings are an FAQ's own furniture ("Acknowledgments:", "Copyright Information:"), not questions.
MIN_QUESTION_WORDS = 3
_NUMBERING = re.compile(r"^(?:\(\d+\)|[A-Z]?\d+(?:\.\d+)*[.:)]?)\s+")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
# DocBook/Sphinx page furniture: tables of contents and navigation bars repeat other pages' headings.
_FURNITURE = "div.toc, div.navheader, div.navfooter, div.sphinxsidebar, div.related, div.list-of-tables"


@dataclass(frozen=True)
class Entry:
    question: str
    answer: str  # Markdown, heading removed


@dataclass(frozen=True, kw_only=True)
class QASet:
    name: str
    packages: tuple[str, ...]
    licence: str  # what the packages' copyright files say, and whether a built set may be committed
    faqs: Callable[[], list[tuple[str, list[Entry]]]]  # (part name, entries)
    distractors: Callable[[], list[Path]]


# --- turning documentation into Markdown -------------------------------------------------------------------


def _soup(path: Path) -> BeautifulSoup:
    with warnings.catch_warnings():  # some pages are XHTML; lxml's HTML parser reads them fine
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(path.read_bytes(), "lxml")
    for tag in soup.select(_FURNITURE):
        tag.decompose()
    return soup


def html_markdown(path: Path, prepare: Callable[[BeautifulSoup], None] | None = None) -> str:
    soup = _soup(path)
    if prepare:
        prepare(soup)
    return html_to_markdown(str(soup), path.stem).markdown


def pod_markdown(path: Path) -> str:
    """POD through Pod::Markdown (Debian's libpod-markdown-perl), the converter CPAN itself uses."""
    done = subprocess.run(["pod2markdown", str(path)], capture_output=True, text=True, check=True)
    return done.stdout


def question_text(heading: str) -> str:
    """The heading as a reader sees it: Markdown markup and the upstream numbering removed."""
    text = _MD_LINK.sub(r"\1", heading)
    text = re.sub(r"[`*~]|\\(?=[^\w\s])", "", text)
    text = " ".join(text.split())
    return _NUMBERING.sub("", text).strip()


def split_entries(markdown: str, level: int) -> list[Entry]:
    """One entry per ATX heading of exactly `level`; deeper headings stay in the answer, shallower end it."""
    entries: list[Entry] = []
    heading: str | None = None
    body: list[str] = []
    fence = False

    def close() -> None:
        answer = "\n".join(body).strip()
        if heading is not None and len(answer) >= MIN_ANSWER_CHARS:
            entries.append(Entry(question_text(heading), answer + "\n"))

    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        found = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if found and len(found.group(1)) <= level:
            close()
            heading, body = (found.group(2), []) if len(found.group(1)) == level else (None, [])
            continue
        body.append(line)
    close()
    return [e for e in entries if len(e.question.split()) >= MIN_QUESTION_WORDS]


def _faq_html(
    prefix: str, paths: Iterable[Path], level: int, prepare: Callable[[BeautifulSoup], None] | None = None
) -> list[tuple[str, list[Entry]]]:
    return [(prefix + p.name.split(".")[0], split_entries(html_markdown(p, prepare), level)) for p in paths]


def _headings_from(selector: str, unwrap: str | None = None) -> Callable[[BeautifulSoup], None]:
    """FAQs whose questions are not headings (definition terms, bold paragraphs): make them <h3>."""

    def prepare(soup: BeautifulSoup) -> None:
        for tag in soup.select(selector):
            tag.name = "h3"
            tag.attrs = {}
        if unwrap:
            for tag in soup.select(unwrap):
                tag.unwrap()

    return prepare


def _sqlite_questions(soup: BeautifulSoup) -> None:
    for bold in soup.select("p > b"):
        if re.match(r"\(\d+\)", bold.get_text(strip=True)) and bold.parent is not None:
            bold.parent.name = "h3"
            bold.unwrap()


def _glob(pattern: str, exclude: str = r"$^") -> list[Path]:
    found = sorted(Path(p) for p in glob.glob(pattern))
    return [p for p in found if p.is_file() and not re.search(exclude, p.name)]


def _perl_pod_dir() -> Path:
    dirs = sorted(Path("/usr/share/perl").glob("5.*/pod"))
    if not dirs:
        raise FileNotFoundError("/usr/share/perl/5.*/pod (install perl-doc)")
    return dirs[-1]


# --- the sets ----------------------------------------------------------------------------------------------

SETS: tuple[QASet, ...] = (
    QASet(
        name="debian",
        packages=("debian-faq", "debian-reference-en", "developers-reference", "maint-guide", "harden-doc"),
        licence="debian-faq: SPI's verbatim-copying permission (modified copies under the same notice); "
        "debian-reference-en, developers-reference, harden-doc: GPL-2(+); maint-guide: GPL-2+/MIT. All allow "
        "redistributing a converted copy with the notices kept; not committed here",
        faqs=lambda: _faq_html("", _glob("/usr/share/doc/debian/FAQ/*.en.html", r"^index\."), 2),
        distractors=lambda: (
            _glob("/usr/share/debian-reference/*.en.html")
            + _glob("/usr/share/developers-reference/*.html")
            + _glob("/usr/share/doc/maint-guide/html/*.en.html")
            + _glob("/usr/share/doc/harden-doc/html/en-US/*.html")
        ),
    ),
    QASet(
        name="perl",
        packages=("perl-doc", "libpod-markdown-perl"),
        licence="perlfaq and perl-doc: the same terms as Perl (Artistic-1 or GPL-1+); redistributable with "
        "the notices kept; not committed here",
        faqs=lambda: [
            (p.stem, split_entries(pod_markdown(p), 2))
            for p in _glob(str(_perl_pod_dir() / "perlfaq*.pod"))
            if re.fullmatch(r"perlfaq\d", p.stem)
        ],
        distractors=lambda: _glob(str(_perl_pod_dir() / "*.pod"), r"^perlfaq\d?\.pod$|delta\.pod$"),
    ),
    QASet(
        name="tools",
        packages=("zsh-doc", "git-doc", "sqlite3-doc"),
        licence="zsh-common docs: the Zsh licence (MIT-like); git-doc: GPL-2; sqlite3-doc: public domain. "
        "Redistributable with the notices kept; not committed here",
        faqs=lambda: (
            _faq_html("zsh-", _glob("/usr/share/doc/zsh-common/html/FAQ0*.html"), 2)
            + _faq_html("", [Path("/usr/share/doc/git-doc/gitfaq.html")], 3, _headings_from("dt.hdlist1", "dd"))
            + _faq_html("sqlite-", [Path("/usr/share/doc/sqlite3/faq.html")], 3, _sqlite_questions)
        ),
        distractors=lambda: (
            _glob("/usr/share/doc/zsh-common/html/*.html", r"FAQ")
            + _glob("/usr/share/doc/git-doc/*.html", r"^gitfaq\.")
            + _glob("/usr/share/doc/sqlite3/*.html", r"^faq\.")
        ),
    ),
)


# --- building ----------------------------------------------------------------------------------------------


def _markdown_of(path: Path) -> str:
    return pod_markdown(path) if path.suffix == ".pod" else html_markdown(path)


def _as_crawled(path: Path, extractor: str) -> str:
    """A distractor page as a crawl would store it: the raw page, navigation included, through `extractor`."""
    if path.suffix == ".pod":
        return pod_markdown(path)
    if extractor == "kit":
        return html_to_markdown(path.read_bytes(), path.stem).markdown
    from bench.extraction import trafilatura_of

    return trafilatura_of(recall=False)(path.read_bytes())


def _ref_name(path: Path) -> str:
    """A readable relative name, unique across the packages: the path below /usr/share, as Markdown."""
    relative = path.relative_to("/usr/share") if path.is_relative_to("/usr/share") else Path(path.name)
    return str(relative.with_suffix(".md")).replace("doc/", "", 1)


def _normalised(text: str) -> str:
    return " ".join(question_text(text).lower().split())


def _is_toc(markdown: str, questions: list[str]) -> bool:
    text = _normalised(markdown)
    return sum(1 for q in questions if len(q) > 20 and q in text) >= 3


def _package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *packages], capture_output=True, text=True, check=False
    )
    return dict(line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)


def build_set(spec: QASet, out: Path, distractor_chars: int, pages: str = "clean") -> dict[str, object]:
    """`pages`: how the distractor pages are written — "clean" (page furniture removed, then the kit's
    extractor: the sets' default), or as crawled through "kit" or "trafilatura". The sample is chosen from the clean
    text either way, so the variants hold the same pages and FAQ entries."""
    target = out / spec.name
    shutil.rmtree(target, ignore_errors=True)
    docs = target / "docs"
    (docs / "faq").mkdir(parents=True)
    rows = []
    for part, entries in spec.faqs():
        for number, entry in enumerate(entries, 1):
            name = f"faq/{part}-{number:02d}.md"
            (docs / name).write_text(entry.answer, encoding="utf-8")
            rows.append({"question": entry.question, "expected_sources": [name]})
    questions = [_normalised(r["question"]) for r in rows]  # type: ignore[arg-type]
    # A deterministic sample that keeps the mix of long and short pages (not the shortest first).
    candidates = sorted(spec.distractors(), key=lambda p: hashlib.sha256(str(p).encode()).hexdigest())
    kept, skipped_toc, used = 0, [], 0
    for path in candidates:
        markdown = _markdown_of(path)
        if _is_toc(markdown, questions):
            skipped_toc.append(str(path))
            continue
        if used + len(markdown) > distractor_chars:
            continue
        (docs / "ref" / _ref_name(path)).parent.mkdir(parents=True, exist_ok=True)
        written = markdown if pages == "clean" else _as_crawled(path, pages)
        (docs / "ref" / _ref_name(path)).write_text(written, encoding="utf-8")
        used += len(markdown)
        kept += 1
    with (target / "qa.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    faq_chars = sum(p.stat().st_size for p in (docs / "faq").iterdir())
    manifest: dict[str, object] = {
        "set": spec.name,
        "packages": _package_versions(spec.packages),
        "licence": spec.licence,
        "questions": len(rows),
        "documents": len(rows) + kept,
        "faq_documents": len(rows),
        "distractors": kept,
        "distractor_candidates": len(candidates),
        "skipped_as_table_of_contents": skipped_toc,
        "faq_chars": faq_chars,
        "distractor_chars": used,
        "distractor_pages": pages,
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--set", action="append", choices=[s.name for s in SETS], dest="sets")
    parser.add_argument("--distractor-chars", type=int, default=DEFAULT_DISTRACTOR_CHARS)
    parser.add_argument(
        "--pages",
        choices=["clean", "kit", "trafilatura"],
        default="clean",
        help="distractor pages: furniture removed (default), or as crawled through the kit's or trafilatura's",
    )
    args = parser.parse_args()
    for spec in SETS:
        if args.sets and spec.name not in args.sets:
            continue
        try:
            m = build_set(spec, args.out, args.distractor_chars, args.pages)
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            sys.exit(f"{spec.name}: {exc} — run scripts/bench-data.sh to install {', '.join(spec.packages)}")
        print(
            f"{spec.name}: {m['questions']} questions, {m['documents']} documents "
            f"({m['faq_documents']} FAQ answers, {m['distractors']} of {m['distractor_candidates']} other pages, "
            f"{len(m['skipped_as_table_of_contents'])} tables of contents left out) -> {args.out / spec.name}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    main()
