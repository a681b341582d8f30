"""Registered sources and sync against the real Weaviate, the real embedder and a loopback site: the registry
itself, incremental syncs (zero embedding when nothing changed), prune, a failing source among good ones, and
the same through the CLI and the admin API, every bad input refused with a reason."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from core.config import Settings
from core.embed import Embedder
from core.errors import IngestError
from core.ingest.lease import SqliteLeases
from core.ingest.registry import Registry, SourceNotFound, every_seconds
from core.ingest.sync import Synced
from core.ingest.sync import sync_all as sync_sources
from core.store.client import Store
from tests.conftest import loopback_allowed
from tests.servers import RunningServer
from tests.test_admin_api import admin, call, finished, post_json  # noqa: F401 - `admin` is a fixture
from tests.test_cli import one_line_error, run
from tests.test_ingest import CountingEmbedder


def write_docs(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "install.md").write_text("# Install\n\nRun `kestrel init` to create kestrel.toml.\n")
    (root / "queue.md").write_text("# Queue\n\nWorkers poll the queue every 500 milliseconds.\n")
    (root / "backups.md").write_text("# Backups\n\nBackups run nightly at 02:00.\n")


async def test_registry_is_durable_private_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "data" / "sources.sqlite3"
    registry = Registry(path)
    added = await registry.add(kb="docs", target=str(tmp_path), sitemap=False, prune=True, every="6h")
    site = await registry.add(
        kb="docs", target="https://example.org/sitemap.xml", sitemap=True, prune=False, every=None
    )
    other = await registry.add(kb="other", target="https://example.org/a.html", sitemap=False, prune=False, every=None)
    assert (added.kind, site.kind, other.kind) == ("path", "sitemap", "url")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    reopened = Registry(path)  # another process sharing the data directory
    assert [s.id for s in await reopened.sources("docs")] == [added.id, site.id]
    assert (await reopened.get(added.id)).every == "6h" and (await reopened.get(added.id)).prune
    assert await reopened.get(other.id, "other") == other
    with pytest.raises(SourceNotFound, match="no source"):
        await reopened.get(other.id, "docs")  # another KB's source is not this KB's

    await reopened.remove(site.id)
    assert [s.id for s in await registry.sources()] == [added.id, other.id]
    with pytest.raises(SourceNotFound):
        await registry.remove(site.id)


@pytest.mark.parametrize(
    ("target", "sitemap", "every", "message"),
    [
        ("/no/such/dir", False, None, "/no/such/dir: no such file or directory"),
        ("ftp://example.org/a.md", False, None, "only http(s) URLs can be ingested"),
        ("http:///no-host", False, None, "not a valid URL"),
        # argv holds undecodable bytes as lone surrogates (surrogateescape); SQLite cannot store them
        ("http://example.org/\udcff", False, None, "not a valid URL (a lone UTF-16 surrogate"),
        (".", True, None, "--sitemap needs an http(s) URL"),
        (".", False, "6x", "--every '6x': expected a positive number and a unit"),
        (".", False, "0h", "--every '0h'"),
    ],
)
async def test_bad_sources_are_refused(
    tmp_path: Path, target: str, sitemap: bool, every: str | None, message: str
) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    with pytest.raises(IngestError, match=re.escape(message)):
        await registry.add(kb="docs", target=target, sitemap=sitemap, prune=False, every=every)
    assert await registry.sources() == []


def test_every_units() -> None:
    assert [every_seconds(e) for e in ("30m", "6h", "1d", " 2 h ")] == [1800, 21600, 86400, 7200]


async def test_every_is_kept_compact(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "sources.sqlite3")
    added = await registry.add(kb="docs", target=str(tmp_path), sitemap=False, prune=False, every=" 6 h")
    assert added.every == "6h" and (await registry.get(added.id)).every == "6h"


async def test_sync_is_incremental_prunes_and_survives_a_failing_source(
    tmp_path: Path, store: Store, embedder: Embedder, settings: Settings, kb: str, host_site: tuple[str, Path]
) -> None:
    settings = loopback_allowed(settings)
    docs = tmp_path / "docs"
    write_docs(docs)
    base, root = host_site
    (root / f"{kb}.html").write_text("<html><title>Herons</title><body><main><p>Herons nest.</p></main></html>")
    registry = Registry(tmp_path / "sources.sqlite3")
    folder = await registry.add(kb=kb, target=str(docs), sitemap=False, prune=True, every=None)
    page = await registry.add(kb=kb, target=f"{base}/{kb}.html", sitemap=False, prune=False, every=None)
    counting = CountingEmbedder(embedder)
    leases = SqliteLeases(tmp_path / "leases.sqlite3")

    async def sync_all(*args: Any, **kwargs: Any) -> list[Synced]:
        synced, busy = await sync_sources(*args, leases, holder="test", **kwargs)
        assert busy == []
        return synced

    first = await sync_all(registry, store, counting, await registry.sources(kb), settings=settings)
    assert [(r.run.documents, r.run.added, r.run.error) for r in first] == [(3, 3, None), (1, 1, None)]
    assert len(counting.texts) == 4

    counting.texts.clear()
    again = await sync_all(registry, store, counting, await registry.sources(kb), settings=settings)
    assert [(r.run.documents_unchanged, r.run.added, r.run.updated) for r in again] == [(3, 0, 0), (1, 0, 0)]
    assert counting.texts == []  # nothing changed: nothing embedded

    (docs / "queue.md").write_text("# Queue\n\nWorkers poll the queue every 2 seconds.\n")
    (docs / "backups.md").unlink()
    (root / f"{kb}.html").unlink()  # the page source now fails: HTTP 404
    third = await sync_all(registry, store, counting, await registry.sources(kb), settings=settings)
    synced, failed = third
    assert (synced.run.updated, synced.run.documents_unchanged, synced.run.documents_pruned) == (1, 1, 1)
    assert synced.run.error is None and synced.report is not None
    assert len(counting.texts) == 1 and "every 2 seconds" in counting.texts[0]  # only the changed file
    assert failed.report is None and failed.run.error is not None and "HTTP 404" in failed.run.error
    stored = {c.source for chunks in (await store.stored_chunks(kb)).values() for c in chunks.values()}
    assert stored == {str(docs / "install.md"), str(docs / "queue.md"), f"{base}/{kb}.html"}  # kept: no prune

    listed = {s.id: s for s in await registry.sources(kb)}
    assert listed[folder.id].last == synced.run and listed[page.id].last == failed.run
    assert [r.updated for r in await registry.history(folder.id)] == [1, 0, 0]  # newest first


def test_cli_source_add_list_sync_remove(cli_env: dict[str, str], tmp_path: Path, kb: str) -> None:
    docs = tmp_path / "docs"
    write_docs(docs)
    one_line_error(run(cli_env, "source", "add", "--kb", kb, str(docs), "--every", "6x", cwd=tmp_path), "'6x'")
    one_line_error(run(cli_env, "source", "add", "--kb", kb, "nowhere", cwd=tmp_path), "no such file or directory")
    one_line_error(run(cli_env, "source", "add", "--kb", kb, "ftp://x/a.md", cwd=tmp_path), "only http(s) URLs")
    one_line_error(run(cli_env, "sync", "--kb", kb, cwd=tmp_path), "no sources registered")

    added = run(cli_env, "source", "add", "--kb", kb, "docs", "--prune", "--every", "6h", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    source_id = added.stdout.split()[0]
    gone = tmp_path / "gone"
    gone.mkdir()
    broken = run(cli_env, "source", "add", "--kb", kb, str(gone), cwd=tmp_path).stdout.split()[0]
    gone.rmdir()  # registered, then removed: its sync fails, the other one still runs
    one_line_error(run(cli_env, "source", "add", "--kb", kb, str(docs), cwd=tmp_path), "already a source")

    synced = run(cli_env, "sync", "--kb", kb, cwd=tmp_path)
    one_line_error(synced, f"1 of 2 source(s) failed: {broken}")
    assert "3 documents (0 unchanged); chunks 3 added" in synced.stdout.replace("\n", " ")

    only = run(cli_env, "sync", "--source", source_id, cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert "3 documents (3 unchanged)" in only.stdout.replace("\n", " ")

    listed = json.loads(run(cli_env, "source", "list", "--kb", kb, "--json", cwd=tmp_path).stdout)["sources"]
    by_id = {s["id"]: s for s in listed}
    assert by_id[source_id]["target"] == str(docs) and by_id[source_id]["every"] == "6h"
    assert by_id[source_id]["last"]["unchanged"] == 3 and by_id[source_id]["last"]["error"] is None
    assert "no such file or directory" in by_id[broken]["last"]["error"]

    assert run(cli_env, "source", "remove", broken, cwd=tmp_path).returncode == 0
    one_line_error(run(cli_env, "source", "remove", broken, cwd=tmp_path), f"no source '{broken}'")
    assert [
        s["id"]
        for s in json.loads(run(cli_env, "source", "list", "--kb", kb, "--json", cwd=tmp_path).stdout)["sources"]
    ] == [source_id]
    one_line_error(run(cli_env, "sync", "--source", broken, cwd=tmp_path), "no source")


def test_admin_api_sources(admin: RunningServer, host_site: tuple[str, Path], kb: str) -> None:  # noqa: F811
    base, root = host_site
    (root / f"{kb}-src.html").write_text("<html><title>Owls</title><body><main><p>Owls hunt.</p></main></html>")
    url = f"{base}/{kb}-src.html"
    added = call(admin, "POST", f"/admin/kbs/{kb}/sources", json={"target": url, "every": "1d"})
    assert added.status_code == 201, added.text
    source = added.json()
    assert (source["kind"], source["target"], source["every"], source["last_sync"]) == ("url", url, "1d", None)

    job = finished(admin, call(admin, "POST", f"/admin/kbs/{kb}/sources/{source['id']}/sync").json()["id"])
    assert job["state"] == "done" and job["kind"] == "sync" and job["summary"]["added"] == 1, job
    again = finished(admin, call(admin, "POST", f"/admin/kbs/{kb}/sources/{source['id']}/sync").json()["id"])
    assert again["summary"]["documents_unchanged"] == 1 and again["summary"]["added"] == 0

    (root / f"{kb}-src.html").unlink()
    failed = finished(admin, call(admin, "POST", f"/admin/kbs/{kb}/sources/{source['id']}/sync").json()["id"])
    assert failed["state"] == "failed" and "HTTP 404" in failed["error"]
    listed = call(admin, "GET", f"/admin/kbs/{kb}/sources").json()["sources"]
    assert [s["id"] for s in listed] == [source["id"]] and "HTTP 404" in listed[0]["last_sync"]["error"]
    history = call(admin, "GET", f"/admin/kbs/{kb}/sources/{source['id']}").json()["history"]
    assert [(r["added"], r["documents_unchanged"], r["error"] is None) for r in history] == [
        (0, 0, False),
        (0, 1, True),
        (1, 0, True),
    ]

    for body, message in [
        ({"target": "ftp://x/a.md"}, "only http(s) URLs"),
        ({"target": url, "every": "6x"}, "'6x'"),
        ({"target": str(root)}, "only http(s) URLs here"),  # no reading the server's files with the key
        ({"target": url}, "already a source"),
    ]:
        refused = post_json(admin, f"/admin/kbs/{kb}/sources", body)
        assert refused.status_code == 400 and message in refused.json()["detail"], refused.text
    escaped = post_json(admin, f"/admin/kbs/{kb}/sources", {"target": "http://example.org/\ud800"})
    assert escaped.status_code == 422 and "unicode string" in escaped.text, escaped.text  # a lone surrogate
    assert call(admin, "POST", f"/admin/kbs/{kb}/sources", json={}).status_code == 422
    assert call(admin, "GET", f"/admin/kbs/{kb}/sources", key=None).status_code == 401
    assert call(admin, "POST", f"/admin/kbs/{kb}/sources/{'0' * 12}/sync").status_code == 404
    assert call(admin, "DELETE", f"/admin/kbs/other_{kb}/sources/{source['id']}").status_code == 404

    assert call(admin, "DELETE", f"/admin/kbs/{kb}/sources/{source['id']}").status_code == 204
    assert call(admin, "GET", f"/admin/kbs/{kb}/sources").json()["sources"] == []
    assert call(admin, "DELETE", f"/admin/kbs/{kb}/sources/{source['id']}").status_code == 404


async def test_registry_written_before_options_gains_them(tmp_path: Path) -> None:
    """A sources.sqlite3 from before sources had options opens, keeps its sources and stores options from then on."""
    import sqlite3

    path = tmp_path / "sources.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE sources (id TEXT PRIMARY KEY, kb TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, "
            "prune INTEGER NOT NULL, every TEXT, created_at REAL NOT NULL, UNIQUE (kb, target))"
        )
        db.execute("INSERT INTO sources VALUES ('old', 'docs', 'path', ?, 0, NULL, 1.0)", (str(tmp_path),))
    registry = Registry(path)
    assert (await registry.get("old")).options == {}
    added = await registry.add(
        kb="docs", target="https://example.org/", sitemap=False, prune=True, every=None, options={"depth": 3}
    )
    assert (await registry.get(added.id)).options == {"depth": 3}
