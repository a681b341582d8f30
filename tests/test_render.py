"""Markdown → Slack mrkdwn / Telegram HTML / Discord markdown / WhatsApp, citations, and splitting at message limits."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from bots.render import DISCORD, SLACK, TELEGRAM, WHATSAPP, Dialect, render, split
from core.answer.citations import final_markdown
from core.types import Citation, Done

SAMPLE = (
    "# Setup\n\nRun **kestrel** with *care* and `--port 8470` ~~never~~ [docs](https://kestrel.example/docs) "
    "<script>alert(1)</script> & a < b > c.\n\n- one\n- two\n  1. nested\n\n```bash\nkestrel start --a<b && echo\n```"
)


def test_telegram_html_escapes_text_and_code() -> None:
    out = render(SAMPLE, TELEGRAM)
    assert out.startswith(
        "<b>Setup</b>\n\nRun <b>kestrel</b> with <i>care</i> and <code>--port 8470</code> <s>never</s>"
    )
    assert '<a href="https://kestrel.example/docs">docs</a>' in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a &lt; b &gt; c." in out
    assert "• one\n• two\n    1. nested" in out
    assert '<pre><code class="language-bash">kestrel start --a&lt;b &amp;&amp; echo</code></pre>' in out
    assert "<script>" not in out


def test_slack_mrkdwn() -> None:
    out = render(SAMPLE, SLACK)
    assert out.startswith(
        "*Setup*\n\nRun *kestrel* with _care_ and `--port 8470` ~never~ <https://kestrel.example/docs|docs>"
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a &lt; b &gt; c." in out
    assert "```\nkestrel start --a&lt;b &amp;&amp; echo\n```" in out


def test_discord_markdown_escapes_literal_markup_and_suppresses_embeds() -> None:
    out = render("Use **bold** but keep 2 * 3 and a_b_c literal. [site](https://x.example/a_b)", DISCORD)
    assert out == r"Use **bold** but keep 2 \* 3 and a\_b\_c literal. [site](<https://x.example/a_b>)"
    assert render("```py\nprint('```')\n```", DISCORD) == "```py\nprint('`\u200b``')\n```"


def test_whatsapp_formatting_has_no_link_markup() -> None:
    out = render(SAMPLE, WHATSAPP)
    assert out.startswith(
        "*Setup*\n\nRun *kestrel* with _care_ and `--port 8470` ~never~ docs: https://kestrel.example/docs"
    )
    assert "<script>alert(1)</script> & a < b > c." in out  # WhatsApp shows text as it is: nothing to escape
    assert "• one\n• two\n    1. nested" in out
    assert "```\nkestrel start --a<b && echo\n```" in out
    assert render("<https://kestrel.example>", WHATSAPP) == "https://kestrel.example"
    assert "](" not in out


@pytest.mark.parametrize("dialect", [SLACK, TELEGRAM, DISCORD, WHATSAPP], ids=lambda d: d.name)
def test_unsafe_links_are_never_links(dialect: Dialect) -> None:
    link = render("[ok](https://a.example)", dialect)
    out = render("[click](javascript:alert(1)) ![x](data:image/png;base64,AAA) [f](file:///etc/passwd)", dialect)
    assert "https://a.example" in link and "click" in out
    for marker in ("<a ", "<javascript", "<data", "<file", "](<"):
        assert marker not in out


def done(cited: bool = True) -> Done:
    citations = (
        Citation(n=1, title="Install", source="https://kestrel.example/install", section="Ports", snippet=""),
        Citation(n=2, title="Config [beta]", source="/srv/docs/config.md", section="", snippet=""),
    )
    return Done(answer_id="a1", text="Port 8470 [1].", citations=citations, cited=cited, fallback=False)


def test_sources_link_web_pages_and_never_show_server_paths() -> None:
    md = final_markdown(done())
    out = render(md, TELEGRAM)
    assert '[1] <a href="https://kestrel.example/install">Install › Ports</a>' in out
    assert "[2] Config (beta)" in out and "/srv/docs" not in out
    assert "<b>Sources:</b>" in out
    assert "Sources consulted" in render(final_markdown(done(cited=False)), SLACK)
    assert "<https://kestrel.example/install|Install › Ports>" in render(md, SLACK)
    # WhatsApp: a numbered list of URLs, no link markup.
    assert "*Sources:*\n[1] Install › Ports: https://kestrel.example/install\n[2] Config (beta)" in render(md, WHATSAPP)


class _Balanced(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


LONG = "\n\n".join(
    [f"Paragraph {i}: " + " ".join(f"**word{j}** & <x>" for j in range(40)) for i in range(12)]
    + ["```python\n" + "\n".join(f"print({i})  # line <{i}>" for i in range(300)) + "\n```"]
    + ["x" * 9000]
)


@pytest.mark.parametrize(
    ("dialect", "limit"), [(TELEGRAM, 4096), (DISCORD, 2000), (SLACK, 3000), (WHATSAPP, 4096)], ids=str
)
def test_split_respects_the_limit_and_keeps_every_part_well_formed(dialect: Dialect, limit: int) -> None:
    parts = split(LONG, dialect, limit)
    assert len(parts) > 3
    assert all(0 < len(p) <= limit for p in parts)
    for part in parts:
        assert part.count("```") % 2 == 0  # code fences never left open
        if dialect is TELEGRAM:
            checker = _Balanced()
            checker.feed(part)
            assert checker.stack == []
    joined = "".join(parts)
    # Nothing lost: every paragraph, every code line and the whole long token arrive.
    assert all(f"Paragraph {i}:" in joined for i in range(12))
    assert all(f"print({i})" in joined for i in range(300))
    assert joined.count("x") >= 9000


def test_short_text_is_one_part_and_empty_is_none() -> None:
    assert split("Hello **there**", TELEGRAM, 4096) == ["Hello <b>there</b>"]
    assert split("", TELEGRAM, 4096) == []
    assert re.fullmatch(r"\*a\*", split("**a**", SLACK, 10)[0])


def test_telegram_limit_counts_utf16_units_so_emoji_never_make_a_message_too_long() -> None:
    text = "\n\n".join("🚀 " * 700 for _ in range(4))
    parts = split(text, TELEGRAM, 4096)
    assert len(parts) >= 2
    assert all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in parts)
    assert sum(p.count("🚀") for p in parts) == 2800
