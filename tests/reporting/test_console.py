from __future__ import annotations

import io
import logging

from rich.console import Console
from rich.text import Text

from automl.reporting.console import (LogConsoleObserver, RichConsoleObserver, make_console_observer)
from automl.store import TrialRecord

INFO = {"name": "demo", "metric": "accuracy", "direction": "maximize", "strategy": "random",
        "families": ["mlp"], "max_trials": 3, "max_time": 600, "max_epochs": 5, "device": "cpu",
        "workers": 1, "already_finished": 0}
SUMMARY = {"best_trial_id": "t0001", "best": {"accuracy": 0.875}, "test": {"accuracy": 0.86},
           "duration_s": 12.0, "stopped_because": "max_trials"}


def _record(trial_id, status, accuracy=None, reason=None, error=None) -> TrialRecord:
    metrics = {} if accuracy is None else {"accuracy": accuracy}
    return TrialRecord(trial_id, 0, "mlp", {"family": "mlp", "lr": 0.01}, None, None, status,
                       None if accuracy is None else -accuracy, metrics, 2, reason, error, "w0", 0.0, 1.0, 2.0)


def _plain(console: Console) -> str:
    return Text.from_ansi(console.file.getvalue()).plain  # without colour and cursor codes


def _drive(observer) -> None:
    observer.run_started(INFO)
    t0, t1, t2 = (_record("t0000", "COMPLETE", 0.75), _record("t0001", "COMPLETE", 0.875),
                  _record("t0002", "FAILED", error="Traceback...\nRuntimeError: CUDA out of memory"))
    best = None
    for n, record in enumerate((t0, t1, t2), start=1):
        observer.trial_started(record.trial_id, record.config, None)
        observer.epoch(record.trial_id, 1, {"train_loss": 0.5, "val_loss": 0.4, "accuracy": 0.7})
        if record.loss is not None and (best is None or record.loss < best.loss):
            best = record
        observer.trial_finished(record, best, n, elapsed=float(n))
    observer.run_finished(SUMMARY)
    observer.close()


def test_plain_observer_writes_a_line_per_finished_trial():
    stream = io.StringIO()
    _drive(LogConsoleObserver(stream))
    lines = stream.getvalue().splitlines()
    finished = [line for line in lines if line.startswith("trial") and "started" not in line]
    assert len(finished) == 3
    assert "t0000" in finished[0] and "COMPLETE" in finished[0] and "accuracy=0.75" in finished[0]
    assert "t0001" in finished[1] and "accuracy=0.875" in finished[1] and "best accuracy=0.875 (t0001)" in finished[1]
    assert "t0002" in finished[2] and "FAILED" in finished[2] and "CUDA out of memory" in finished[2]
    assert "3/3" in finished[2]
    assert sum("started" in line and line.startswith("trial") for line in lines) == 3
    assert "best trial t0001" in lines[-1] and "max_trials" in lines[-1]


def test_plain_observer_without_stream_logs_to_automl_progress(caplog):
    with caplog.at_level(logging.INFO, logger="automl.progress"):
        _drive(LogConsoleObserver())
    assert any("t0001 COMPLETE" in r.getMessage() for r in caplog.records if r.name == "automl.progress")


def test_rich_observer_renders_best_and_running_trials():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    observer = RichConsoleObserver(console)
    observer.run_started(INFO)
    observer.trial_started("t0000", {"family": "mlp"}, None)
    observer.epoch("t0000", 2, {"val_loss": 0.3, "accuracy": 0.625})
    observer.trial_started("t0001", {"family": "cnn"}, None)
    frame = _plain(console)
    assert "t0000" in frame and "0.625" in frame and "cnn" in frame  # running trials shown live
    observer.trial_finished(_record("t0000", "COMPLETE", 0.8125), _record("t0000", "COMPLETE", 0.8125), 1, 5.0)
    observer.run_finished(SUMMARY)
    observer.close()
    out = _plain(console)
    assert "accuracy=0.8125 (t0000)" in out
    assert "1/3" in out and "remaining" in out
    assert "best trial t0001" in out


def test_make_console_observer_picks_by_tty():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(make_console_observer(io.StringIO()), LogConsoleObserver)
    rich_observer = make_console_observer(Tty())
    assert isinstance(rich_observer, RichConsoleObserver)
    rich_observer.close()
