from __future__ import annotations

import io
import logging
import re

from rich.console import Console
from rich.text import Text

from automl.reporting.console import (
    LogConsoleObserver,
    RichConsoleObserver,
    make_console_observer,
)
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


def _frame(observer: RichConsoleObserver) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    console.print(observer.render())
    return console.export_text()


def test_rich_observer_ends_on_a_final_frame_with_the_search_clock():
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    observer = RichConsoleObserver(console)
    observer.run_started(INFO)
    records = [_record("t0000", "COMPLETE", 0.75), _record("t0001", "COMPLETE", 0.875),
               _record("t0002", "FAILED", error="RuntimeError: boom")]
    for n, record in enumerate(records, start=1):
        observer.trial_started(record.trial_id, record.config, None)
        observer.trial_finished(record, records[1] if n > 1 else records[0], n, elapsed=float(n))
    assert "running" in _frame(observer)
    observer.phase("refit", None)
    observer.run_finished({**SUMMARY, "timings": {"search": 3723.0, "refit": 5.0}})
    frame = _frame(observer)
    assert "finished (max_trials)" in frame and "running" not in frame
    assert re.search(r"search\s+1:02:03", frame) and "remaining" not in frame  # the agent's search figure, stopped
    rows = [line.split("│")[1].strip() for line in frame.splitlines() if line.count("│") > 3]
    assert rows == ["t0001", "t0000", "t0002"]  # best first, the failed one last
    assert "0.875" in frame and "mlp" in frame
    out = _plain(console)  # what the terminal was left with: the same final frame, then the summary
    assert "finished (max_trials)" in out[out.rindex("status"):]
    assert "search 1:02:03" in out.splitlines()[-1]


def test_rich_observer_bounds_the_finished_table_and_says_interrupted():
    observer = RichConsoleObserver(Console(file=io.StringIO(), force_terminal=True, width=120))
    observer.run_started(INFO)
    for n in range(12):
        record = _record(f"t{n:04d}", "COMPLETE", n / 16)
        observer.trial_finished(record, record, n + 1, elapsed=float(n))
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        observer.close()  # as the agent does on Ctrl-C, without run_finished
    frame = _frame(observer)
    assert "interrupted" in frame and "best 5 of 12" in frame
    assert "t0011" in frame and "t0007" in frame and "t0006" not in frame
