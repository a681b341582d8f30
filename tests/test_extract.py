import io

import docx
import pytest
from fpdf import FPDF

from core.errors import IngestError, UnsupportedSource
from core.extract import extract


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
