"""The trial database: SQLite in the run directory, the single source of truth.

WAL mode with synchronous=FULL: every event is committed before the agent acts on
it, so a run killed at any moment loses at most the epoch in flight. The report,
`automl report` and resume read only this database.
"""
from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

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

PENDING, RUNNING = "PENDING", "RUNNING"
FINISHED = ("COMPLETE", "PRUNED", "FAILED")


def _dumps(value: Any) -> str:
    # NaN/inf are not JSON; store them as null so every reader can parse the row
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), sort_keys=True)


@dataclass
class TrialRecord:
    trial_id: str
    seq: int
    family: str | None
    config: dict[str, Any]
    budget: float | None
    resume_from: str | None
    status: str
    loss: float | None
    metrics: dict[str, Any]
    epochs: int
    reason: str | None
    error: str | None
    worker: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class TrialStore:
    """One SQLite database; safe to use from the driver's threads."""

    FILENAME = "trials.db"

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, tuple(params))
                self._db.execute("COMMIT")
            except BaseException:
                # a signal can land after COMMIT succeeded: then there is nothing to roll back
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        with self._lock:
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
                    (trial_id, seq, family, _dumps(config), budget, resume_from, PENDING, time.time()))

    def start_trial(self, trial_id: str, worker: str | None = None) -> float:
        """Mark it running; returns when it first started (a resumed trial keeps its first start)."""
        self._write("UPDATE trials SET status=?, started_at=COALESCE(started_at, ?), worker=? WHERE trial_id=?",
                    (RUNNING, time.time(), worker, trial_id))
        return self._read("SELECT started_at FROM trials WHERE trial_id=?", (trial_id,))[0][0]

    def add_epoch(self, trial_id: str, epoch: int, metrics: dict[str, float], elapsed: float) -> None:
        # REPLACE: a trial resumed from its checkpoint may report the epoch in flight again
        self._write("INSERT OR REPLACE INTO epochs(trial_id, epoch, metrics, elapsed, recorded_at) VALUES(?, ?, ?, ?, ?)",
                    (trial_id, epoch, _dumps(metrics), elapsed, time.time()))

    def finish_trial(self, trial_id: str, status: str, *, loss: float | None, metrics: dict[str, Any] | None = None,
                     epochs: int = 0, reason: str | None = None, error: str | None = None) -> None:
        if status not in FINISHED:
            raise ValueError(f"not a final status: {status}")
        if loss is not None and not math.isfinite(loss):
            loss = None
        self._write("UPDATE trials SET status=?, loss=?, metrics=?, epochs=?, reason=?, error=?, finished_at=? "
                    "WHERE trial_id=?",
                    (status, loss, _dumps(metrics or {}), epochs, reason, error, time.time(), trial_id))

    def add_attempt(self, trial_id: str, attempt: int, reason: str, error: str | None,
                    overrides: dict[str, Any] | None = None) -> None:
        """An attempt of a trial that failed and was retried (a crashed worker, out of memory)."""
        self._write("INSERT OR REPLACE INTO attempts(trial_id, attempt, reason, error, overrides, recorded_at) "
                    "VALUES(?, ?, ?, ?, ?, ?)", (trial_id, attempt, reason, error, _dumps(overrides or {}), time.time()))

    def attempts(self) -> list[dict[str, Any]]:
        rows = self._read("SELECT trial_id, attempt, reason, error, overrides, recorded_at FROM attempts "
                          "ORDER BY recorded_at")
        return [{"trial_id": t, "attempt": a, "reason": r, "error": e, "overrides": json.loads(o), "recorded_at": at}
                for t, a, r, e, o, at in rows]

    def reset_trial(self, trial_id: str) -> None:
        """Back to PENDING (a trial interrupted by a crash, to be run again)."""
        self._write("UPDATE trials SET status=?, worker=NULL WHERE trial_id=?", (PENDING, trial_id))

    def counts(self) -> dict[str, int]:
        """Trials by status, and "total"."""
        rows = self._read("SELECT status, COUNT(*) FROM trials GROUP BY status")
        counts = {status: n for status, n in rows}
        counts["total"] = sum(n for _, n in rows)
        return counts

    _COLUMNS = ("trial_id, seq, family, config, budget, resume_from, status, loss, metrics, epochs, reason, error, "
                "worker, created_at, started_at, finished_at")

    def _record(self, row: tuple) -> TrialRecord:
        (trial_id, seq, family, config, budget, resume_from, status, loss, metrics, epochs, reason, error,
         worker, created_at, started_at, finished_at) = row
        return TrialRecord(trial_id, seq, family, json.loads(config), budget, resume_from, status, loss,
                           json.loads(metrics), epochs, reason, error, worker, created_at, started_at, finished_at)

    def trials(self, *, with_history: bool = False) -> list[TrialRecord]:
        records = [self._record(r) for r in self._read(f"SELECT {self._COLUMNS} FROM trials ORDER BY seq")]
        if with_history:
            histories = self.histories()
            for record in records:
                record.history = histories.get(record.trial_id, [])
        return records

    def trial(self, trial_id: str) -> TrialRecord | None:
        rows = self._read(f"SELECT {self._COLUMNS} FROM trials WHERE trial_id=?", (trial_id,))
        if not rows:
            return None
        record = self._record(rows[0])
        record.history = self.history(trial_id)
        return record

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
    scored = [t for t in trials if t.status in ("COMPLETE", "PRUNED") and t.loss is not None and math.isfinite(t.loss)]
    return sorted(scored, key=rank_key)


def best_trial(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    ranked = ranked_trials(trials)
    return ranked[0] if ranked else None
