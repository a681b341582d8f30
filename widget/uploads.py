"""Files received for ingestion (the admin API): checked as a batch, staged, ingested, then kept.

Each KB's uploads live at <data_dir>/uploads/<kb>/<file name>. That path is the document's source, so uploading
a file with the same name again updates that document (only changed chunks are embedded), and `switchboard
ingest` on that folder sees the same documents. Every file of a batch is checked before anything is written,
and the files wait in a staging folder until their ingestion has succeeded: a refused or failed upload changes
neither the KB nor the kept files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.config import Settings
from core.errors import IngestError
from core.ingest.extract import check_type
from core.ingest.pipeline import IngestReport, Progress
from core.ingest.sources import Found, RawDoc
from core.kb import validate_kb_name
from core.knowledge import Knowledge

MAX_NAME_CHARS = 200


class UploadRejected(IngestError):
    """An upload the kit refuses as sent (bad name, empty, duplicate); nothing was written."""


class UploadTooLarge(UploadRejected):
    """A file over INGEST_MAX_FILE_MB."""


def upload_dir(settings: Settings, kb: str) -> Path:
    # Resolved, because sources are absolute paths: the CLI ingesting this folder must find the same doc ids.
    return (settings.data_dir / "uploads" / validate_kb_name(kb)).resolve()


def _check_name(name: str) -> None:
    """A plain file name: no folders (no path traversal), not hidden, printable, of sane length."""
    if (
        not name
        or name != name.strip()
        or name.startswith(".")
        or any(c in name for c in "/\\")
        or any(not c.isprintable() for c in name)
        or len(name) > MAX_NAME_CHARS
    ):
        raise UploadRejected(
            f"{name!r} is not a usable file name: send a plain name like guide.md (no folders, not hidden, "
            f"at most {MAX_NAME_CHARS} characters)"
        )


def check_uploads(files: Sequence[tuple[str, int]], settings: Settings) -> None:
    """Check a batch of (file name, size) before anything is written: one bad file refuses the whole batch."""
    if not files:
        raise UploadRejected("no files: send one or more `files` parts as multipart/form-data")
    twice = [name for name, count in Counter(name for name, _ in files).items() if count > 1]
    if twice:
        raise UploadRejected(f"{twice[0]}: sent twice in one upload")
    max_bytes = int(settings.max_file_mb * 1e6)
    for name, size in files:
        _check_name(name)
        check_type(name)
        if size == 0:
            raise UploadRejected(f"{name}: the file is empty")
        if size > max_bytes:
            limit = f"{settings.max_file_mb:g} MB limit (INGEST_MAX_FILE_MB)"
            raise UploadTooLarge(f"{name}: {size / 1e6:.3g} MB is over the {limit}")


@dataclass(frozen=True)
class StagedFile:
    path: Path  # where the bytes wait
    target: Path  # where they are kept once ingested: the document's source


@dataclass(frozen=True)
class StagedBatch:
    folder: Path
    files: tuple[StagedFile, ...]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def stage(settings: Settings, kb: str, files: Sequence[tuple[str, BinaryIO]]) -> StagedBatch:
    """Copy checked files into a new staging folder (blocking I/O: run it in a thread)."""
    root = settings.data_dir / "uploads" / ".staging"  # never a KB folder: KB names start with a letter
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=root))
    target_dir = upload_dir(settings, kb)
    try:
        staged = []
        for name, data in files:
            with (folder / name).open("wb") as out:
                shutil.copyfileobj(data, out)
            staged.append(StagedFile(path=folder / name, target=target_dir / name))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StagedBatch(folder=folder, files=tuple(staged))


def _read(batch: StagedBatch) -> list[RawDoc]:
    return [
        RawDoc(
            source=str(f.target),
            origin=str(f.target),
            suffix=check_type(f.target.name),
            data=f.path.read_bytes(),
            explicit=True,  # a file that cannot be extracted fails the batch before anything is stored
        )
        for f in batch.files
    ]


def _keep(batch: StagedBatch) -> None:
    for f in batch.files:
        f.target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(f.path, f.target)


async def ingest_staged(
    knowledge: Knowledge, batch: StagedBatch, *, kb: str, progress: Progress | None = None
) -> IngestReport:
    """Ingest the staged files under their kept paths, then move them there; a failed ingest moves nothing."""
    docs = await asyncio.to_thread(_read, batch)
    report = await knowledge.ingest_found(Found(docs=docs), kb=kb, progress=progress)
    await asyncio.to_thread(_keep, batch)
    return report


def remove_upload(settings: Settings, kb: str, source: str) -> None:
    """Delete the kept file behind a deleted document, when it was uploaded."""
    path = Path(source)
    if path.parent == upload_dir(settings, kb):
        path.unlink(missing_ok=True)
