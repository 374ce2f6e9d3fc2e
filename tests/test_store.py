"""The trial database: schema versions and migration, read-only reading of an older run,
damaged files, and the typed, frozen records it returns."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3

import pytest

import automl.store
from automl.cli import main
from automl.errors import RunDirError
from automl.records import Reason, Status
from automl.store import SCHEMA_VERSION, TrialRecord, TrialStore, best_trial, ranked_trials

# the schema of the released version (user_version 0), as it wrote it
SCHEMA_V0 = """
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

# trial id -> (status, loss, reason text as the released version wrote it, error)
LEGACY_TRIALS = {
    "t0": ("COMPLETE", 0.10, None, None),
    "t1": ("PRUNED", 0.30, "stopped early by the strategy or the driver", None),
    "t2": ("COMPLETE", 0.20, "early stopped", None),
    "t3": ("FAILED", None, "no finite validation score", "val_loss was nan in every epoch"),
    "t4": ("FAILED", None, "non-finite", None),
    "t5": ("FAILED", None, "oom", "CUDA out of memory"),
    "t6": ("FAILED", None, "diverged", "loss became nan"),
    "t7": ("FAILED", None, "timeout", "killed after 60 s"),
    "t8": ("FAILED", None, "crashed", "exited with code -9"),
    "t9": ("FAILED", None, "exception", "Traceback...\nValueError: bad"),
    "t10": ("FAILED", None, "a text no version wrote", None),  # edited by hand
    "t11": ("FAILED", None, "another unknown text", "the original error"),
    "t12": ("RUNNING", None, None, None),
}
EXPECTED = {"t0": (None, None), "t1": (Reason.STOPPED, None), "t2": (Reason.EARLY_STOPPED, None),
            "t3": (Reason.NO_SCORE, "val_loss was nan in every epoch"), "t4": (Reason.NON_FINITE, None),
            "t5": (Reason.OOM, "CUDA out of memory"), "t6": (Reason.DIVERGED, "loss became nan"),
            "t7": (Reason.TIMEOUT, "killed after 60 s"), "t8": (Reason.CRASHED, "exited with code -9"),
            "t9": (Reason.EXCEPTION, "Traceback...\nValueError: bad"),
            "t10": (Reason.EXCEPTION, "a text no version wrote"), "t11": (Reason.EXCEPTION, "the original error"),
            "t12": (None, None)}


@pytest.fixture
def legacy_db(tmp_path):
    """A trials.db as the released version left it: user_version 0 and free-text reasons."""
    path = tmp_path / "trials.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_V0)
    db.execute("INSERT INTO meta VALUES('metric', ?)", (json.dumps("accuracy"),))
    for seq, (trial_id, (status, loss, reason, error)) in enumerate(LEGACY_TRIALS.items()):
        db.execute("INSERT INTO trials(trial_id, seq, family, config, status, loss, metrics, epochs, reason, error, "
                   "created_at, started_at, finished_at) VALUES(?, ?, 'mlp', ?, ?, ?, ?, 2, ?, ?, ?, ?, ?)",
                   (trial_id, seq, json.dumps({"lr": 0.01 * (seq + 1)}), status, loss,
                    json.dumps({"val_loss": loss} if loss is not None else {}), reason, error, 1.0 + seq, 2.0 + seq,
                    None if status == "RUNNING" else 3.0 + seq))
        for epoch in (1, 2):
            db.execute("INSERT INTO epochs VALUES(?, ?, ?, ?, ?)",
                       (trial_id, epoch, json.dumps({"val_loss": 1.0 / epoch}), 0.5 * epoch, 10.0))
    db.execute("INSERT INTO attempts VALUES('t8', 0, 'crashed', 'exited with code -9', '{}', 5.0)")
    db.execute("INSERT INTO attempts VALUES('t5', 0, 'failed', NULL, '{\"batch_size\": 16}', 6.0)")
    db.commit()
    db.close()
    return path


def user_version(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def raw_reasons(path) -> dict[str, str | None]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT trial_id, reason FROM trials"))
    finally:
        db.close()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_reads_like_the_old_run(store: TrialStore) -> None:
    trials = store.trials(with_history=True)
    assert [t.trial_id for t in trials] == list(LEGACY_TRIALS)
    for t in trials:
        assert (t.reason, t.error) == EXPECTED[t.trial_id], t.trial_id
        assert t.reason is None or type(t.reason) is Reason
        assert type(t.status) is Status and t.status == LEGACY_TRIALS[t.trial_id][0]
        assert [h["epoch"] for h in t.history] == [1, 2] and t.history[1]["val_loss"] == 0.5
    assert best_trial(trials).trial_id == "t0"
    assert [t.trial_id for t in ranked_trials(trials)] == ["t0", "t2", "t1"]
    assert store.get_meta("metric") == "accuracy"
    assert [(a["trial_id"], a["reason"], a["error"]) for a in store.attempts()] == [
        ("t8", Reason.CRASHED, "exited with code -9"), ("t5", Reason.EXCEPTION, "failed")]


def test_an_old_database_opened_for_writing_is_migrated(legacy_db):
    store = TrialStore(legacy_db)
    try:
        assert_reads_like_the_old_run(store)
        store.finish_trial("t12", Status.COMPLETE, loss=0.05)  # and the run goes on
        assert best_trial(store.trials()).trial_id == "t12"
    finally:
        store.close()
    assert user_version(legacy_db) == SCHEMA_VERSION == 1
    stored = raw_reasons(legacy_db)
    assert stored["t1"] == "stopped" and stored["t2"] == "early_stopped" and stored["t3"] == "no_score"
    assert stored["t4"] == "non_finite" and stored["t10"] == "exception" and stored["t0"] is None
    assert all(text is None or Reason(text) for text in stored.values())


def test_a_failed_migration_leaves_the_database_as_it_was(legacy_db, monkeypatch):
    def broken_step(db):
        raise RuntimeError("step 1 -> 2 failed")

    monkeypatch.setattr(automl.store, "MIGRATIONS", [*automl.store.MIGRATIONS, broken_step])
    monkeypatch.setattr(automl.store, "SCHEMA_VERSION", 2)
    with pytest.raises(RuntimeError, match="step 1 -> 2"):
        TrialStore(legacy_db)
    assert user_version(legacy_db) == 0
    assert raw_reasons(legacy_db)["t1"] == "stopped early by the strategy or the driver"


def test_an_old_database_read_only_reads_correctly_and_is_left_untouched(legacy_db):
    before = digest(legacy_db)
    store = TrialStore(legacy_db, readonly=True)
    try:
        assert_reads_like_the_old_run(store)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.set_meta("x", 1)
    finally:
        store.close()
    # SQLite may add an empty -wal and an -shm index beside a WAL database; the database is as it was
    assert digest(legacy_db) == before
    wal = legacy_db.with_name("trials.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert user_version(legacy_db) == 0


def test_a_new_database_is_created_at_the_current_version(tmp_path):
    store = TrialStore(tmp_path / "run" / "trials.db")
    store.add_trial("t0", {"lr": 0.1})
    store.close()
    assert user_version(tmp_path / "run" / "trials.db") == SCHEMA_VERSION
    again = TrialStore(tmp_path / "run" / "trials.db")  # reopening changes nothing
    assert [t.trial_id for t in again.trials()] == ["t0"]
    again.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_a_database_from_a_newer_automl_is_refused(tmp_path, readonly):
    path = tmp_path / "trials.db"
    TrialStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(RunDirError) as caught:
        TrialStore(path, readonly=readonly)
    message = str(caught.value)
    assert str(path) in message and f"version {SCHEMA_VERSION + 5}" in message and "upgrade automl" in message
    assert path.read_bytes() == before


def _many_trials(path, n=200) -> None:
    store = TrialStore(path)
    for i in range(n):
        store.add_trial(f"t{i}", {"text": "x" * 300, "i": i})
    store.close()


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "header"])
def test_a_damaged_file_is_refused_naming_it(tmp_path, damage, readonly):
    path = tmp_path / "trials.db"
    if damage == "garbage":
        path.write_text("these are not the trials you are looking for\n" * 50)
    else:
        _many_trials(path)
        if damage == "truncated":
            os.truncate(path, path.stat().st_size // 2)
        else:
            with open(path, "r+b") as f:
                f.write(b"\0" * 16)  # the "SQLite format 3" magic
    with pytest.raises(RunDirError) as caught:
        TrialStore(path, readonly=readonly)
    assert str(path) in str(caught.value) and "another --out" in str(caught.value)


def test_a_damaged_page_is_reported_on_the_first_read(tmp_path):
    path = tmp_path / "trials.db"
    _many_trials(path)
    with open(path, "r+b") as f:  # the header stays intact: the store opens
        f.seek(4096 * 3)
        f.write(b"\xff" * 4096 * 4)
    with pytest.raises(RunDirError, match="trials.db.*integrity check: Page"):  # unless the check on open is off
        TrialStore(path, readonly=True)
    store = TrialStore(path, readonly=True, check=False)
    try:
        with pytest.raises(RunDirError, match="trials.db"):
            store.trials()
    finally:
        store.close()


def test_report_on_a_damaged_database_says_what_to_do(tmp_path):
    from click.testing import CliRunner

    (tmp_path / "trials.db").write_text("not a database")
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "trials.db" in result.output and "restore it" in result.output
    assert "Traceback" not in result.output


def test_records_are_typed_and_frozen(tmp_path):
    store = TrialStore(tmp_path / "trials.db")
    try:
        store.add_trial("t0", {"lr": 0.1})
        store.start_trial("t0", "w0")
        store.add_epoch("t0", 1, {"val_loss": float("nan"), "accuracy": 0.5}, 0.1)
        store.finish_trial("t0", "PRUNED", loss=0.5, metrics={"val_loss": float("inf")}, epochs=1, reason="stopped")
        record = store.trial("t0")
    finally:
        store.close()
    assert record.status is Status.PRUNED and record.reason is Reason.STOPPED and record.finished
    assert record.history == ({"epoch": 1, "elapsed": 0.1, "val_loss": None, "accuracy": 0.5},)
    assert record.metrics == {"val_loss": None} and record.duration >= 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.history = ()
    assert dataclasses.replace(record, history=[{"epoch": 2}]).history == ({"epoch": 2},)


def test_writes_refuse_a_status_or_reason_nobody_knows(tmp_path):
    store = TrialStore(tmp_path / "trials.db")
    try:
        store.add_trial("t0", {})
        with pytest.raises(ValueError, match="final"):
            store.finish_trial("t0", Status.RUNNING, loss=None)
        with pytest.raises(ValueError):
            store.finish_trial("t0", "DONE", loss=None)
        with pytest.raises(ValueError):
            store.finish_trial("t0", Status.FAILED, loss=None, reason="it broke")
        with pytest.raises(ValueError):
            store.add_attempt("t0", 0, "failed", None)
        assert store.trial("t0").status is Status.PENDING
        store.finish_trial("t0", Status.FAILED, loss=None, reason=Reason.OOM, error="out of memory")
        store.add_attempt("t0", 0, "crashed", None)
        assert store.trial("t0").reason is Reason.OOM
    finally:
        store.close()
    with pytest.raises(ValueError):
        TrialRecord("t", 0, None, {}, None, None, "DONE", None, {}, 0, None, None, None, 0.0, None, None)


class _InterruptAfterBegin:
    """A connection that raises, as a SIGTERM handler would, just after BEGIN succeeded."""

    def __init__(self, db: sqlite3.Connection):
        self._db, self.armed = db, True

    def execute(self, sql, *args):
        cursor = self._db.execute(sql, *args)
        if self.armed and sql == "BEGIN IMMEDIATE":
            self.armed = False
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name):
        return getattr(self._db, name)


def test_a_signal_just_after_begin_leaves_no_open_transaction(tmp_path):
    store = TrialStore(tmp_path / "trials.db")
    try:
        store.add_trial("t0", {})
        real, store._db = store._db, _InterruptAfterBegin(store._db)
        with pytest.raises(KeyboardInterrupt):
            store.start_trial("t0", "w0")
        store._db = real
        assert not real.in_transaction
        store.set_meta("elapsed_before", 1.5)  # what the driver writes on its way out
        assert store.get_meta("elapsed_before") == 1.5 and store.trial("t0").status is Status.PENDING
    finally:
        store.close()
