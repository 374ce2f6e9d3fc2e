"""Console observers: a live rich view for terminals, plain lines for logs and pipes.

`make_console_observer` picks one: a terminal gets the live view, anything else (CI logs,
a file, `| tee`) gets one line per event, since redrawn screens turn into noise there.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Mapping, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from automl.reporting.base import RunObserver
from automl.store import TrialRecord

LOGGER_NAME = "automl.progress"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class _Progress:
    """Run state shared by both observers; the agent's clock wins when it reports one."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.metric: str | None = None
        self.n_finished = 0
        self.best: TrialRecord | None = None
        self.running: dict[str, dict[str, Any]] = {}
        self._t0 = time.monotonic()

    def start(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)
        self.metric = info.get("metric")
        self.n_finished = int(info.get("already_finished") or 0)
        self._t0 = time.monotonic()

    def finish(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        self.running.pop(record.trial_id, None)
        self.best, self.n_finished = best, n_finished
        self._t0 = time.monotonic() - elapsed

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    @property
    def remaining(self) -> float | None:
        max_time = self.info.get("max_time")
        return None if max_time is None else max(max_time - self.elapsed, 0.0)

    def budget(self) -> str:
        max_trials = self.info.get("max_trials")
        if max_trials is not None and self.info.get("trials_unit") == "full trainings":  # partial trials: no bar
            return f"{self.n_finished} (budget: {max_trials} full trainings)"
        return f"{self.n_finished}/{max_trials if max_trials is not None else '-'}"

    def metric_of(self, metrics: Mapping[str, Any] | None) -> Any:
        return (metrics or {}).get(self.metric) if self.metric else None

    def best_text(self) -> str:
        if self.best is None:
            return "-"
        # the metric in its own units; the loss only when the run never said which metric
        name, value = (self.metric, self.metric_of(self.best.metrics)) if self.metric else ("loss", self.best.loss)
        return f"{name}={_fmt(value)} ({self.best.trial_id})"


class RichConsoleObserver(RunObserver):
    """A live table redrawn in place: progress, best so far, the trials running now."""

    def __init__(self, console: Console | None = None, refresh_per_second: float = 2.0):
        self.console = console or Console(stderr=True)
        self.refresh_per_second = refresh_per_second
        self._state = _Progress()
        # Live redraws from its own thread; the lock keeps it from reading half an update
        self._lock = threading.Lock()
        self._live: Live | None = None

    def _ensure_live(self) -> None:
        if self._live is None:
            self._live = Live(get_renderable=self._render, console=self.console,
                              refresh_per_second=self.refresh_per_second)
            self._live.start()

    def _render(self) -> Group:
        with self._lock:
            s = self._state
            head = Table.grid(padding=(0, 2))
            head.add_column(style="bold")
            head.add_column()
            max_trials = s.info.get("max_trials")
            counted = max_trials and s.info.get("trials_unit") != "full trainings"
            bar = ProgressBar(total=max_trials, completed=s.n_finished, width=30) if counted else ""
            head.add_row("trials", Group(s.budget(), bar) if bar else s.budget())
            head.add_row("best", s.best_text())
            time_text = f"{_duration(s.elapsed)} elapsed"
            if s.remaining is not None:
                time_text += f", {_duration(s.remaining)} remaining"
            head.add_row("time", time_text)
            if s.info.get("threads"):
                head.add_row("workers", f"{s.info.get('workers')} x {s.info['threads']} torch threads "
                                        f"({s.info.get('threads_note')})")

            running = Table(title="running", title_justify="left", expand=False)
            for column in ("trial", "family", "epoch", s.metric or "val metric"):
                running.add_column(column)
            for trial_id, row in s.running.items():
                running.add_row(trial_id, _fmt(row["family"]), _fmt(row["epoch"]), _fmt(row["value"]))
            return Group(head, running)

    def _refresh(self) -> None:
        self._ensure_live()
        self._live.refresh()

    def run_started(self, info: Mapping[str, Any]) -> None:
        with self._lock:
            self._state.start(info)
        self._refresh()

    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        with self._lock:
            self._state.running[trial_id] = {"family": config.get("family"), "epoch": 0, "value": None}
        self._refresh()

    def epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        with self._lock:
            row = self._state.running.setdefault(trial_id, {"family": None, "epoch": 0, "value": None})
            row["epoch"] = epoch
            row["value"] = self._state.metric_of(metrics) if self._state.metric else metrics.get("val_loss")
        self._refresh()

    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        with self._lock:
            self._state.finish(record, best, n_finished, elapsed)
        self._refresh()

    def phase(self, name: str, seconds: float | None) -> None:
        self.console.print(_phase_line(name, seconds))  # above the live view

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        self.close()  # leave the last frame on screen, then a plain summary under it
        self.console.print(_summary_line(self._state, summary))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class LogConsoleObserver(RunObserver):
    """One line per trial start and finish plus a final summary, for non-terminals.

    With a stream, lines go straight to it; without one, to the `automl.progress` logger
    (at INFO, so it shows only where logging is configured for it).
    """

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self._logger = logging.getLogger(LOGGER_NAME)
        self._state = _Progress()

    def _emit(self, line: str) -> None:
        if self.stream is None:
            self._logger.info(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()  # a pipe or CI log should see progress as it happens

    def run_started(self, info: Mapping[str, Any]) -> None:
        self._state.start(info)
        limits = [f"{info[k]}{unit}" for k, unit in (("max_trials", f" {info.get('trials_unit') or 'trials'}"),
                                                     ("max_time", "s")) if info.get(k) is not None]
        self._emit(f"run {info.get('name', '')} started: strategy={info.get('strategy')} "
                   f"metric={info.get('metric')} ({info.get('direction')}) "
                   f"budget={', '.join(limits) or 'none'} device={info.get('device')}"
                   + (f" workers={info['workers']}x{info['threads']} threads ({info.get('threads_note')})"
                      if info.get("threads") else ""))

    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in config.items())
        self._emit(f"trial {trial_id} started: {params}" + (f" budget={_fmt(budget)}" if budget is not None else ""))

    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        self._state.finish(record, best, n_finished, elapsed)
        s = self._state
        if s.metric:
            result = f"{s.metric}={_fmt(s.metric_of(record.metrics))}"
        else:
            result = " ".join(f"{k}={_fmt(v)}" for k, v in (record.metrics or {}).items()) or "-"
        why = _why(record)
        self._emit(f"trial {record.trial_id} {record.status}: {result} epochs={record.epochs}"
                   + (f" ({why})" if why else "")
                   + f" | best {s.best_text()} | {s.budget()} finished, {_duration(elapsed)} elapsed")

    def phase(self, name: str, seconds: float | None) -> None:
        self._emit(_phase_line(name, seconds))

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        self._emit(_summary_line(self._state, summary))


def _why(record: TrialRecord) -> str:
    """Why a trial stopped: the pruner's reason, or the last line of its traceback."""
    if record.reason:
        return record.reason
    lines = (record.error or "").strip().splitlines()
    return lines[-1] if lines else ""


def _phase_line(name: str, seconds: float | None) -> str:
    return f"{name}: started" if seconds is None else f"{name}: done in {_duration(seconds)}"


def _summary_line(state: _Progress, summary: Mapping[str, Any]) -> str:
    def metrics(values: Mapping[str, Any] | None) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in (values or {}).items()) or "-"

    return (f"run finished ({summary.get('stopped_because', '-')}) after {_duration(summary.get('duration_s'))}: "
            f"best trial {summary.get('best_trial_id') or '-'} val {metrics(summary.get('best'))} "
            f"test {metrics(summary.get('test'))}")


def make_console_observer(stream: TextIO | None = None) -> RunObserver:
    """The live view on a terminal, plain lines elsewhere; both on `stream` (default stderr,
    keeping stdout free for a command's own output)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return RichConsoleObserver(Console(file=stream))
    return LogConsoleObserver(stream)
