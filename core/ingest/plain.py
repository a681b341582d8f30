"""Markdown → the words a reader sees: link text without its URL, no emphasis marks, table pipes or heading
hashes. Headings become section names this way, and chunks are embedded this way: a small embedder reads 256
tokens, and markup (a Sphinx page's "[¶](#id "Permalink to this heading")", a table of popcon links) took a
tenth of them on the third-party sets and carried no meaning (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# A heading's permalink (Sphinx "¶", GitHub/MkDocs "#", "§", "🔗", linking to "…#id"): not words of the heading.
_ANCHOR_GLYPHS = frozenset({"¶", "#", "§", "🔗"})


def _shown(text: str, href: str) -> bool:
    """Whether a link's text is words to keep: not a permalink glyph, not its own URL written out (an autolink
    <https://…> or markdownify's [https://…](https://…)), which is many word pieces of no meaning. An email
    address is kept: people search for it."""
    if "#" in href and text.strip() in _ANCHOR_GLYPHS:
        return False
    return href.startswith("mailto:") or text not in (href, PARSER.normalizeLinkText(href))


def _inline(children: Sequence[Token]) -> str:
    out: list[str] = []
    link: list[str] | None = None  # the text of the link being read, with its href
    href = ""
    for child in children:
        if child.type == "link_open":
            link, href = [], str(child.attrs.get("href", ""))
        elif child.type == "link_close" and link is not None:
            text = "".join(link)
            if _shown(text, href):
                out.append(text)
            link = None
        else:
            if child.type in ("text", "code_inline"):
                piece = child.content
            elif child.type == "image":
                piece = child.content  # its alt text
            elif child.type in ("softbreak", "hardbreak"):
                piece = "\n"
            else:
                continue  # emphasis and strikethrough marks, inline HTML tags
            (out if link is None else link).append(piece)
    return "".join(out)


def inline_words(inline: Token) -> str:
    """An inline token already parsed (a heading's) as plain text on one line."""
    return " ".join(_inline(inline.children or []).split())


def plain_inline(markdown: str) -> str:
    """One line of Markdown (a heading) as plain text."""
    return inline_words(PARSER.parseInline(markdown)[0])


def plain_text(markdown: str) -> str:
    """A Markdown passage as plain text: blocks on their own lines, a table row's cells on one line, code kept
    as written."""
    lines: list[str] = []
    row: list[str] | None = None  # the cells of the table row being read
    for token in PARSER.parse(markdown):
        if token.type == "inline":
            (lines if row is None else row).append(_inline(token.children or []).strip())
        elif token.type in ("fence", "code_block"):
            lines.append(token.content.rstrip("\n"))
        elif token.type == "html_block":
            lines.append(_html_text(token.content))
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            lines.append(" ".join(cell for cell in row if cell))
            row = None
    return "\n".join(line for line in lines if line)


def _html_text(html: str) -> str:
    """An HTML block's text (a <details> summary, a centred paragraph), without its tags and comments."""
    from bs4 import BeautifulSoup  # here: HTML blocks are rare in Markdown, and bs4 is slow to import

    return BeautifulSoup(html, "html.parser").get_text(" ", strip=True)
