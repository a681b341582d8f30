"""Text extraction: every supported format becomes (title, Markdown) with well-kept libraries.

Documents are untrusted: archive-based formats (.docx is a zip) and PDFs are bounded by what they unpack to,
not only by their file size, so a small file cannot take the server's memory and CPU (a decompression bomb).
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from core.config import Settings
from core.errors import IngestError, UnsupportedSource
from core.ingest.plain import plain_inline

logger = logging.getLogger(__name__)

_READ_SIZE = 1 << 16

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
_NOISE_TAGS = ("script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg", "template")


@dataclass(frozen=True)
class Extracted:
    title: str
    markdown: str


@dataclass(frozen=True, kw_only=True)
class Limits:
    """How far a document may unpack (INGEST_MAX_UNCOMPRESSED_MB, INGEST_MAX_COMPRESSION_RATIO,
    INGEST_MAX_PDF_PAGES)."""

    max_uncompressed_bytes: int
    max_compression_ratio: float
    max_pdf_pages: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_uncompressed_bytes=int(settings.max_uncompressed_mb * 1e6),
            max_compression_ratio=settings.max_compression_ratio,
            max_pdf_pages=settings.max_pdf_pages,
        )

    def refuse_size(self, what: str) -> IngestError:
        limit = self.max_uncompressed_bytes / 1e6
        return IngestError(f"refused: {what} unpacks to more than INGEST_MAX_UNCOMPRESSED_MB ({limit:g} MB)")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from bs4 import UnicodeDammit

        guess = UnicodeDammit(data).unicode_markup
        if guess is None:
            raise IngestError("not valid text in any known encoding") from None
        return guess


def _markdown(data: bytes, fallback_title: str, _limits: Limits) -> Extracted:
    text = _decode(data)
    title = ""
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        found = re.search(r"^title:\s*['\"]?(.+?)['\"]?\s*$", front.group(1), re.M)
        title = found.group(1) if found else ""
    if not title:
        h1 = _H1.search(text)
        title = plain_inline(h1.group(1)) if h1 else ""
    return Extracted(title or fallback_title, text)


def _text(data: bytes, fallback_title: str, _limits: Limits) -> Extracted:
    return Extracted(fallback_title, _decode(data))


def html_to_markdown(html: str | bytes, fallback_title: str) -> Extracted:
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(html, "lxml")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_NOISE_TAGS):
        tag.decompose()
    main = soup.find("main") or soup.find("article") or soup.select_one('[role="main"]') or soup.body or soup
    if not title:
        h1 = main.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else fallback_title
    converter = MarkdownConverter(
        heading_style="ATX", bullets="-", escape_underscores=False, code_language_callback=_code_language
    )
    markdown = converter.convert_soup(main)
    return Extracted(title, re.sub(r"\n{3,}", "\n\n", markdown).strip() + "\n")


def _code_language(el: Any) -> str:
    """The language from `<pre class="language-x">` or the usual `<pre><code class="language-x">`."""
    code = el.find("code")
    classes = list(el.get("class") or []) + list((code.get("class") if code is not None else None) or [])
    for cls in classes:
        for prefix in ("language-", "lang-"):
            if cls.startswith(prefix):
                return str(cls[len(prefix) :])
    return ""


def _html(data: bytes, fallback_title: str, _limits: Limits) -> Extracted:
    return html_to_markdown(data, fallback_title)


def _rst(data: bytes, fallback_title: str, _limits: Limits) -> Extracted:
    from docutils.core import publish_parts

    # No title promotion: a lone section would otherwise vanish into the document subtitle.
    # No file inclusion or raw HTML: documents are untrusted input.
    parts = publish_parts(
        _decode(data),
        writer="html5",
        settings_overrides={
            "report_level": 5,
            "halt_level": 5,
            "doctitle_xform": False,
            "sectsubtitle_xform": False,
            "initial_header_level": 1,
            "file_insertion_enabled": False,
            "raw_enabled": False,
        },
    )
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(f"<html><body>{parts['body']}</body></html>", "lxml")
    for literal in soup.select("span.literal"):  # docutils' inline literals → Markdown code spans
        literal.name = "code"
    for block in soup.select("pre.literal-block"):  # class="code bash literal-block" → language-bash
        languages = [c for c in block.get("class") or [] if c not in ("code", "literal-block")]
        block["class"] = f"language-{languages[0]}" if languages else ""
    return html_to_markdown(str(soup), fallback_title)


def _pdf(data: bytes, fallback_title: str, limits: Limits) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise IngestError("the PDF is encrypted; decrypt it first")
        count = len(reader.pages)
        if count > limits.max_pdf_pages:
            pages_limit = limits.max_pdf_pages
            raise IngestError(f"refused: the PDF has {count} pages, over INGEST_MAX_PDF_PAGES ({pages_limit})")
        title = (reader.metadata.title if reader.metadata else None) or fallback_title
        # pypdf caps each decompressed stream itself; the text of all pages together is bounded here.
        pages: list[str] = []
        size = 0
        for i, page in enumerate(reader.pages, 1):
            text = (page.extract_text() or "").strip()
            size += len(text)
            if size > limits.max_uncompressed_bytes:
                raise limits.refuse_size("the PDF's text")
            # Page headings make the page number the section, so citations point at a page.
            pages.append(f"## Page {i}\n\n{text}")
    except LimitReachedError as exc:
        raise IngestError(f"refused: the PDF has a stream that unpacks too far ({exc})") from exc
    except PyPdfError as exc:
        raise IngestError(f"unreadable PDF ({exc})") from exc
    return Extracted(str(title), "\n\n".join(pages))


def _vetted_archive(data: bytes, limits: Limits) -> bytes:
    """The .docx rebuilt from members read within the limits, for python-docx to parse.

    Declared sizes are checked first, then every member is inflated in small reads, which zipfile stops at the
    declared size. python-docx is never handed the original: reading a member whole, zipfile inflates all of its
    compressed stream before cutting it to the declared size, so a member lying about its size (with a CRC that
    matches the declared prefix) would still inflate without bound."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            declared = sum(info.file_size for info in members)
            if declared > limits.max_uncompressed_bytes:
                raise limits.refuse_size("the .docx")
            ratio = declared / max(len(data), 1)
            if ratio > limits.max_compression_ratio:
                raise IngestError(
                    f"refused: the .docx unpacks {ratio:.0f} times its size, "
                    f"over INGEST_MAX_COMPRESSION_RATIO ({limits.max_compression_ratio:g})"
                )
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as vetted:
                for info in {m.filename: m for m in members if not m.is_dir()}.values():  # the last of a name wins
                    vetted.writestr(info.filename, _read_member(archive, info))
    except (zipfile.BadZipFile, zlib.error, ValueError, RuntimeError, NotImplementedError, EOFError) as exc:
        raise IngestError(f"unreadable .docx ({exc.__class__.__name__})") from exc
    return out.getvalue()


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    chunks: list[bytes] = []
    with archive.open(info) as member:
        while chunk := member.read(_READ_SIZE):  # each read inflates at most about _READ_SIZE bytes
            chunks.append(chunk)
    return b"".join(chunks)


def _docx(data: bytes, fallback_title: str, limits: Limits) -> Extracted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml import etree

    vetted = _vetted_archive(data, limits)
    try:
        document = docx.Document(io.BytesIO(vetted))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, etree.XMLSyntaxError) as exc:
        raise IngestError(f"unreadable .docx ({exc.__class__.__name__})") from exc
    title = document.core_properties.title or ""
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            rows = [[cell.text.strip().replace("|", "\\|") for cell in row.cells] for row in block.rows]
            if rows:
                lines.append("| " + " | ".join(rows[0]) + " |")
                lines.append("|" + " --- |" * len(rows[0]))
                lines.extend("| " + " | ".join(r) + " |" for r in rows[1:])
                lines.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        if style == "Title":
            title = title or text
            lines.append(f"# {text}\n")
        elif style.startswith("Heading") and style[-1:].isdigit():
            lines.append(f"{'#' * min(int(style[-1]) + 1, 6)} {text}\n")
        elif "List" in style:
            lines.append(f"- {text}")
        else:
            lines.append(f"{text}\n")
    return Extracted(title or fallback_title, "\n".join(lines))


EXTRACTORS: dict[str, Callable[[bytes, str, Limits], Extracted]] = {
    ".md": _markdown,
    ".markdown": _markdown,
    ".txt": _text,
    ".rst": _rst,
    ".html": _html,
    ".htm": _html,
    ".pdf": _pdf,
    ".docx": _docx,
}

CONTENT_TYPES = {
    "text/html": ".html",
    "application/xhtml+xml": ".html",
    "text/markdown": ".md",
    "text/x-markdown": ".md",
    "text/plain": ".txt",
    "text/x-rst": ".rst",
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


def suffix_of(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def check_type(name: str) -> str:
    """The suffix of a file the kit can ingest, or UnsupportedSource naming the types it can."""
    suffix = suffix_of(name)
    if suffix not in EXTRACTORS:
        supported = ", ".join(sorted(EXTRACTORS))
        raise UnsupportedSource(f"{name}: unsupported file type {suffix or '(none)'!r}; supported: {supported}")
    return suffix


def extract(data: bytes, suffix: str, fallback_title: str, limits: Limits) -> Extracted:
    extractor = EXTRACTORS.get(suffix)
    if extractor is None:
        supported = ", ".join(sorted(EXTRACTORS))
        raise UnsupportedSource(f"unsupported file type {suffix or '(none)'!r}; supported: {supported}")
    return extractor(data, fallback_title, limits)
