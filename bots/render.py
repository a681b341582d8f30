"""The core speaks Markdown; each chat platform gets its own dialect: Slack mrkdwn, Telegram HTML, Discord,
WhatsApp, Teams.

One renderer walks markdown-it's syntax tree and asks a small `Dialect` how to spell each element, so the
three platforms share the parsing, the list/table/quote layout and the splitting at message limits. Raw HTML
in model output is shown as text, never passed through. Splitting happens on the Markdown (between blocks,
then lines, then words), and every part is rendered on its own, so no part ever opens a tag or a code fence
that another part closes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark", {"html": True}).enable(["strikethrough", "table"])
_SAFE_SCHEMES = {"http", "https", "mailto"}


@dataclass(frozen=True, kw_only=True)
class Dialect:
    name: str
    escape: Callable[[str], str]
    bold: Callable[[str], str]
    italic: Callable[[str], str]
    strike: Callable[[str], str]
    code: Callable[[str], str]
    pre: Callable[[str, str], str]  # (code, language)
    link: Callable[[str, str], str]  # (text, url); text already rendered
    quote: Callable[[str], str]
    length: Callable[[str], int] = len  # how the platform counts a message against its limit


def _utf16_length(text: str) -> int:
    # Telegram counts UTF-16 code units (an emoji is two); counting the HTML source bounds the visible text.
    return len(text.encode("utf-16-le")) // 2


def _escape_mrkdwn(text: str) -> str:
    # Slack asks for exactly these three to be escaped; its formatting characters have no escape at all.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(text: str, url: str) -> str:
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{text}>" if text != _escape_mrkdwn(url) else f"<{url}>"


def _quote_lines(prefix: str) -> Callable[[str], str]:
    return lambda text: "\n".join(f"{prefix}{line}" for line in text.split("\n"))


def _fence(code: str, language: str) -> str:
    # Slack ignores a language after the fence (it would show as code); Discord highlights it.
    return f"```{language}\n{code.rstrip(chr(10))}\n```"


SLACK = Dialect(
    name="slack",
    escape=_escape_mrkdwn,
    bold=lambda s: f"*{s}*",
    italic=lambda s: f"_{s}_",
    strike=lambda s: f"~{s}~",
    code=lambda s: f"`{s}`",
    pre=lambda code, _lang: _fence(_escape_mrkdwn(code), ""),
    link=_slack_link,
    quote=_quote_lines("> "),
)


def _tg_escape(text: str) -> str:
    return html.escape(text, quote=False)


def _tg_pre(code: str, language: str) -> str:
    body = _tg_escape(code.rstrip("\n"))
    if language:
        return f'<pre><code class="language-{html.escape(language)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


TELEGRAM = Dialect(
    name="telegram",
    escape=_tg_escape,
    bold=lambda s: f"<b>{s}</b>",
    italic=lambda s: f"<i>{s}</i>",
    strike=lambda s: f"<s>{s}</s>",
    code=lambda s: f"<code>{_tg_escape(s)}</code>",
    pre=_tg_pre,
    link=lambda text, url: f'<a href="{html.escape(url)}">{text}</a>',
    quote=lambda s: f"<blockquote>{s}</blockquote>",
    length=_utf16_length,
)

_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]()-])")


def _discord_code(text: str) -> str:
    ticks = "``" if "`" in text else "`"
    return f"{ticks}{text}{ticks}"


DISCORD = Dialect(
    name="discord",
    escape=lambda s: _DISCORD_SPECIAL.sub(r"\\\1", s),
    bold=lambda s: f"**{s}**",
    italic=lambda s: f"*{s}*",
    strike=lambda s: f"~~{s}~~",
    code=_discord_code,
    pre=lambda code, lang: _fence(code.replace("```", "`\u200b``"), lang),
    # <url> stops Discord from unfurling every cited page into a large embed.
    link=lambda text, url: f"[{text}](<{url}>)",
    quote=_quote_lines("> "),
)


def _whatsapp_link(text: str, url: str) -> str:
    # WhatsApp has no link markup, but it turns a bare URL into a link: show the text, then the URL.
    return url if text == url else f"{text}: {url}"


WHATSAPP = Dialect(
    name="whatsapp",
    # WhatsApp's formatting characters have no escape (as Slack's); a lone one shows as itself.
    escape=lambda s: s,
    bold=lambda s: f"*{s}*",
    italic=lambda s: f"_{s}_",
    strike=lambda s: f"~{s}~",
    code=lambda s: f"`{s}`",
    pre=lambda code, _lang: _fence(code, ""),  # a language after the fence would show as code
    link=_whatsapp_link,
    quote=_quote_lines("> "),
)


# Teams' Markdown: its formatting characters escaped, HTML shown as text. Brackets stay: the answer's `[1]`
# markers are what Teams links to the message's citation entities.
_TEAMS_SPECIAL = re.compile(r"([\\*_~`#])")


def _teams_escape(text: str) -> str:
    return _TEAMS_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


TEAMS = Dialect(
    name="teams",
    escape=_teams_escape,
    bold=lambda s: f"**{s}**",
    italic=lambda s: f"_{s}_",
    strike=lambda s: f"~~{s}~~",
    code=lambda s: f"`{html.escape(s, quote=False)}`",
    pre=lambda code, lang: _fence(html.escape(code, quote=False).replace("```", "`\u200b``"), lang),
    link=lambda text, url: f"[{text}]({url.replace(')', '%29').replace(' ', '%20')})",
    quote=_quote_lines("> "),
)


def safe_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in _SAFE_SCHEMES


class _Renderer:
    def __init__(self, dialect: Dialect):
        self.d = dialect

    def blocks(self, nodes: list[SyntaxTreeNode], *, tight: bool = False) -> str:
        rendered = [self.block(node) for node in nodes]
        return ("\n" if tight else "\n\n").join(r for r in rendered if r)

    def block(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind in ("paragraph", "heading"):
            text = self.inline(node.children[0]) if node.children else ""
            return self.d.bold(text) if kind == "heading" and text else text
        if kind in ("fence", "code_block"):
            return self.d.pre(node.content, (node.info or "").split(" ")[0])
        if kind in ("bullet_list", "ordered_list"):
            return self.list(node)
        if kind == "blockquote":
            return self.d.quote(self.blocks(node.children))
        if kind == "table":
            return self.table(node)
        if kind == "hr":
            return "──────"
        if kind == "html_block":
            return self.d.escape(node.content.rstrip("\n"))
        return self.blocks(node.children)

    def list(self, node: SyntaxTreeNode) -> str:
        start = int(node.attrs.get("start", 1) or 1)
        lines = []
        for i, item in enumerate(node.children):
            marker = f"{start + i}." if node.type == "ordered_list" else "•"
            body = self.blocks(item.children, tight=True)
            first, *rest = body.split("\n") if body else [""]
            lines.append(f"{marker} {first}")
            lines.extend(f"    {line}" for line in rest)
        return "\n".join(lines)

    def table(self, node: SyntaxTreeNode) -> str:
        rows = []
        for section in node.children:
            for row in section.children:
                rows.append(" | ".join(self.inline(cell.children[0]) if cell.children else "" for cell in row.children))
        return "\n".join(rows)

    def inline(self, node: SyntaxTreeNode) -> str:
        return "".join(self.span(child) for child in node.children)

    def span(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        inner = "".join(self.span(child) for child in node.children)
        if kind == "text":
            return self.d.escape(node.content)
        if kind in ("softbreak", "hardbreak"):
            return "\n"
        if kind == "code_inline":
            return self.d.code(node.content)
        if kind == "strong":
            return self.d.bold(inner)
        if kind == "em":
            return self.d.italic(inner)
        if kind == "s":
            return self.d.strike(inner)
        if kind == "link":
            href = str(node.attrs.get("href", ""))
            return self.d.link(inner, href) if safe_url(href) else inner
        if kind == "image":
            alt = self.d.escape(node.attrs.get("alt", "") or node.content or "image")  # type: ignore[arg-type]
            src = str(node.attrs.get("src", ""))
            return self.d.link(alt, src) if safe_url(src) else alt
        if kind in ("html_inline", "html_block"):
            return self.d.escape(node.content)
        return inner


def render(markdown: str, dialect: Dialect) -> str:
    tree = SyntaxTreeNode(_PARSER.parse(markdown))
    return _Renderer(dialect).blocks(tree.children).strip()


# --- splitting at a platform's message limit --------------------------------------------------------------


def _top_blocks(markdown: str) -> list[str]:
    lines = markdown.split("\n")
    tree = SyntaxTreeNode(_PARSER.parse(markdown))
    return ["\n".join(lines[n.map[0] : n.map[1]]).strip("\n") for n in tree.children if n.map]


def _pieces(block: str, limit: int, fits: Callable[[str], bool]) -> list[str]:
    """Cut one block that is too long: a code fence by lines (each piece fenced again), text by lines, then
    words, then characters."""
    fence = re.match(r"^(```+|~~~+)([^\n]*)\n(.*?)(?:\n\1)?\s*$", block, re.S)
    if fence:
        ticks, info, body = fence.groups()
        wrap = lambda s: f"{ticks}{info}\n{s}\n{ticks}"  # noqa: E731
        return _greedy(body.split("\n"), "\n", fits, wrap, limit)
    pieces = []
    for line in _greedy(block.split("\n"), "\n", fits, lambda s: s, limit):
        pieces.extend(_greedy(line.split(" "), " ", fits, lambda s: s, limit) if not fits(line) else [line])
    return pieces


def _greedy(
    units: list[str], joiner: str, fits: Callable[[str], bool], wrap: Callable[[str], str], limit: int
) -> list[str]:
    out: list[str] = []
    current: str | None = None
    for unit in units:
        candidate = unit if current is None else f"{current}{joiner}{unit}"
        if fits(wrap(candidate)):
            current = candidate
            continue
        if current is not None:
            out.append(wrap(current))
        if fits(wrap(unit)):
            current = unit
            continue
        # A single unit longer than a whole message: cut it by characters (rare: a giant URL or token).
        size = max(1, limit // 2)
        while not fits(wrap(unit[:size])) and size > 1:
            size //= 2
        out.extend(wrap(unit[i : i + size]) for i in range(0, len(unit), size))
        current = None
    if current is not None:
        out.append(wrap(current))
    return out


def split(markdown: str, dialect: Dialect, limit: int) -> list[str]:
    """Rendered parts of at most `limit` characters each, cut between blocks where possible."""
    rendered = render(markdown, dialect)
    if dialect.length(rendered) <= limit:
        return [rendered] if rendered else []

    def fits(md: str) -> bool:
        return dialect.length(render(md, dialect)) <= limit

    parts: list[str] = []
    current = ""
    for block in _top_blocks(markdown):
        candidate = f"{current}\n\n{block}" if current else block
        if fits(candidate):
            current = candidate
            continue
        if current:
            parts.append(current)
        if fits(block):
            current = block
        else:
            *whole, current = _pieces(block, limit, fits)
            parts.extend(whole)
    if current:
        parts.append(current)
    return [r for r in (render(p, dialect) for p in parts) if r]
