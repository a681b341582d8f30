"""Build a real-text benchmark corpus from what CPython itself ships — no network, no downloads.

    python -m bench.corpus DEST

writes Markdown files under DEST:

* ``topics/<topic>.md`` — every entry of ``pydoc_data.topics.topics`` (the language-reference sections
  that ``help("with")`` shows), converted from Sphinx's plain-text output: underlined headings become
  ``##``-style headings, literal blocks / grammar / doctests / grid tables become fenced code blocks.
* ``modules/<module>.md`` — ``pydoc`` plain-text documentation of a fixed list of stdlib modules, split
  into ``## Description`` / ``## Classes`` / ``## Functions`` / ... sections, one ``### class ...``
  heading per class, bodies fenced as text in paragraph-sized blocks. Listings a class inherits from
  another module (``builtins.object``, ``Exception``, ...) are left out: they repeat the same text in
  hundreds of classes. Machine-specific lines (source FILE path, MODULE REFERENCE URL, ``os.environ``,
  time-zone values, memory addresses, install prefixes) are left out too, so the output depends only
  on the Python version and platform, not on the machine or its environment.

The output is deterministic: the same interpreter produces byte-identical files on every run.
"""

from __future__ import annotations

import importlib
import pydoc
import re
import sys
import warnings
from pathlib import Path
from pydoc_data.topics import topics as TOPICS

# Sorted; dotted names are documented as their own file (asyncio's package page keeps only its summary,
# the submodules carry the content, so one question does not match two near-identical pages).
MODULES: tuple[str, ...] = (
    "abc",
    "argparse",
    "array",
    "asyncio",
    "asyncio.base_events",
    "asyncio.events",
    "asyncio.exceptions",
    "asyncio.futures",
    "asyncio.locks",
    "asyncio.queues",
    "asyncio.runners",
    "asyncio.streams",
    "asyncio.subprocess",
    "asyncio.taskgroups",
    "asyncio.tasks",
    "asyncio.threads",
    "asyncio.timeouts",
    "base64",
    "bisect",
    "bz2",
    "cProfile",
    "calendar",
    "cmd",
    "codecs",
    "collections",
    "collections.abc",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "dis",
    "doctest",
    "email.message",
    "email.parser",
    "email.policy",
    "email.utils",
    "enum",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "getopt",
    "getpass",
    "glob",
    "graphlib",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html.parser",
    "http.client",
    "http.cookiejar",
    "http.cookies",
    "http.server",
    "importlib.metadata",
    "importlib.resources",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "lzma",
    "math",
    "multiprocessing",
    "numbers",
    "operator",
    "optparse",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "pkgutil",
    "platform",
    "plistlib",
    "pprint",
    "pstats",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "tokenize",
    "traceback",
    "tracemalloc",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "xmlrpc.client",
    "zipfile",
    "zlib",
    "zoneinfo",
)

SUMMARY_ONLY = frozenset({"asyncio"})  # packages whose CLASSES/FUNCTIONS/DATA just re-export submodules
DROPPED_SECTIONS = frozenset({"MODULE REFERENCE", "FILE"})  # docs URL / absolute source path
SUMMARY_SECTIONS = frozenset({"NAME", "DESCRIPTION", "PACKAGE CONTENTS", "SUBMODULES"})
# Module-level data whose value describes this machine (environment, time zone, install layout).
REDACTED_DATA: dict[str, frozenset[str]] = {
    "os": frozenset({"environ", "environb"}),
    "time": frozenset({"altzone", "daylight", "timezone", "tzname"}),
    "zoneinfo": frozenset({"TZPATH"}),
}

BLOCK_CHARS = 800  # largest fenced block written for pydoc text (a chunk of ~1,000 still fits its heading)

_OVERSTRIKE = re.compile(r".\x08")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DATA_NAME = re.compile(r"^(\w+) = ")
_INHERITED = re.compile(r"^[A-Z][a-z ]+ inherited from (\S+):$")
_CLASS_LINE = re.compile(r"^(?:\w+ = )?class \w")


# --------------------------------------------------------------------------------------------------
# Shared Markdown helpers


def _fence_for(lines: list[str]) -> str:
    """A fence that no line of the block can close early."""
    starts = {line.lstrip()[:3] for line in lines}
    return "~~~" if "```" in starts else "```"


def _fenced(lines: list[str], info: str = "") -> list[str]:
    fence = _fence_for(lines)
    return [fence + info, *lines, fence]


def _split_runs(lines: list[str], limit: int, starts: re.Pattern[str]) -> list[list[str]]:
    """Cut lines into runs at blank lines followed by a line matching `starts`, then pack runs up to `limit`."""
    runs: list[list[str]] = [[]]
    for i, line in enumerate(lines):
        if runs[-1] and i and not lines[i - 1].strip() and line.strip() and starts.match(line):
            runs.append([])
        runs[-1].append(line)
    packed: list[list[str]] = []
    for run in (_trim(r) for r in runs):
        if not run:
            continue
        if packed and _size(packed[-1]) + 1 + _size(run) <= limit:
            packed[-1].extend(["", *run])
        else:
            packed.append(run)
    return packed


def _size(lines: list[str]) -> int:
    return sum(len(line) + 1 for line in lines)


def _fenced_blocks(lines: list[str], info: str = "text") -> list[list[str]]:
    """pydoc text as fenced blocks of at most BLOCK_CHARS, cut between members, then paragraphs, then lines.

    One fence per paragraph-sized piece (rather than one per section) lets the chunker pack a heading with
    the start of its section instead of leaving the heading alone in a chunk of its own.
    """
    blocks: list[list[str]] = []
    for member in _split_runs(lines, BLOCK_CHARS, re.compile(r"\S")):
        if _size(member) <= BLOCK_CHARS:
            blocks.append(member)
            continue
        for paragraph in _split_runs(member, BLOCK_CHARS, re.compile(r".")):
            current: list[str] = []
            for line in paragraph:
                if current and _size(current) + len(line) + 1 > BLOCK_CHARS:
                    blocks.append(_trim(current))
                    current = []
                current.append(line)
            if _trim(current):
                blocks.append(_trim(current))
    return [_fenced(block, info) for block in blocks if block]


def _escape_prose(line: str) -> str:
    """Keep a prose line from turning into Markdown structure (heading, fence, setext underline, HTML)."""
    stripped = line.lstrip(" ")
    indent = line[: len(line) - len(stripped)]
    if stripped.startswith(("#", ">", "<", "```", "~~~")) or re.fullmatch(
        r"(?:=+|-+|(?:\*\s*){3,}|(?:_\s*){3,})", stripped
    ):
        return f"{indent}\\{stripped}"
    return line


# --------------------------------------------------------------------------------------------------
# Language-reference topics (Sphinx plain-text output)

_UNDERLINE_CHARS = "*=-~^\"'`+#"
_RUBRIC = re.compile(r"^-\[ (.+) \]-$")
_LIST_MARKER = re.compile(r"^(?:\d+\.|[*\-+•]|\(\w+\))\s+")
# First line of a literal block that is Python code (lowercase keywords, assignments, calls, decorators).
_CODE_START = re.compile(
    r"^(?:>>>|@|\(|"
    r"(?:def|class|async|await|if|elif|else|for|while|with|try|except|finally|import|from|return|yield"
    r"|raise|print|assert|del|global|nonlocal|lambda|pass|match|case)\b"
    r"|[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s*[-+*/%&|^@]?=(?!=)|\())"
)


def human_title(key: str) -> str:
    """'atom-identifiers' → 'Atom identifiers'."""
    words = key.replace("-", " ").replace("_", " ").split()
    return " ".join(words).capitalize() if words else key


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content_indent(line: str) -> int:
    """Where a paragraph's text starts, past any list marker ('1. ', '* ')."""
    stripped = line.lstrip(" ")
    marker = _LIST_MARKER.match(stripped)
    return _indent(line) + (len(marker.group(0)) if marker else 0)


def _is_underline(line: str, title: str) -> bool:
    return (
        len(line) >= 3
        and line[0] in _UNDERLINE_CHARS
        and line == line[0] * len(line)
        and len(line) == len(title)
        and bool(title.strip())
        and not title.startswith(" ")
    )


def _topic_groups(text: str) -> list[list[str]]:
    """Paragraph groups (runs of non-blank lines); an underlined heading is always a group of its own."""
    lines = [line.rstrip() for line in text.expandtabs(8).split("\n")]
    groups: list[list[str]] = []
    current: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _is_underline(lines[i + 1], line):
            if current:
                groups.append(current)
                current = []
            groups.append([line, lines[i + 1]])
            i += 2
            continue
        if line.strip():
            current.append(line)
        elif current:
            groups.append(current)
            current = []
        i += 1
    if current:
        groups.append(current)
    return groups


def _is_heading(group: list[str]) -> bool:
    return len(group) == 2 and _is_underline(group[1], group[0])


def _is_table(group: list[str]) -> bool:
    first, last = group[0].strip(), group[-1].strip()
    return first.startswith("+-") and last.startswith(("+-", "+="))


def _is_definition(group: list[str]) -> bool:
    """A definition-list item ('term' then its text indented by 3); Python code indents by 4."""
    return (
        len(group) > 1
        and _indent(group[1]) == _indent(group[0]) + 3
        and not group[0].rstrip().endswith((":", "\\", ",", "(", "[", "{"))
    )


def _starts_code(group: list[str], intro: list[str] | None) -> bool:
    """Does this group open a literal block (code, grammar, doctest) under the paragraph `intro`?"""
    first = group[0].strip()
    if any("::=" in line for line in group) or first.startswith(">>>"):
        return True
    if intro is None or _is_heading(intro):
        return False
    if _indent(group[0]) < _content_indent(intro[0]) + 3 and _indent(group[0]) < _indent(intro[-1]) + 3:
        return False
    if _LIST_MARKER.match(first) or _is_definition(group):
        return False
    return intro[-1].rstrip().endswith(":") or bool(_CODE_START.match(first))


def topic_markdown(key: str, text: str) -> str:
    """One pydoc topic as Markdown: '# <Human title>' then the converted topic text."""
    groups = _topic_groups(text)
    levels: dict[str, int] = {}
    out: list[list[str]] = []
    intro: list[str] | None = None  # the last prose paragraph, which a literal block hangs under
    i = 0
    while i < len(groups):
        group = groups[i]
        if _is_heading(group):
            char = group[1][0]
            if not levels:  # the topic's own title: our '# ' heading already names the document
                levels[char] = 1
                out.append([_escape_prose(group[0])])
            else:
                levels.setdefault(char, min(len(levels) + 1, 6))
                out.append([f"{'#' * max(levels[char], 2)} {group[0].strip()}"])
            intro = group
            i += 1
            continue
        rubric = _RUBRIC.match(group[0].strip()) if len(group) == 1 else None
        if rubric:  # '-[ Footnotes ]-'
            out.append([f"## {rubric.group(1)}"])
            intro = group
            i += 1
            continue
        if len(group) == 1 and re.fullmatch(r"[=\-*_~]{4,}", group[0].strip()):
            out.append(["---"])  # a transition line
            i += 1
            continue
        if _is_table(group) or _starts_code(group, intro):
            block_indent = min(_indent(line) for line in group)
            block = [group]
            i += 1
            # A literal block continues through blank lines while the text stays at least as indented.
            while (
                not _is_table(group)
                and i < len(groups)
                and not _is_heading(groups[i])
                and min(_indent(line) for line in groups[i]) >= block_indent
            ):
                block.append(groups[i])
                i += 1
            lines: list[str] = []
            for part in block:
                if lines:
                    lines.append("")
                lines.extend(part)
            cut = min(_indent(line) for line in lines if line)
            out.append(_fenced([line[cut:] for line in lines]))
            continue
        out.append([_escape_prose(" " * min(_indent(line), 3) + line.lstrip(" ")) for line in group])
        intro = group
        i += 1
    body = "\n\n".join("\n".join(g) for g in out)
    return f"# {human_title(key)}\n\n{body}\n"


# --------------------------------------------------------------------------------------------------
# Stdlib modules (pydoc plain-text output)


def _pydoc_sections(text: str) -> list[tuple[str, list[str]]]:
    """pydoc's layout: an unindented SECTION line, then its content indented by four spaces."""
    sections: list[tuple[str, list[str]]] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if line and not line.startswith(" "):
            sections.append((line.strip(), []))
        elif sections:
            sections[-1][1].append(line[4:] if line.startswith("    ") else line.lstrip())
    return [(name, _trim(body)) for name, body in sections]


def _trim(lines: list[str]) -> list[str]:
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _drop_foreign_inherited(members: list[str]) -> list[str]:
    """Leave out '... inherited from other.module.Base:' listings (builtins.object, Exception, ...).

    They repeat the base class's documentation in every subclass of every module; the method resolution
    order still names the base. Listings inherited from a class of the same module (unqualified) stay.
    """
    kept: list[str] = []
    skipping = False
    for line in members:
        header = _INHERITED.match(line)
        if header:
            skipping = "." in header.group(1)
        elif line.startswith("-" * 20):
            skipping = False
        if not skipping:
            kept.append(line)
    # A separator left dangling before a dropped listing, or at the very end, goes too.
    cleaned: list[str] = []
    for line in kept:
        if line.startswith("-" * 20) and cleaned and cleaned[-1].startswith("-" * 20):
            continue
        cleaned.append(line)
    while _trim(cleaned) and _trim(cleaned)[-1].startswith("-" * 20):
        cleaned = _trim(cleaned)[:-1]
    return cleaned


def _class_blocks(body: list[str]) -> list[list[str]]:
    """Markdown for a CLASSES section: the class tree, then '### class X' + fenced body per class."""
    out: list[list[str]] = []
    tree: list[str] = []
    i = 0
    while i < len(body) and not _CLASS_LINE.match(body[i]):
        tree.append(body[i])
        i += 1
    if _trim(tree):
        out.extend(_fenced_blocks(_trim(tree)))
    while i < len(body):
        heading = body[i].strip()
        i += 1
        members: list[str] = []
        while i < len(body) and not _CLASS_LINE.match(body[i]):
            line = body[i]
            members.append(line[4:] if line.startswith(" |  ") else "" if line.strip() == "|" else line.strip())
            i += 1
        members = _drop_foreign_inherited(members)
        out.append([f"### {heading}"])
        if _trim(members):
            out.extend(_fenced_blocks(_trim(members)))
    return out


def module_markdown(name: str) -> str:
    """One module's pydoc page as Markdown: '# Module <name>', the one-line summary, then its sections."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
        text = pydoc.plaintext.document(module)  # type: ignore[attr-defined]  # (missing from typeshed)
    text = _OVERSTRIKE.sub("", text)
    text = _ADDRESS.sub("", text)
    text = text.replace(repr(sys.executable), "sys.executable")
    for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}, key=len, reverse=True):
        if len(prefix) > 1:
            text = text.replace(prefix, "<prefix>")

    out: list[list[str]] = []
    for section, body in _pydoc_sections(text):
        if section in DROPPED_SECTIONS or (name in SUMMARY_ONLY and section not in SUMMARY_SECTIONS):
            continue
        if section == "DATA":
            redacted = REDACTED_DATA.get(name, frozenset()) | {"__all__"}  # __all__: a truncated name list
            body = [line for line in body if not ((m := _DATA_NAME.match(line)) and m.group(1) in redacted)]
        if not body:
            continue
        if section == "NAME":
            out.append([_escape_prose(" ".join(line.strip() for line in body))])
            continue
        out.append([f"## {section.capitalize()}"])
        if section == "CLASSES":
            out.extend(_class_blocks(body))
        else:
            out.extend(_fenced_blocks(body))
    body_text = "\n\n".join("\n".join(g) for g in out)
    return f"# Module {name}\n\n{body_text}\n"


# --------------------------------------------------------------------------------------------------


def build_corpus(dest: Path) -> list[Path]:
    """Write DEST/topics/*.md and DEST/modules/*.md; return the written files (sorted).

    Stale ``*.md`` files in those two folders (from an older module list) are removed.
    """
    dest = Path(dest)
    wanted: dict[Path, str] = {}
    for key in sorted(TOPICS):
        wanted[dest / "topics" / f"{key}.md"] = topic_markdown(key, TOPICS[key])
    for name in MODULES:
        wanted[dest / "modules" / f"{name}.md"] = module_markdown(name)
    for folder in (dest / "topics", dest / "modules"):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.md"):
            if old not in wanted:
                old.unlink()
    for path, content in wanted.items():
        path.write_text(content, encoding="utf-8", newline="\n")
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m bench.corpus DEST", file=sys.stderr)
        return 2
    files = build_corpus(Path(args[0]))
    size = sum(path.stat().st_size for path in files)
    print(f"{len(files)} files, {size / 1_000_000:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
