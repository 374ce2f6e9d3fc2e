"""A full disk (ENOSPC) during `automl run` ends it in one line naming the file, keeps every
finished trial, leaves no temporary file and counts no trial as failed; the same command
resumes once space is back. `automl report --stdout` / `--out` work while the run's disk is full.

The disk is simulated in-process (isolation "threads"): once filled, the writes of the chosen
kinds under the run directory fail with ENOSPC, after leaving part of a file, as a real full
disk does. A worker process is reached with a real ENOSPC instead: its checkpoint's temporary
is made a link to /dev/full.
"""
from __future__ import annotations

import errno
import os
import pathlib
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from automl.cli import main
from automl.store import TrialStore
from tests.conftest import write_spec

FULL = "no space left on device while writing"


class Disk:
    """Writes of `kinds` ("checkpoint", "trials.db", "files") under `root` fail with ENOSPC once
    the first trial has finished, until `free()`."""

    def __init__(self, monkeypatch, root: Path, kinds: set[str]):
        self.root, self.kinds, self.full = str(root), kinds, False
        save, write_bytes, init, finish = torch.save, pathlib.Path.write_bytes, TrialStore.__init__, \
            TrialStore.finish_trial
        disk = self

        def fake_save(obj, f, *args, **kwargs):
            if disk.fails("checkpoint", getattr(f, "name", f)):
                f.write(b"half a checkpoint")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return save(obj, f, *args, **kwargs)

        def fake_write_bytes(path, data):
            if disk.fails("files", path):
                with open(path, "wb") as file:
                    file.write(data[:10])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write_bytes(path, data)

        def fake_init(store, path, **kwargs):
            init(store, path, **kwargs)
            store._db = _Connection(store._db, lambda: disk.fails("trials.db", path))

        def fill_after(store, *args, **kwargs):
            finish(store, *args, **kwargs)
            disk.full = True

        monkeypatch.setattr(torch, "save", fake_save)
        monkeypatch.setattr(pathlib.Path, "write_bytes", fake_write_bytes)
        monkeypatch.setattr(TrialStore, "__init__", fake_init)
        monkeypatch.setattr(TrialStore, "finish_trial", fill_after)

    def fails(self, kind: str, path) -> bool:
        return self.full and kind in self.kinds and str(path).startswith(self.root)

    def free(self) -> None:
        self.kinds = set()


class _Connection:
    """A sqlite3 connection whose writes fail as SQLite's do on a full disk (SQLITE_FULL)."""

    def __init__(self, db, full):
        self._db, self._full = db, full

    def execute(self, sql, params=()):
        if self._full() and sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13
            raise error
        return self._db.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._db, name)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def trials(run_dir: Path) -> dict:
    store = TrialStore(run_dir / TrialStore.FILENAME, readonly=True)
    try:
        return {t.trial_id: t for t in store.trials()}
    finally:
        store.close()


def assert_one_line_disk_full(result, file: str, caplog) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {FULL} ") and file in lines[0], result.output
    assert "Traceback" not in result.output and "Traceback" not in caplog.text


def temporaries(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("kind, file", [("checkpoint", os.path.join("checkpoints", "0001.pt")),
                                        ("trials.db", "trials.db")])
def test_a_full_disk_stops_the_run_in_one_line_and_the_same_command_resumes(tmp_path, monkeypatch, caplog,
                                                                            one_torch_thread, kind, file):
    spec = write_spec(tmp_path, budget={"max_trials": 2, "max_epochs": 2, "patience": None})
    run_dir = tmp_path / "run"
    disk = Disk(monkeypatch, run_dir, {kind})
    result = invoke("run", spec, "--quiet")
    assert_one_line_disk_full(result, file, caplog)
    assert "resume" in result.output
    assert not temporaries(run_dir)
    before = trials(run_dir)
    # the first trial is kept; no trial is counted as failed for the disk's sake
    assert before["0000"].status == "COMPLETE"
    assert all(t.status != "FAILED" for t in before.values())

    disk.free()
    result = invoke("run", spec, "--quiet")
    assert result.exit_code == 0, result.output
    after = trials(run_dir)
    assert len(after) == 2 and all(t.status == "COMPLETE" for t in after.values())
    assert after["0000"].finished_at == before["0000"].finished_at  # kept, not run again


def test_report_works_on_a_full_disk_with_stdout_or_out(tmp_path, monkeypatch, caplog, one_torch_thread):
    spec = write_spec(tmp_path, budget={"max_trials": 2, "max_epochs": 2, "patience": None})
    run_dir = tmp_path / "run"
    disk = Disk(monkeypatch, run_dir, {"files"})
    result = invoke("run", spec, "--quiet")  # the search ends; its report cannot be written
    assert_one_line_disk_full(result, str(run_dir), caplog)
    assert not temporaries(run_dir)

    result = invoke("report", run_dir)
    assert_one_line_disk_full(result, str(run_dir), caplog)
    assert "--stdout" in result.output and "--out" in result.output
    result = invoke("report", run_dir, "--stdout")
    assert result.exit_code == 0 and result.output.startswith("# AutoML report: tiny")
    assert "2 completed" in result.output
    result = invoke("report", run_dir, "--out", tmp_path / "elsewhere")
    assert result.exit_code == 0, result.output
    assert "2 completed" in (tmp_path / "elsewhere" / "report.md").read_text()
    assert not temporaries(run_dir)

    disk.free()
    result = invoke("run", spec, "--quiet")
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.html").is_file() and (run_dir / "model" / "model.pt").is_file()


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_a_worker_process_that_meets_a_full_disk_stops_the_run_without_failing_its_trial(tmp_path, caplog):
    """The worker process sees the error first: it must reach the driver as a full disk, not as a failed trial.
    (Resuming is the same as under threads, above; one worker start keeps this test light.)"""
    spec = write_spec(tmp_path, budget={"max_trials": 1, "max_epochs": 1, "patience": None},
                      execution={"isolation": "processes", "workers": 1})
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    # the checkpoint's temporary opens /dev/full: every write to it fails with a real ENOSPC
    (checkpoints / "0000.pt.tmp").symlink_to("/dev/full")
    result = invoke("run", spec, "--quiet")
    assert_one_line_disk_full(result, os.path.join("checkpoints", "0000.pt"), caplog)
    assert not temporaries(tmp_path / "run")
    assert trials(tmp_path / "run")["0000"].status == "RUNNING"  # to resume, not FAILED
    assert Path("/dev/full").is_char_device()


def test_tensorboard_on_a_full_disk_says_so_once_without_a_traceback(tmp_path, monkeypatch, caplog):
    from automl.reporting import tensorboard
    from automl.space import Float, SearchSpace

    class FullWriter:
        def __init__(self, log_dir):
            pass

        def add_scalar(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tensorboard, "SummaryWriter", FullWriter)
    observer = tensorboard.TensorBoardObserver(tmp_path, SearchSpace([Float("lr", 1e-4, 1e-1)]), "accuracy", "max",
                                               ["accuracy"])
    observer.epoch("0000", 1, {"accuracy": 0.5})
    observer.epoch("0000", 2, {"accuracy": 0.6})
    warnings = [r for r in caplog.records if "no space left on device" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is None
