"""Knowledge-base names and the metadata each KB records about how it was built."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from core.errors import ConfigError, SwitchboardError

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
COLLECTION_PREFIX = "Switchboard_"


def validate_kb_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(
            f"invalid knowledge base name {name!r}: use 1-48 lowercase letters, digits or '_', starting with a letter"
        )
    return name


def collection_name(kb: str) -> str:
    """A KB's public name in Weaviate (Weaviate wants names to start upper-case): an alias of the versioned
    collection that holds its data, or, for a KB created before aliases, that collection itself."""
    return COLLECTION_PREFIX + validate_kb_name(kb)


def version_name(kb: str, version: int) -> str:
    """A collection holding one build of a KB's data. The upper-case V keeps it from ever being a KB's name."""
    return f"{collection_name(kb)}_V{version}"


def kb_from_collection(collection: str) -> str | None:
    """The KB whose public name this is."""
    if not collection.startswith(COLLECTION_PREFIX):
        return None
    name = collection[len(COLLECTION_PREFIX) :]
    return name if _NAME.match(name) else None


def parse_version(collection: str) -> tuple[str, int] | None:
    """(KB, version) of a versioned collection's name."""
    public, sep, version = collection.rpartition("_V")
    kb = kb_from_collection(public) if sep and version.isdigit() else None
    return (kb, int(version)) if kb is not None else None


# What a chunk's vector is computed from. The document title stays out since #17: it repeats on every chunk of a
# long document (and is a bare file name for a page without a heading), and leaving it out won on the third-party
# sets; the text is read as plain text, without Markdown's link URLs and marks (docs/benchmarks.md). A KB keeps
# the way it was built with (one that records nothing predates both) until it is reembedded.
EmbedText = Literal["section+plain text", "section+text", "title+section+text"]
EMBED_TEXT: EmbedText = "section+plain text"
MARKDOWN_EMBED_TEXT: EmbedText = "section+text"
LEGACY_EMBED_TEXT: EmbedText = "title+section+text"


@dataclass(frozen=True, kw_only=True)
class KBMeta:
    """Stored as the collection's description, so the KB carries its own embedder identity."""

    embed_model: str
    embed_dim: int
    chunk_size: int
    chunk_overlap: int
    embed_text: EmbedText = EMBED_TEXT

    def dumps(self) -> str:
        return json.dumps({"switchboard": 1, **asdict(self)}, sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> KBMeta:
        try:
            data = json.loads(text or "")
            return cls(
                embed_model=str(data["embed_model"]),
                embed_dim=int(data["embed_dim"]),
                chunk_size=int(data["chunk_size"]),
                chunk_overlap=int(data["chunk_overlap"]),
                # its SwitchboardError (a newer KB) is not one of the errors caught below
                embed_text=_embed_text(data.get("embed_text", LEGACY_EMBED_TEXT)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SwitchboardError("this collection was not created by Switchboard (no KB metadata)") from exc


def _embed_text(value: object) -> EmbedText:
    for known in get_args(EmbedText):
        if value == known:
            return known
    # A way of making vectors this version does not know: the KB was built (or reembedded) by a newer one.
    raise SwitchboardError(
        f"this knowledge base was built by a newer Switchboard (its vectors are of {value!r}): upgrade to use it"
    )
