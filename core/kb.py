"""Knowledge-base names and the metadata each KB records about how it was built."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

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
    """One Weaviate collection per KB; Weaviate wants collection names to start upper-case."""
    return COLLECTION_PREFIX + validate_kb_name(kb)


def kb_from_collection(collection: str) -> str | None:
    if not collection.startswith(COLLECTION_PREFIX):
        return None
    name = collection[len(COLLECTION_PREFIX) :]
    return name if _NAME.match(name) else None


@dataclass(frozen=True, kw_only=True)
class KBMeta:
    """Stored as the collection's description, so the KB carries its own embedder identity."""

    embed_model: str
    embed_dim: int
    chunk_size: int
    chunk_overlap: int

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
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SwitchboardError("this collection was not created by Switchboard (no KB metadata)") from exc
