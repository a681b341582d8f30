"""HTML main-content extraction compared on real documentation pages: the kit's (core.ingest.extract:
BeautifulSoup, noise tags dropped, <main>/<article> if any, markdownify) against trafilatura.

    python -m bench.extraction        # needs the Debian docs of scripts/bench-data.sh, and trafilatura

Pages: the HTML of debian-reference, maint-guide (DocBook), harden-doc (Publican), developers-reference (Sphinx)
and git-doc (AsciiDoc) under /usr/share/doc. Each set names its theme's navigation (the boilerplate); measured
against the page itself, per extractor:
  boilerplate  share of the navigation's lines (those not also in the content, >= 6 letters) found in the output
  headings     share of the content's <h1>–<h6> kept as Markdown headings (and kept at all, as text)
  content      share of the content's paragraphs, list items, cells and <pre> blocks (>= 20 letters) kept
  code fenced  share of <pre> blocks kept as fenced code (a command must stay a code block)
  speed        pages per second, one thread
Prints a table and writes bench/out/extraction.json.
"""

from __future__ import annotations

import glob
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

from bench._common import machine, print_table, save
from core.ingest.extract import html_to_markdown

SETS = {  # name: (glob, CSS selector of the theme's navigation, at most this many pages)
    "debian-reference": ("/usr/share/doc/debian-reference-common/docs/*.en.html", ".navheader, .navfooter", 40),
    "maint-guide": ("/usr/share/doc/maint-guide/html/*.en.html", ".navheader, .navfooter", 40),
    "harden-doc": ("/usr/share/doc/harden-doc/html/en-US/*.html", "ul.docnav", 40),
    "developers-reference": (
        "/usr/share/doc/developers-reference/docs/*.html",
        ".sphinxsidebar, .related, .footer, [role=navigation]",
        40,
    ),
    "git-doc": ("/usr/share/doc/git-doc/git-*.html", "#footer", 40),
}
_CONTENT = ("p", "li", "td", "pre", "dd")
_LINK = re.compile(r"\]\([^)]*\)")  # a Markdown link's target: not part of the text compared


def norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def current(data: bytes) -> str:
    return html_to_markdown(data, "").markdown


def trafilatura_of(*, recall: bool) -> Callable[[bytes], str]:
    import trafilatura

    def extract(data: bytes) -> str:
        out = trafilatura.extract(
            data,
            output_format="markdown",
            include_formatting=True,
            include_tables=True,
            include_links=False,
            include_comments=False,
            favor_recall=recall,
        )
        return out or ""

    return extract


def truth(data: bytes, navigation: str) -> dict[str, Any]:
    """What the page holds: its navigation's own lines, and (navigation removed) its headings, content, code."""
    soup = BeautifulSoup(data, "lxml")
    for tag in soup(["script", "style"]):
        tag.decompose()
    nav = soup.select(navigation)
    nav_lines = {norm(line) for el in nav for line in el.get_text("\n").splitlines()}
    for el in nav:
        el.decompose()
    content_text = norm(soup.get_text(" "))
    headings = [norm(h.get_text(" ")) for h in soup.find_all(re.compile(r"^h[1-6]$"))]
    blocks = [norm(el.get_text(" ")) for el in soup.find_all(_CONTENT) if not el.find(_CONTENT)]
    return {
        "nav": [n for n in nav_lines if len(n) >= 6 and n not in content_text],
        "headings": [h for h in headings if h],
        "blocks": [b for b in blocks if len(b) >= 20],
        "pre": len(soup.find_all("pre")),
    }


def score(out: str, page: dict[str, Any]) -> dict[str, int]:
    text = norm(_LINK.sub("]", out))
    heading_lines = {norm(line) for line in _LINK.sub("]", out).splitlines() if line.lstrip().startswith("#")}
    return {
        "nav": len(page["nav"]),
        "nav_left": sum(n in text for n in page["nav"]),
        "headings": len(page["headings"]),
        "headings_md": sum(any(h in line for line in heading_lines) for h in page["headings"]),
        "headings_text": sum(h in text for h in page["headings"]),
        "blocks": len(page["blocks"]),
        "blocks_kept": sum(b[:40] in text for b in page["blocks"]),
        "pre": page["pre"],
        "pre_fenced": min(page["pre"], out.count("```") // 2),
    }


def main() -> None:
    extractors = {
        "current": current,
        "trafilatura": trafilatura_of(recall=False),
        "trafilatura (favor_recall)": trafilatura_of(recall=True),
    }
    warnings.filterwarnings("ignore", category=XMLParsedAsHTMLWarning)  # XHTML pages: parsed as HTML on purpose
    pages: list[tuple[str, bytes, dict[str, Any]]] = []
    for name, (pattern, navigation, most) in SETS.items():
        for path in sorted(glob.glob(pattern))[:most]:
            data = Path(path).read_bytes()
            pages.append((name, data, truth(data, navigation)))
    if not pages:
        raise SystemExit("no pages: run `bash scripts/bench-data.sh` first (installs the Debian docs with apt)")
    results: dict[str, dict[str, Any]] = {}
    for label, extract in extractors.items():
        totals: dict[str, dict[str, int]] = {}
        seconds, chars = 0.0, 0
        for name, data, page in pages:
            started = time.perf_counter()
            out = extract(data)
            seconds += time.perf_counter() - started
            chars += len(out)
            for key, value in score(out, page).items():
                for where in (name, "all"):
                    totals.setdefault(where, {}).setdefault(key, 0)
                    totals[where][key] += value
        results[label] = {"totals": totals, "seconds": seconds, "pages_per_second": len(pages) / seconds}
        results[label]["chars"] = chars

    def pct(t: dict[str, int], part: str, whole: str) -> str:
        return f"{100 * t[part] / t[whole]:.0f}%" if t[whole] else "–"

    rows = [["extractor", "set", "boilerplate left", "headings (#)", "(text)", "content", "code fenced", "pages/s"]]
    for label, r in results.items():
        for where in (*SETS, "all"):
            t = r["totals"][where]
            rows.append(
                [
                    label,
                    where,
                    pct(t, "nav_left", "nav"),
                    pct(t, "headings_md", "headings"),
                    pct(t, "headings_text", "headings"),
                    pct(t, "blocks_kept", "blocks"),
                    pct(t, "pre_fenced", "pre"),
                    f"{r['pages_per_second']:.1f}" if where == "all" else "",
                ]
            )
    print_table(f"{len(pages)} pages ({', '.join(SETS)}); {machine()}", rows)
    save("extraction", {"machine": machine(), "pages": len(pages), **results})


if __name__ == "__main__":
    main()
