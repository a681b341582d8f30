"""Local server processes the kit runs for the user (Weaviate, the local LLM): start, reuse, stop.

A server is detached from the command that starts it (so `switchboard weaviate start` can return) and is
found again through a state file holding its pid. Readiness is the caller's probe, which must also prove
the server is ours (it accepts our generated key), so a stranger on the port is never reused or killed.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import SwitchboardError
from core.private import private_dir, private_file

logger = logging.getLogger(__name__)


def secret_file(path: Path) -> str:
    """A random secret created once, in a directory and a file readable by the owner only (an existing file
    that others could read is tightened)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = private_file(path).read_text().strip()
        if existing:
            return existing
        # Left empty by a crash between creating and writing it: an empty secret must never sign anything.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that has exited is a zombie until reaped
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass(kw_only=True)
class ManagedProcess:
    name: str
    root: Path  # holds <name>.json (pid) and <name>.log
    ready: Callable[[], bool]
    error: type[SwitchboardError]

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def _state(self) -> Path:
        return self.root / f"{self.name}.json"

    def pid(self) -> int | None:
        try:
            pid = int(json.loads(self._state.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None
        return pid if pid_alive(pid) else None

    def start(self, argv: list[str], env: dict[str, str], timeout: float) -> bool:
        """Start unless ours is already up. True when this call started it."""
        if self.ready():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        # The server outlives this Popen on purpose; stop() finds it by pid.
        warnings.filterwarnings("ignore", f"subprocess {process.pid} is still running", ResourceWarning)
        self._state.write_text(json.dumps({"pid": process.pid}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise self.error(
                    f"{self.name} exited with code {process.returncode} while starting; see {self.log_path}"
                )
            if self.ready():
                logger.info("%s ready (pid %d)", self.name, process.pid)
                return True
            time.sleep(0.25)
        self.stop()
        raise self.error(f"{self.name} did not become ready in {timeout:.0f}s; see {self.log_path}")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful SIGTERM, SIGKILL only if it hangs."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(pid):
                if time.monotonic() > deadline:
                    logger.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", self.name, pid, timeout)
                    os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(0.1)
        self._state.unlink(missing_ok=True)
