"""The run directory: who holds it, and whether a spec may resume it."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from automl.errors import RunDirError
from automl.store import TrialStore

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive lock on a run directory, released by the OS if the holder dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(f"run directory {self.path.parent} is in use by process {holder.get('pid', '?')} on "
                              f"host {holder.get('host', '?')} (since {holder.get('since', '?')}); wait for it to "
                              "finish, stop it, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values, by JSON path."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else key
            out += diff(old.get(key), new.get(key), sub)
        return out
    if old != new:
        return [f"{path}: {json.dumps(old)} -> {json.dumps(new)}"]
    return []


def prepare_run_dir(run_dir: Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """Check an existing run directory against the spec. Returns True when resuming.

    Called with the lock held. A changed spec is refused unless overwrite, which
    removes the old run's files.
    """
    db_path = run_dir / TrialStore.FILENAME
    if not db_path.exists():
        return False
    if overwrite:
        for child in run_dir.iterdir():
            if child.name == LOCK_FILE:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        return False
    store = TrialStore(db_path, readonly=True)
    try:
        old = store.get_meta("fingerprint")
    finally:
        store.close()
    if old is not None and old != fingerprint:
        changes = diff(old, fingerprint)
        raise RunDirError(f"the spec changed since {run_dir} was created, so its trials cannot be resumed: "
                          + "; ".join(changes) + ". Use --overwrite to start over there, or another --out.")
    return True
