"""What the kit keeps to its own user: the data directory and its subdirectories (0700), secrets and SQLite
databases (0600). Created that way, and an existing one that others could read is tightened."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path)
    return path


def private_file(path: Path) -> Path:
    """The file, created empty if missing (an empty file is a valid new SQLite database), readable by the owner
    only. SQLite gives its -wal and -shm files the database file's mode."""
    private_dir(path.parent)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    _tighten(path)
    return path


def _tighten(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
        except PermissionError:  # not ours (a mounted directory): say so rather than fail
            logger.warning("%s is readable by other users and cannot be changed here (mode %o)", path, mode)
