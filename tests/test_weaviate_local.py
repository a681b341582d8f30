"""The kit's own local-Weaviate launcher, on a dedicated real server."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import core.store.local as weaviate_local
from core.errors import StoreError
from core.kb import KBMeta
from core.store.client import open_store
from core.store.local import LocalWeaviate, embedded_binary_name
from tests.conftest import QuietHandler, make_settings, require_weaviate_binary
from tests.support.ports import free_port_block


@pytest.fixture
def own(tmp_path: Path) -> Iterator[LocalWeaviate]:
    http_port, grpc_port = free_port_block()
    local = LocalWeaviate.from_settings(make_settings(tmp_path / "data", http_port, grpc_port))
    require_weaviate_binary(local)
    yield local
    local.stop()


def test_start_reuse_auth_and_clean_stop(own: LocalWeaviate) -> None:
    assert own.start() is True
    pid = own.process.pid()
    assert pid is not None
    environ = dict(
        item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item
    )
    assert environ["DISABLE_TELEMETRY"] == "true" and environ["GO_PROFILING_DISABLE"] == "true"
    assert environ["CLUSTER_BIND_ADDR"] == environ["CLUSTER_ADVERTISE_ADDR"] == "127.0.0.1"
    assert environ["AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED"] == "false"
    assert stat.S_IMODE((own.root / "api-key").stat().st_mode) == 0o600
    assert httpx.get(f"{own.url}/v1/meta").status_code == 401  # anonymous access refused

    again = LocalWeaviate(root=own.root, http_port=own.http_port, grpc_port=own.grpc_port)
    assert again.start() is False and again.process.pid() == pid  # an already-running instance is reused

    own.stop()
    assert not own.running() and not (own.root / "weaviate.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_data_persists_across_restarts(own: LocalWeaviate, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", own.http_port, own.grpc_port)
    meta = KBMeta(embed_model="m", embed_dim=3, chunk_size=1000, chunk_overlap=150)
    async with open_store(settings) as store:  # starts the server, stops it on exit
        await store.ensure_kb("persisted", meta)
    assert not own.running()
    async with open_store(settings) as store:
        assert [k.name for k in await store.list_kbs()] == ["persisted"]
    assert not own.running()


def test_a_foreign_weaviate_on_the_port_is_refused(own: LocalWeaviate, tmp_path: Path) -> None:
    own.start()
    stranger = LocalWeaviate(root=tmp_path / "other", http_port=own.http_port, grpc_port=own.grpc_port)
    with pytest.raises(StoreError, match="does not accept this kit's key"):
        stranger.start()


def test_download_path_like_embedded_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The normal download path, served by a loopback stand-in for the release server."""
    import http.server
    import threading

    version = "1.39.0"
    release = tmp_path / "releases" / f"v{version}"
    release.mkdir(parents=True)
    payload = b"#!/bin/sh\necho fake weaviate\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("weaviate")
        info.size, info.mode = len(payload), 0o755
        tar.addfile(info, io.BytesIO(payload))
    (release / f"weaviate-v{version}-Linux-amd64.tar.gz").write_bytes(buffer.getvalue())
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=str(tmp_path / "releases"))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(weaviate_local, "RELEASES", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setattr(weaviate_local.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(weaviate_local.platform, "system", lambda: "Linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # hide any weaviate-server and go on PATH
    try:
        local = LocalWeaviate(root=tmp_path / "data", http_port=1, grpc_port=2)
        path = local.install("download")
        assert path.name == embedded_binary_name(version) and os.access(path, os.X_OK)
        assert path.read_bytes() == payload and local.find_binary() == path
    finally:
        server.shutdown()


def test_no_binary_gives_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weaviate_local, "RELEASES", "http://127.0.0.1:9")  # closed port: download fails at once
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/nonexistent")
    local = LocalWeaviate(root=tmp_path / "data", http_port=1, grpc_port=2)
    with pytest.raises(StoreError, match=r"no Weaviate 1\.39\.0 server binary: download failed .* go install failed"):
        local.install("auto")
    with pytest.raises(StoreError, match="WEAVIATE_BINARY=/nope does not exist"):
        LocalWeaviate(root=tmp_path, http_port=1, grpc_port=2, binary=Path("/nope")).find_binary()
