"""API keys for the OpenAI-compatible API: stored hashed (SHA-256 of a 256-bit random key; the plain key is
shown once), scoped to bots, with last-used time, revocable at once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from core.sqlite import connect, init_db

PREFIX = "sb-"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    bots TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
"""


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    id: str
    name: str
    bots: tuple[str, ...]  # empty: every bot
    created_at: float
    last_used_at: float | None
    revoked: bool

    def allows(self, bot: str) -> bool:
        return not self.bots or bot in self.bots


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


class ApiKeys:
    def __init__(self, path: Path):
        self._path = path
        init_db(path, _SCHEMA)

    def create(self, *, name: str, bots: tuple[str, ...]) -> tuple[str, ApiKey]:
        """Returns the plain key (shown once, never stored) and its record."""
        key_id = secrets.token_hex(4)
        plain = f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        now = time.time()
        with connect(self._path) as db:
            db.execute(
                "INSERT INTO api_keys (id, name, hash, bots, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, name, _digest(plain), json.dumps(list(bots)), now),
            )
        return plain, ApiKey(id=key_id, name=name, bots=bots, created_at=now, last_used_at=None, revoked=False)

    def list(self) -> list[ApiKey]:
        with connect(self._path) as db:
            rows = db.execute(
                "SELECT id, name, bots, created_at, last_used_at, revoked_at FROM api_keys ORDER BY created_at"
            ).fetchall()
        return [
            ApiKey(
                id=r[0],
                name=r[1],
                bots=tuple(json.loads(r[2])),
                created_at=r[3],
                last_used_at=r[4],
                revoked=r[5] is not None,
            )
            for r in rows
        ]

    def revoke(self, key_id: str) -> bool:
        with connect(self._path) as db:
            changed = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
            ).rowcount
        return changed == 1

    def _verify(self, plain: str) -> ApiKey | None:
        now = time.time()
        with connect(self._path) as db:
            # Read first: a wrong key (a guess) must cost no write, so guessing cannot contend with real traffic.
            row = db.execute(
                "SELECT id, name, bots, created_at FROM api_keys WHERE hash = ? AND revoked_at IS NULL",
                (_digest(plain),),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, row[0]))
        return ApiKey(
            id=row[0], name=row[1], bots=tuple(json.loads(row[2])), created_at=row[3], last_used_at=now, revoked=False
        )

    async def verify(self, plain: str) -> ApiKey | None:
        """The key's record if it exists and is not revoked (checked on every request: revocation is at once)."""
        if not plain.startswith(PREFIX):
            return None
        return await asyncio.to_thread(self._verify, plain)
