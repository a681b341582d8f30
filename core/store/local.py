"""Running the local Weaviate server that the kit uses when no WEAVIATE_URL is set.

The server is the official one at a pinned version. Its binary comes from, in order: WEAVIATE_BINARY;
the data directory or weaviate-client's embedded cache (same file name as embedded mode uses); PATH and
GOPATH/bin; the GitHub release download (as embedded mode does it); `go install` from the Go module proxy.
It always binds 127.0.0.1 with telemetry and profiling off, and requires an API key kept in the data
directory, because its gRPC and cluster ports listen on every interface whatever `--host` says.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import platform
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.config import WEAVIATE_VERSION, Settings
from core.errors import StoreError
from core.process import ManagedProcess, secret_file

logger = logging.getLogger(__name__)

RELEASES = "https://github.com/weaviate/weaviate/releases/download"
GO_MODULE = "github.com/weaviate/weaviate/cmd/weaviate-server"
# A node's cluster ports follow its HTTP port. The data port listens on every interface whatever --host says.
CLUSTER_PORTS = {
    "CLUSTER_GOSSIP_BIND_PORT": 1,
    "CLUSTER_DATA_BIND_PORT": 2,
    "RAFT_PORT": 3,
    "RAFT_INTERNAL_RPC_PORT": 4,
}


def embedded_binary_name(version: str) -> str:
    """The name weaviate-client's embedded mode caches the binary under, so both reuse one download."""
    tag = f"v{version}"
    return f"weaviate-{tag}-{hashlib.sha256(tag.encode()).hexdigest()}"


def _release_url(version: str) -> str:
    system = platform.system()
    if system == "Darwin":
        return f"{RELEASES}/v{version}/weaviate-v{version}-Darwin-all.zip"
    machine = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return f"{RELEASES}/v{version}/weaviate-v{version}-{system}-{machine}.tar.gz"


def _go_bin_dir() -> Path | None:
    """Where `go install` puts binaries: GOBIN, else GOPATH/bin (asked from go itself when it is installed)."""
    go = shutil.which("go")
    if go is None:
        return None
    try:
        gobin, gopath = subprocess.run(
            [go, "env", "GOBIN", "GOPATH"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.splitlines()[:2]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return Path(gobin) if gobin else Path(gopath.split(os.pathsep)[0]) / "bin"


@dataclass(kw_only=True)
class LocalWeaviate:
    root: Path
    http_port: int
    grpc_port: int
    version: str = WEAVIATE_VERSION
    binary: Path | None = None
    startup_timeout: float = 90.0
    # One node of a loopback cluster: its name and every node's (name, HTTP port), the first being the one
    # the others join. Each node's cluster ports follow its HTTP port; the nodes must share the key files.
    node: str = "node1"
    cluster: tuple[tuple[str, int], ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)  # further server settings (e.g. tuning)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalWeaviate:
        return cls(
            root=settings.weaviate_dir.resolve(),
            http_port=settings.weaviate_local_port,
            grpc_port=settings.weaviate_local_grpc_port,
            binary=settings.weaviate_binary,
            startup_timeout=settings.weaviate_startup_timeout,
        )

    @property
    def api_key(self) -> str:
        return secret_file(self.root / "api-key")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ports(self) -> dict[str, int]:
        """Every TCP port the server binds, named by the setting that decides it."""
        cluster = {f"WEAVIATE_LOCAL_PORT+{k}": self.http_port + k for k in CLUSTER_PORTS.values()}
        return {"WEAVIATE_LOCAL_PORT": self.http_port, "WEAVIATE_LOCAL_GRPC_PORT": self.grpc_port, **cluster}

    # --- the binary -------------------------------------------------------------------------

    def find_binary(self) -> Path | None:
        if self.binary is not None:
            if not self.binary.is_file():
                raise StoreError(f"WEAVIATE_BINARY={self.binary} does not exist")
            return self.binary
        cached = embedded_binary_name(self.version)
        embedded_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weaviate-embedded"
        candidates = [self.root / "bin" / cached, embedded_cache / cached, self.root / "bin" / "weaviate-server"]
        on_path = shutil.which("weaviate-server")
        if on_path:
            candidates.append(Path(on_path))
        gobin = _go_bin_dir()
        if gobin is not None:
            candidates.append(gobin / "weaviate-server")
        for path in candidates:
            if path.is_file() and os.access(path, os.X_OK) and self._version_of(path) == self.version:
                return path
        return None

    def _version_of(self, binary: Path) -> str | None:
        """The server has no --version flag: trust the embedded-mode cache name, else read Go's build info."""
        if binary.name == embedded_binary_name(self.version):
            return self.version
        marker = b"\nmod\tgithub.com/weaviate/weaviate\tv"
        try:
            with binary.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                at = data.find(marker)
                if at < 0:
                    return None
                start = at + len(marker)
                return data[start : data.find(b"\t", start)].decode("ascii", "replace")
        except (OSError, ValueError):
            return None

    def install(self, method: str = "auto") -> Path:
        """Get the pinned server binary. method: auto (existing, else download, else go), download, go."""
        found = self.find_binary()
        if found is not None:
            return found
        errors: list[str] = []
        if method in ("auto", "download"):
            try:
                return self._download()
            except (httpx.HTTPError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
                errors.append(f"download failed ({exc.__class__.__name__}: {exc})")
        if method in ("auto", "go"):
            try:
                return self._go_install()
            except (OSError, subprocess.CalledProcessError) as exc:
                errors.append(f"go install failed ({exc})")
        raise StoreError(
            f"no Weaviate {self.version} server binary: {'; '.join(errors)}. "
            "Install Go (https://go.dev/dl) and run `switchboard weaviate install --method go`, or set WEAVIATE_URL"
        )

    def _download(self) -> Path:
        url = _release_url(self.version)
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        archive = bin_dir / ("download.zip" if url.endswith(".zip") else "download.tgz")
        logger.info("downloading %s", url)
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response, archive.open("wb") as out:
            response.raise_for_status()
            for block in response.iter_bytes():
                out.write(block)
        if url.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extract("weaviate", path=bin_dir)
        else:
            with tarfile.open(archive) as tar:
                tar.extract("weaviate", path=bin_dir, filter="data")
        archive.unlink()
        target = bin_dir / embedded_binary_name(self.version)
        (bin_dir / "weaviate").rename(target)
        target.chmod(0o755)
        return target

    def _go_install(self) -> Path:
        """Build from the Go module proxy (checksummed by the Go sum database) into Go's own bin directory."""
        go, bin_dir = shutil.which("go"), _go_bin_dir()
        if go is None or bin_dir is None:
            raise OSError("the Go toolchain is not on PATH")
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
        logger.info("building Weaviate %s with go install (a few minutes on first run)", self.version)
        subprocess.run(
            [go, "install", "-trimpath", "-ldflags=-s -w", f"{GO_MODULE}@v{self.version}"], env=env, check=True
        )
        return bin_dir / "weaviate-server"

    # --- the process ------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        p = self.http_port
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(self.root)),
            "PERSISTENCE_DATA_PATH": str(self.root / "data"),
            "DEFAULT_VECTORIZER_MODULE": "none",
            "ENABLE_MODULES": "",
            "DISABLE_TELEMETRY": "true",
            "GO_PROFILING_DISABLE": "true",
            "LOG_LEVEL": "warning",
            "QUERY_DEFAULTS_LIMIT": "25",
            "CLUSTER_HOSTNAME": self.node,
            "CLUSTER_IN_LOCALHOST": "true",
            "CLUSTER_BIND_ADDR": "127.0.0.1",
            "CLUSTER_ADVERTISE_ADDR": "127.0.0.1",
            **{name: str(p + k) for name, k in CLUSTER_PORTS.items()},
            "RAFT_BOOTSTRAP_EXPECT": str(len(self.cluster) or 1),
            "GRPC_PORT": str(self.grpc_port),
            "AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED": "false",
            "AUTHENTICATION_APIKEY_ENABLED": "true",
            "AUTHENTICATION_APIKEY_ALLOWED_KEYS": self.api_key,
            "AUTHENTICATION_APIKEY_USERS": "switchboard",
            "CLUSTER_BASIC_AUTH_USERNAME": "switchboard",
            "CLUSTER_BASIC_AUTH_PASSWORD": secret_file(self.root / "cluster-password"),
            **self._cluster_environment(),
            **self.extra_env,
        }

    def _cluster_environment(self) -> dict[str, str]:
        if not self.cluster:
            return {}
        # RAFT_JOIN needs each node's RAFT port: names alone dial the default port and never elect a leader.
        return {
            "CLUSTER_JOIN": f"127.0.0.1:{self.cluster[0][1] + 1}",
            "RAFT_JOIN": ",".join(f"{name}:{port + 3}" for name, port in self.cluster),
        }

    def _ready(self) -> bool:
        """Ready and ours: the readiness probe answers and our key is accepted."""
        try:
            ready = httpx.get(f"{self.url}/v1/.well-known/ready", timeout=2)
            if ready.status_code != 200:
                return False
            meta = httpx.get(f"{self.url}/v1/meta", headers={"Authorization": f"Bearer {self.api_key}"}, timeout=2)
        except httpx.HTTPError:
            return False
        if meta.status_code == 401:
            raise StoreError(
                f"port {self.http_port} is used by another Weaviate that does not accept this kit's key; "
                "set WEAVIATE_LOCAL_PORT to a free port or WEAVIATE_URL to use that server"
            )
        return meta.status_code == 200

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(name="weaviate", root=self.root, ready=self._ready, error=StoreError)

    def running(self) -> bool:
        return self._ready()

    def start(self) -> bool:
        """Start the server unless ours is already up. Returns True when this call started it."""
        if self._ready():
            return False
        binary = self.install()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        argv = [str(binary), "--host", "127.0.0.1", "--port", str(self.http_port), "--scheme", "http"]
        return self.process.start(argv, self._environment(), self.startup_timeout)

    def stop(self) -> None:
        """Graceful SIGTERM flushes Weaviate's write-ahead log."""
        self.process.stop()
