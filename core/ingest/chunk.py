"""Markdown → chunks that follow headings and paragraphs.

Every extractor produces Markdown, so there is one chunker. Blocks come from markdown-it's parse (so a
`#` inside a code fence is not a heading); a heading starts a new chunk, blocks are packed up to the size
limit, and an oversized block is split at sentences (prose) or lines (code, re-fenced so each part still
renders). Chunks that end on the size limit carry a little overlap into the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.ingest.plain import PARSER, inline_words

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
SECTION_SEP = " › "


@dataclass(frozen=True)
class Block:
    text: str
    code: bool = False
    heading: bool = False


@dataclass(frozen=True)
class Piece:
    section: str
    text: str


def _blocks(markdown: str) -> list[tuple[int, str, Block]]:
    """Top-level blocks as (heading level or 0, heading text, block); headings carry their source line."""
    lines = markdown.splitlines()
    out: list[tuple[int, str, Block]] = []
    tokens = PARSER.parse(markdown)
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        source = "\n".join(lines[tok.map[0] : tok.map[1]]).strip("\n")
        if not source.strip():
            continue
        if tok.type == "heading_open":
            # The heading as read ("Install" from "Install[¶](#install)"): it names the section in citations.
            title = inline_words(tokens[i + 1])
            out.append((int(tok.tag[1]), title, Block(source, heading=True)))
        else:
            out.append((0, "", Block(source, code=tok.type in ("fence", "code_block"))))
    return out


def _split_prose(text: str, size: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        while len(sentence) > size:  # one enormous sentence: cut at a word boundary
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > size // 2 else size
            if current:
                parts.append(current)
                current = ""
            parts.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if current and len(current) + 1 + len(sentence) > size:
            parts.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        parts.append(current)
    return parts


def _split_code(text: str, size: int) -> list[str]:
    lines = text.split("\n")
    fence = lines[0] if lines[0].lstrip().startswith(("```", "~~~")) else ""
    close = fence.strip()[:3] if fence else ""
    body = (
        lines[1:-1]
        if fence and len(lines) > 1 and lines[-1].strip().startswith(close)
        else lines[1:]
        if fence
        else lines
    )
    budget = size - len(fence) - len(close) - 2
    parts: list[str] = []
    current: list[str] = []
    length = 0
    for line in body:
        line = line[:budget]
        if current and length + len(line) + 1 > budget:
            parts.append("\n".join(current))
            current, length = [], 0
        current.append(line)
        length += len(line) + 1
    if current:
        parts.append("\n".join(current))
    return [f"{fence}\n{p}\n{close}" if fence else p for p in parts]


def _tail(text: str, overlap: int) -> str:
    if overlap <= 0 or len(text) <= overlap:
        return ""
    tail = text[-overlap:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < overlap // 2 else tail


def chunk_markdown(markdown: str, *, size: int, overlap: int, merge_below: int = 0) -> list[Piece]:
    """`merge_below`: a heading starts a new chunk only once the current one has this many characters, so a
    run of short sections becomes one chunk (labelled with the first one's section) instead of many tiny ones
    that embed little more than their heading."""
    pieces: list[Piece] = []
    trail: list[tuple[int, str]] = []
    section = ""
    start_section: str | None = None  # the section the chunk being built began in
    buf: list[Block] = []
    carried = False  # buf holds only the overlap from the previous chunk

    def flush(carry: bool) -> None:
        nonlocal buf, carried, start_section
        if buf and not carried:
            pieces.append(Piece(section if start_section is None else start_section, "\n\n".join(b.text for b in buf)))
        tail = _tail(buf[-1].text, overlap) if carry and buf and not buf[-1].code else ""
        buf, carried = ([Block(tail)], True) if tail else ([], False)
        start_section = None

    def length() -> int:
        return sum(len(b.text) + 2 for b in buf)

    for level, heading, block in _blocks(markdown):
        # A heading right under a heading stays with it.
        if level and not all(b.heading for b in buf) and (carried or length() >= merge_below):
            flush(carry=False)
        if level:
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, heading)]
            section = SECTION_SEP.join(t for _, t in trail if t)  # an anchor-only heading has no words
        parts = (
            [block]
            if len(block.text) <= size
            else [Block(p, block.code) for p in (_split_code if block.code else _split_prose)(block.text, size)]
        )
        for part in parts:
            # Headings stay with what follows them, even if that runs a heading's length over the limit.
            if buf and length() + len(part.text) > size and not all(b.heading for b in buf):
                flush(carry=True)
            if carried and length() + len(part.text) > size:
                buf = []  # the overlap would push this part over the limit
            if carried or all(b.heading for b in buf):  # the chunk's first content: it is labelled with this
                start_section = section
            buf.append(part)
            carried = False
    flush(carry=False)
    return pieces
