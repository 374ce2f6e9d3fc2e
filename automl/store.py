"""The trial database: SQLite in the run directory, the single source of truth.

WAL mode. Every event is committed before the agent acts on it, so a process killed at any
moment (the driver, a worker, by SIGKILL or a crash) loses nothing committed. A trial's own
records (created, finished, an attempt, the meta documents) are written with synchronous=FULL:
their commit waits for the disk, so they survive a power loss or an OS crash too. Its epoch rows
and its start are written with synchronous=NORMAL: committed to the WAL without waiting for the
disk (a few ms per epoch otherwise), durable against any process crash; a power loss can take
the last of them back, and the trial then re-runs those epochs from its checkpoint (which is
not synced either), recording them again. The next FULL commit syncs them with it. The report,
`automl report` and resume read only this database.

The schema version is kept in `PRAGMA user_version`. A writable store migrates an older
database on open, in one transaction; a read-only store (the report, while a run may be
writing) never writes, and reads an older database by translating its rows.
"""
from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from automl.errors import DiskFullError, RunDirError
from automl.files import disk_full, dumps_strict
from automl.records import Reason, Status
from automl.store_file import connect, guarded, quick_check

log = logging.getLogger(__name__)

# the current schema, created as is in a new database
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    family TEXT,
    config TEXT NOT NULL,
    budget REAL,
    resume_from TEXT,
    status TEXT NOT NULL,
    loss REAL,
    metrics TEXT NOT NULL DEFAULT '{}',
    epochs INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    error TEXT,
    worker TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS attempts (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    attempt INTEGER NOT NULL,
    reason TEXT NOT NULL,
    error TEXT,
    overrides TEXT NOT NULL DEFAULT '{}',
    recorded_at REAL NOT NULL,
    PRIMARY KEY (trial_id, attempt)
);
CREATE TABLE IF NOT EXISTS epochs (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    epoch INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    elapsed REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (trial_id, epoch)
);
"""

# reason texts of schema 0 that are not `Reason` values; its other texts ("exception", "oom",
# "diverged", "timeout", "crashed") already are
LEGACY_REASONS = {
    "stopped early by the strategy or the driver": Reason.STOPPED,
    "early stopped": Reason.EARLY_STOPPED,
    "no finite validation score": Reason.NO_SCORE,
    "non-finite": Reason.NON_FINITE,
}


def reason_of(text: str | None, error: str | None) -> tuple[Reason | None, str | None]:
    """A stored reason as a `Reason`, with the error to keep. A text no version knows (a row
    edited by hand) reads as EXCEPTION, its text kept as the error when there is none."""
    if text is None:
        return None, error
    if text in LEGACY_REASONS:
        return LEGACY_REASONS[text], error
    try:
        return Reason(text), error
    except ValueError:
        return Reason.EXCEPTION, error or text


def _reasons_to_enum(db: sqlite3.Connection) -> None:
    """Schema 0 -> 1: reasons become `Reason` values."""
    for table in ("trials", "attempts"):
        for rowid, text, error in db.execute(f"SELECT rowid, reason, error FROM {table} WHERE reason IS NOT NULL"
                                             ).fetchall():
            reason, kept = reason_of(text, error)
            if (reason.value, kept) != (text, error):
                db.execute(f"UPDATE {table} SET reason=?, error=? WHERE rowid=?", (reason.value, kept, rowid))


# MIGRATIONS[n] takes a database from schema version n to n + 1; append, never edit
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_reasons_to_enum]
SCHEMA_VERSION = len(MIGRATIONS)

def _dumps(value: Any) -> str:
    return dumps_strict(value, sort_keys=True)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as committed. Strings given for `status` and `reason` are checked and converted."""

    trial_id: str
    seq: int
    family: str | None
    config: Mapping[str, Any]
    budget: float | None
    resume_from: str | None
    status: Status
    loss: float | None
    metrics: Mapping[str, Any]
    epochs: int
    reason: Reason | None
    error: str | None
    worker: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    history: tuple[Mapping[str, Any], ...] = ()  # per-epoch metrics, epoch 1 first (when loaded)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))
        if self.reason is not None:
            object.__setattr__(self, "reason", Reason(self.reason))
        object.__setattr__(self, "history", tuple(self.history))

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def finished(self) -> bool:
        return self.status.finished


class TrialStore:
    """One SQLite database; safe to use from the driver's threads.

    Raises RunDirError when the file is damaged (`PRAGMA quick_check` on open, unless check=False), not
    a trial database, or written by a newer automl.
    """

    FILENAME = "trials.db"

    def __init__(self, path: str | Path, *, readonly: bool = False, check: bool = True):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self._durable: bool | None = None  # the connection's synchronous setting: FULL (True) or NORMAL
        self._db = connect(self.path, readonly)
        try:
            with self._guard():
                self._open(check)
        except BaseException:
            self._db.close()
            raise

    def _open(self, check: bool) -> None:
        if check:
            quick_check(self._db, self.path)
        self._check_version(self._db.execute("PRAGMA user_version").fetchone()[0])
        if self.readonly:
            if not self._has_tables():
                raise RunDirError(f"{self.path} holds no trial tables: the run has not started writing it yet, or "
                                  "it is not an automl trial database")
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._synchronous(True)
        self._upgrade()

    def _synchronous(self, durable: bool) -> None:
        """FULL (the commit waits for the disk) or NORMAL (durable against process crashes): see the module doc."""
        if self._durable != durable:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise RunDirError(f"{self.path} has schema version {version}, written by a newer automl than this one "
                              f"(which reads up to version {SCHEMA_VERSION}); upgrade automl to use it")

    def _has_tables(self) -> bool:
        return bool(self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='trials'").fetchall())

    def _upgrade(self) -> None:
        """Create a new database at the current version, or migrate an older one: all in one transaction."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")  # inside the try: a signal can land just after it succeeded
            version = db.execute("PRAGMA user_version").fetchone()[0]  # again, now that no one else can write
            self._check_version(version)
            if version < SCHEMA_VERSION:
                if not self._has_tables():
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        db.execute(statement)  # not executescript: it would commit
                else:
                    for step in MIGRATIONS[version:]:
                        step(db)
                    log.info("migrated %s from schema version %d to %d", self.path, version, SCHEMA_VERSION)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _guard(self):
        return guarded(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Iterable[Any] = (), *, durable: bool = True) -> None:
        with self._lock, self._guard():
            self._synchronous(durable)  # outside the transaction: SQLite ignores it inside one
            try:
                # BEGIN inside the try: a signal (SIGTERM raises in the main thread) can land just after
                # BEGIN succeeded, and the open transaction would refuse every later write
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(sql, tuple(params))
                self._db.execute("COMMIT")
            except BaseException as error:
                # it can also land after COMMIT succeeded: then there is nothing to roll back
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if disk_full(error):  # SQLITE_FULL: nothing half-committed; the run resumes once space is freed
                    raise DiskFullError(self.path) from error
                raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock, self._guard():
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- meta: small JSON documents about the run (spec, profile, choices, final results)
    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (key, _dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    # -- trials
    def add_trial(self, trial_id: str, config: dict[str, Any], *, budget: float | None = None,
                  resume_from: str | None = None, family: str | None = None) -> None:
        seq = self._read("SELECT COALESCE(MAX(seq), -1) + 1 FROM trials")[0][0]
        self._write("INSERT INTO trials(trial_id, seq, family, config, budget, resume_from, status, created_at) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                    (trial_id, seq, family, _dumps(config), budget, resume_from, Status.PENDING.value, time.time()))

    def start_trial(self, trial_id: str, worker: str | None = None) -> float:
        """Mark it running; returns when it first started (a resumed trial keeps its first start)."""
        # not synced: lost to a power loss, the trial is still resumed (it is not finished either way)
        self._write("UPDATE trials SET status=?, started_at=COALESCE(started_at, ?), worker=? WHERE trial_id=?",
                    (Status.RUNNING.value, time.time(), worker, trial_id), durable=False)
        return self._read("SELECT started_at FROM trials WHERE trial_id=?", (trial_id,))[0][0]

    def add_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float], elapsed: float) -> None:
        # REPLACE: a trial resumed from its checkpoint reports the epochs since that checkpoint again.
        # Not synced (see the module doc): the epochs a power loss could take back are re-run on resume
        self._write("INSERT OR REPLACE INTO epochs(trial_id, epoch, metrics, elapsed, recorded_at) VALUES(?, ?, ?, ?, ?)",
                    (trial_id, epoch, _dumps(metrics), elapsed, time.time()), durable=False)

    def finish_trial(self, trial_id: str, status: Status | str, *, loss: float | None,
                     metrics: Mapping[str, Any] | None = None, epochs: int = 0, reason: Reason | str | None = None,
                     error: str | None = None) -> None:
        status = Status(status)
        if not status.finished:
            raise ValueError(f"not a final status: {status.value}")
        reason = None if reason is None else Reason(reason).value
        if loss is not None and not math.isfinite(loss):
            loss = None
        self._write("UPDATE trials SET status=?, loss=?, metrics=?, epochs=?, reason=?, error=?, finished_at=? "
                    "WHERE trial_id=?",
                    (status.value, loss, _dumps(dict(metrics or {})), epochs, reason, error, time.time(), trial_id))

    def add_attempt(self, trial_id: str, attempt: int, reason: Reason | str, error: str | None,
                    overrides: dict[str, Any] | None = None) -> None:
        """An attempt of a trial that failed and was retried (a crashed worker, out of memory)."""
        self._write("INSERT OR REPLACE INTO attempts(trial_id, attempt, reason, error, overrides, recorded_at) "
                    "VALUES(?, ?, ?, ?, ?, ?)",
                    (trial_id, attempt, Reason(reason).value, error, _dumps(overrides or {}), time.time()))

    def attempts(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT trial_id, attempt, reason, error, overrides, recorded_at FROM attempts "
                          "ORDER BY recorded_at")
        out = []
        for trial_id, attempt, text, error, overrides, recorded_at in rows:
            reason, error = reason_of(text, error)
            out.append({"trial_id": trial_id, "attempt": attempt, "reason": reason, "error": error,
                        "overrides": json.loads(overrides), "recorded_at": recorded_at})
        return out

    def reset_trial(self, trial_id: str) -> None:
        """Back to PENDING (a trial interrupted by a crash, to be run again)."""
        self._write("UPDATE trials SET status=?, worker=NULL WHERE trial_id=?", (Status.PENDING.value, trial_id))

    def counts(self) -> dict[str, int]:
        """Trials by status, and "total"."""
        rows = self._read("SELECT status, COUNT(*) FROM trials GROUP BY status")
        counts = {status: n for status, n in rows}
        counts["total"] = sum(n for _, n in rows)
        return counts

    def full_trainings(self, max_budget: float) -> float:
        """The work of every trial in full trainings of `max_budget` epochs: a finished trial counts
        the epochs it trained (its budget when it recorded none: an `optimize` objective, a trial that
        failed at once), one still to run its budget, each less the epochs it continues from."""
        rows = self._read("SELECT t.budget, t.status, t.epochs, p.budget, p.epochs FROM trials t "
                          "LEFT JOIN trials p ON p.trial_id = t.resume_from")
        epochs = 0.0
        for budget, status, trained, parent_budget, parent_epochs in rows:
            end = trained if Status(status).finished and trained else (budget or max_budget)
            start = parent_epochs or parent_budget or 0
            epochs += max(0.0, end - start)
        return epochs / max_budget

    _COLUMNS = ("trial_id, seq, family, config, budget, resume_from, status, loss, metrics, epochs, reason, error, "
                "worker, created_at, started_at, finished_at")

    @staticmethod
    def _record(row: tuple, history: Iterable[Mapping[str, Any]] = ()) -> TrialRecord:
        (trial_id, seq, family, config, budget, resume_from, status, loss, metrics, epochs, text, error,
         worker, created_at, started_at, finished_at) = row
        reason, error = reason_of(text, error)  # a database of schema 0, read without migrating it
        return TrialRecord(trial_id, seq, family, json.loads(config), budget, resume_from, Status(status), loss,
                           json.loads(metrics), epochs, reason, error, worker, created_at, started_at, finished_at,
                           tuple(history))

    def trials(self, *, with_history: bool = False) -> list[TrialRecord]:
        rows = self._read(f"SELECT {self._COLUMNS} FROM trials ORDER BY seq")
        histories = self.histories() if with_history else {}
        return [self._record(row, histories.get(row[0], ())) for row in rows]

    def trial(self, trial_id: str) -> TrialRecord | None:
        rows = self._read(f"SELECT {self._COLUMNS} FROM trials WHERE trial_id=?", (trial_id,))
        return self._record(rows[0], self.history(trial_id)) if rows else None

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        """Per-epoch metrics of one trial, each with `epoch` and `elapsed`."""
        rows = self._read("SELECT epoch, metrics, elapsed FROM epochs WHERE trial_id=? ORDER BY epoch", (trial_id,))
        return [{"epoch": e, "elapsed": t, **json.loads(m)} for e, m, t in rows]

    def histories(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for trial_id, epoch, metrics, elapsed in self._read(
                "SELECT trial_id, epoch, metrics, elapsed FROM epochs ORDER BY trial_id, epoch"):
            out.setdefault(trial_id, []).append({"epoch": epoch, "elapsed": elapsed, **json.loads(metrics)})
        return out


def rank_key(trial: TrialRecord) -> tuple:
    """Lower is better: the loss, then the validation loss (it breaks the ties a small
    validation set makes in accuracy-like metrics), then the earlier trial."""
    val_loss = trial.metrics.get("val_loss")
    tie = val_loss if isinstance(val_loss, (int, float)) and math.isfinite(val_loss) else math.inf
    return (trial.loss, tie, trial.seq)


def ranked_trials(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Trials that produced a score, best first. A pruned trial counts: its best epoch is a real measurement."""
    scored = [t for t in trials if t.status in (Status.COMPLETE, Status.PRUNED)
              and t.loss is not None and math.isfinite(t.loss)]
    return sorted(scored, key=rank_key)


def best_trial(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    ranked = ranked_trials(trials)
    return ranked[0] if ranked else None
