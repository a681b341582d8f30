"""SQLite conventions shared by the kit's small stores (history, answers): WAL, busy timeout, short-lived
connections (sqlite3 connections must not cross threads), autocommit with explicit transactions."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from core.private import private_file

logger = logging.getLogger(__name__)


def init_db(path: Path, schema: str) -> None:
    # Conversations, answers and API key hashes: the owner's only (SQLite creates its -wal and -shm files with
    # the database's mode; ones left by an older version are tightened too).
    private_file(path)
    for leftover in (path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")):
        if leftover.exists():
            private_file(leftover)
    with connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)


def connect(path: Path) -> closing[sqlite3.Connection]:
    """Autocommit; use BEGIN IMMEDIATE where a write must be atomic (closing rolls back an unfinished one)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.execute("PRAGMA secure_delete = ON")  # deleted text is overwritten, not left behind in free pages
    return closing(db)


def has_table(db: sqlite3.Connection, table: str) -> bool:
    """Whether `table` exists: a migration fills a new table from the log once, when it first creates it."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() is not None


def scrub(db: sqlite3.Connection) -> None:
    """After an erasure: copy the WAL into the database and empty it, so that no earlier version of an erased
    page (with the erased text) is left in the -wal file. Waits for readers (busy timeout)."""
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        logger.warning("could not empty the write-ahead log (busy); erased text stays in it until the next checkpoint")


class Periodic:
    """When a store's retention purge is due: at its first check (startup), then at most every `seconds`. Checked
    on writes, so no thread is needed."""

    def __init__(self, seconds: float):
        self._seconds = seconds
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._seconds
        return True
