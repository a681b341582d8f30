import io
import struct
import tracemalloc
import zipfile
import zlib

import docx
import pytest
from fpdf import FPDF

from core.config import Settings
from core.errors import IngestError, UnsupportedSource
from core.ingest.extract import Extracted, Limits
from core.ingest.extract import extract as extract_with

DEFAULTS = Limits.from_settings(Settings(_env_file=None))


def extract(data: bytes, suffix: str, title: str, limits: Limits = DEFAULTS) -> Extracted:
    return extract_with(data, suffix, title, limits)


def make_pdf(pages: list[str], title: str = "Field Manual") -> bytes:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Operations Handbook", level=0)
    document.add_heading("Backups", level=1)
    document.add_paragraph("Nightly backups run at 02:00 UTC.")
    document.add_paragraph("Keep seven copies", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Tier", "Retention"
    table.cell(1, 0).text, table.cell(1, 1).text = "gold", "30 days"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_markdown_front_matter_title() -> None:
    doc = extract(b"---\ntitle: Setup Guide\nauthor: x\n---\n# Other\n\nBody\n", ".md", "f.md")
    assert doc.title == "Setup Guide"
    assert doc.markdown.startswith("# Other")


def test_markdown_title_from_h1_else_file_name() -> None:
    assert extract(b"Intro\n\n# Real Title\n", ".md", "f.md").title == "Real Title"
    assert extract(b"no heading", ".md", "f.md").title == "f.md"
    assert extract(b'# *Real* [Title](x.html)[\xc2\xb6](#t "Permalink")\n', ".md", "f.md").title == "Real Title"
    assert extract(b"# [\xc2\xb6](#t)\n\nBody\n", ".md", "f.md").title == "f.md"  # an anchor is not a title


def test_text_in_legacy_encoding() -> None:
    doc = extract("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e recipe, served warm.".encode("latin-1"), ".txt", "menu.txt")
    assert "Café" in doc.markdown and doc.title == "menu.txt"


def test_html_strips_boilerplate_and_keeps_structure() -> None:
    html = b"""<html><head><title>Webhooks</title><script>var x=1</script></head><body>
    <nav>Home | Docs</nav><main><h1>Webhooks</h1><p>Kestrel posts JSON.</p>
    <pre><code class="language-bash">curl -X POST localhost</code></pre></main>
    <footer>(c) 2026</footer></body></html>"""
    doc = extract(html, ".html", "w.html")
    assert doc.title == "Webhooks"
    assert "# Webhooks" in doc.markdown and "```bash" in doc.markdown
    assert all(noise not in doc.markdown for noise in ("Home | Docs", "(c) 2026", "var x"))


def test_rst_sections_and_code() -> None:
    rst = (
        b"Monitoring\n==========\n\nMetrics\n-------\n\nScrape port 9464.\n\n"
        b".. code-block:: bash\n\n   curl :9464/metrics\n\nThe ``kestrel_jobs_total`` counter.\n"
    )
    doc = extract(rst, ".rst", "m.rst")
    assert doc.title == "Monitoring"
    assert "## Metrics" in doc.markdown or "# Metrics" in doc.markdown
    assert "```bash\ncurl :9464/metrics\n```" in doc.markdown
    assert "The `kestrel_jobs_total` counter." in doc.markdown


def test_pdf_pages_become_sections() -> None:
    doc = extract(make_pdf(["Engines need oil.", "Tyres need air at 2.4 bar."]), ".pdf", "m.pdf")
    assert doc.title == "Field Manual"
    assert "## Page 2" in doc.markdown and "2.4 bar" in doc.markdown


def test_docx_headings_lists_and_tables() -> None:
    doc = extract(make_docx(), ".docx", "h.docx")
    assert doc.title == "Operations Handbook"
    assert "## Backups" in doc.markdown
    assert "- Keep seven copies" in doc.markdown
    assert "| gold | 30 days |" in doc.markdown


def test_unsupported_type() -> None:
    with pytest.raises(UnsupportedSource, match=r"unsupported file type '\.exe'"):
        extract(b"MZ", ".exe", "x.exe")


@pytest.mark.parametrize("suffix", [".pdf", ".docx"])
def test_corrupt_binary_documents(suffix: str) -> None:
    with pytest.raises(IngestError, match="unreadable"):
        extract(b"this is not a real document", suffix, "broken" + suffix)


# --- decompression bombs: bounded by what a document unpacks to, not only by its file size -----------------


def docx_with_member(name: str, data: bytes) -> bytes:
    """A real .docx (python-docx) with one member added or replaced, compressed."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(make_docx())) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in source.infolist():
            if info.filename != name:
                bomb.writestr(info, source.read(info))
        bomb.writestr(name, data)
    return out.getvalue()


def test_docx_bomb_is_refused_before_parsing() -> None:
    bomb = docx_with_member("word/padding.xml", b" " * 18_000_000)  # the reported case: ~18 MB from tens of KB
    assert len(bomb) < 100_000
    with pytest.raises(IngestError, match=r"refused: the \.docx unpacks \d+ times its size, over INGEST_MAX_COMP"):
        extract(bomb, ".docx", "bomb.docx")
    lenient = Limits(max_uncompressed_bytes=10_000_000, max_compression_ratio=1e9, max_pdf_pages=10)
    with pytest.raises(
        IngestError, match=r"refused: the \.docx unpacks to more than INGEST_MAX_UNCOMPRESSED_MB \(10 MB"
    ):
        extract(bomb, ".docx", "bomb.docx", lenient)
    assert "## Backups" in extract(make_docx(), ".docx", "fine.docx", lenient).markdown  # a normal one still reads


@pytest.mark.parametrize("crc_matches_prefix", [False, True])
def test_docx_member_longer_than_declared_is_not_inflated(crc_matches_prefix: bool) -> None:
    """A member that declares 1,000 bytes over a 100 MB stream: read whole, zipfile would inflate all of it
    before cutting it to size (and with a CRC forged for those 1,000 bytes it would not even fail)."""
    content = b'<?xml version="1.0"?><w:document ' + b" " * 100_000_000
    data = bytearray(docx_with_member("word/document.xml", content))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        lying = [i for i in archive.infolist() if i.filename == "word/document.xml"][-1]
    central = bytes(data).rindex(b"PK\x01\x02")  # its central directory entry, written last
    crc = zlib.crc32(content[:1000]) if crc_matches_prefix else lying.CRC
    for header, crc_at, size_at in ((lying.header_offset, 14, 22), (central, 16, 24)):
        struct.pack_into("<I", data, header + crc_at, crc)
        struct.pack_into("<I", data, header + size_at, 1000)
    tracemalloc.start()
    try:
        with pytest.raises(IngestError, match=r"unreadable \.docx \((BadZipFile|XMLSyntaxError)\)"):
            extract(bytes(data), ".docx", "lying.docx")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_pdf_over_the_page_limit_is_refused() -> None:
    pdf = make_pdf(["One.", "Two.", "Three."])
    strict = Limits(max_uncompressed_bytes=10_000_000, max_compression_ratio=100, max_pdf_pages=2)
    with pytest.raises(IngestError, match=r"refused: the PDF has 3 pages, over INGEST_MAX_PDF_PAGES \(2\)"):
        extract(pdf, ".pdf", "long.pdf", strict)
    tiny = Limits(max_uncompressed_bytes=5, max_compression_ratio=100, max_pdf_pages=10)
    with pytest.raises(IngestError, match=r"refused: the PDF's text unpacks to more than INGEST_MAX_UNCOMPRESSED_MB"):
        extract(pdf, ".pdf", "wordy.pdf", tiny)
    assert "## Page 3" in extract(pdf, ".pdf", "ok.pdf").markdown
