"""What the trial database keeps when a process dies, and what it waits for the disk for: a trial's own
records are synced (they survive a power loss), epoch rows are committed without a sync (a resume runs
them again from the trial's checkpoint); an epoch recorded again replaces its row."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from automl.records import Status
from automl.store import TrialStore

SYNCHRONOUS = {1: "NORMAL", 2: "FULL"}


class CommitSpy:
    """Wraps the store's connection: the synchronous setting in force at each COMMIT, with the statement before it."""

    def __init__(self, db):
        self.db = db
        self.commits: list[tuple[str, str]] = []
        self._last = ""

    def execute(self, sql, *args):
        if sql == "COMMIT":
            level = self.db.execute("PRAGMA synchronous").fetchone()[0]
            verb, table = re.match(r"(INSERT|UPDATE)(?: OR REPLACE)?(?: INTO)? (\w+)", self._last).groups()
            self.commits.append((f"{verb} {table}", SYNCHRONOUS[level]))
        elif not sql.startswith(("BEGIN", "PRAGMA")):
            self._last = sql
        return self.db.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_trial_s_own_records_wait_for_the_disk_and_its_epochs_do_not(tmp_path):
    store = TrialStore(tmp_path / "trials.db")
    spy = store._db = CommitSpy(store._db)
    store.add_trial("t0", {"x": 1}, budget=3)
    store.start_trial("t0", "w0")
    store.add_epoch("t0", 1, {"loss": 0.5}, 0.1)
    store.add_epoch("t0", 2, {"loss": 0.4}, 0.2)
    store.add_attempt("t0", 0, "crashed", "worker died")
    store.finish_trial("t0", Status.COMPLETE, loss=0.4, epochs=2)
    store.set_meta("final", {"best": "t0"})
    store._db = spy.db
    store.close()
    assert spy.commits == [("INSERT trials", "FULL"), ("UPDATE trials", "NORMAL"),  # created, started
                           ("INSERT epochs", "NORMAL"), ("INSERT epochs", "NORMAL"),
                           ("INSERT attempts", "FULL"), ("UPDATE trials", "FULL"), ("INSERT meta", "FULL")]


def test_an_epoch_recorded_again_replaces_its_row(tmp_path):
    """A trial resumed from its checkpoint reports the epochs after it again."""
    store = TrialStore(tmp_path / "trials.db")
    store.add_trial("t0", {"x": 1})
    for epoch in (1, 2, 3):
        store.add_epoch("t0", epoch, {"loss": 1.0 / epoch}, float(epoch))
    store.add_epoch("t0", 2, {"loss": 0.25}, 5.0)  # again, after a resume from epoch 1
    history = store.history("t0")
    store.close()
    assert [(h["epoch"], h["loss"], h["elapsed"]) for h in history] == [(1, 1.0, 1.0), (2, 0.25, 5.0),
                                                                        (3, 1.0 / 3, 3.0)]


def test_every_committed_row_survives_the_writer_killed_at_once(tmp_path):
    db = tmp_path / "trials.db"
    script = textwrap.dedent(f"""
        import os, signal
        from automl.store import TrialStore
        store = TrialStore({str(db)!r})
        store.add_trial("t0", {{"x": 1}}, budget=5)
        store.start_trial("t0", "w0")
        for epoch in (1, 2, 3):
            store.add_epoch("t0", epoch, {{"loss": 1.0 / epoch}}, float(epoch))
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint of the WAL
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert done.returncode == -9, done.stderr
    store = TrialStore(db, readonly=True)
    trial = store.trial("t0")
    store.close()
    assert trial.status == Status.RUNNING and trial.worker == "w0"
    assert [h["epoch"] for h in trial.history] == [1, 2, 3]
