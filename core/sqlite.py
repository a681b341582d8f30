"""SQLite conventions shared by the kit's small stores (history, answers): WAL, busy timeout, short-lived
connections (sqlite3 connections must not cross threads), autocommit with explicit transactions."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def init_db(path: Path, schema: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)


def connect(path: Path) -> closing[sqlite3.Connection]:
    """Autocommit; use BEGIN IMMEDIATE where a write must be atomic (closing rolls back an unfinished one)."""
    return closing(sqlite3.connect(path, timeout=30, isolation_level=None))
