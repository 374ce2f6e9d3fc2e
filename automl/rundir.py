"""The run directory: who holds it, and whether a spec may resume it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from automl.errors import RunDirError
from automl.files import write_atomic
from automl.store import TrialStore

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"  # who holds the lock: beside it, as Windows cannot read a locked file


class RunLock:
    """An exclusive lock on a run directory, released by the OS if the holder dies.

    Held while this object lives: a dropped RunLock lets go of its lock."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.holder_path = self.run_dir / HOLDER_FILE
        # not thread-local: the run holds it, whichever of its threads lets go
        self._lock = FileLock(self.path, thread_local=False)

    def acquire(self) -> None:
        if self._lock.is_locked:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise self._in_use() from None
        try:
            write_atomic(self.holder_path, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        except BaseException:
            self._lock.release()
            raise

    def check_free(self) -> None:
        """Refuse, naming the holder, a directory whose lock another process holds; create nothing.

        A cheap look before long work (the data load): the lock is taken for an instant only, and
        not at all when the directory or its lock file does not exist yet. `acquire` still decides."""
        if self._lock.is_locked or not self.path.is_file():
            return
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            raise self._in_use() from None
        self._lock.release()

    def _in_use(self) -> RunDirError:
        holder = self.holder()
        return RunDirError(f"run directory {self.run_dir} is in use by process {holder.get('pid', '?')} on "
                           f"host {holder.get('host', '?')} (since {holder.get('since', '?')}); wait for it to "
                           "finish, stop it, or choose another --out")

    def holder(self) -> dict[str, Any]:
        """The pid, host and start of the process holding the lock, as far as it wrote them."""
        try:
            holder = json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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
            if child.name in (LOCK_FILE, HOLDER_FILE):
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
