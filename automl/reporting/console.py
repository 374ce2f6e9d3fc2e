"""Console observers: a live rich view for terminals, plain lines for logs and pipes.

`make_console_observer` picks one: a terminal gets the live view, anything else (CI logs,
a file, `| tee`) gets one line per event, since redrawn screens turn into noise there.
"""
from __future__ import annotations

import logging
import math
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


def _rank(record: TrialRecord) -> tuple[bool, float]:
    scored = record.loss is not None and math.isfinite(record.loss)
    return (not scored, record.loss if scored else 0.0)


class _Progress:
    """Run state shared by both observers; the agent's clock wins when it reports one."""

    TOP = 5  # finished trials kept for the table: the best few, so a long run keeps a short table

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.metric: str | None = None
        self.n_finished = 0
        self.best: TrialRecord | None = None
        self.running: dict[str, dict[str, Any]] = {}
        self.top: list[TrialRecord] = []
        self.seen = 0  # trials finished under this observer (a resumed run's earlier ones are not told)
        self.status = "running"
        self._t0 = time.monotonic()
        self._stopped_at: float | None = None  # the search clock, frozen once the search is over

    def start(self, info: Mapping[str, Any]) -> None:
        self.info = dict(info)
        self.metric = info.get("metric")
        self.n_finished = int(info.get("already_finished") or 0)
        self._t0 = time.monotonic()

    def finish(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        self.running.pop(record.trial_id, None)
        self.best, self.n_finished = best, n_finished
        self._t0 = time.monotonic() - elapsed
        self.seen += 1
        # scored trials best first (lowest loss: the agent flips maximised metrics), unscored and diverged last
        self.top = sorted([*self.top, record], key=_rank)[:self.TOP]

    def stop(self, status: str, elapsed: float | None = None) -> None:
        """The search is over: freeze the clock, at the agent's figure when it gives one."""
        self.status = status
        self.running.clear()
        if elapsed is not None:
            self._stopped_at = float(elapsed)
        elif self._stopped_at is None:
            self._stopped_at = self.elapsed

    @property
    def elapsed(self) -> float:
        return self._stopped_at if self._stopped_at is not None else time.monotonic() - self._t0

    @property
    def remaining(self) -> float | None:
        max_time = self.info.get("max_time")
        if max_time is None or self._stopped_at is not None:
            return None
        return max(max_time - self.elapsed, 0.0)

    def budget(self) -> str:
        max_trials = self.info.get("max_trials")
        if max_trials is not None and self.info.get("trials_unit") == "full trainings":  # partial trials: no bar
            return f"{self.n_finished} (budget: {max_trials} full trainings)"
        return f"{self.n_finished}/{max_trials if max_trials is not None else '-'}"

    def metric_of(self, metrics: Mapping[str, Any] | None) -> Any:
        return (metrics or {}).get(self.metric) if self.metric else None

    def score_of(self, record: TrialRecord) -> tuple[str, Any]:
        """The metric in its own units; the loss only when the run never said which metric."""
        return (self.metric, self.metric_of(record.metrics)) if self.metric else ("loss", record.loss)

    def best_text(self) -> str:
        if self.best is None:
            return "-"
        name, value = self.score_of(self.best)
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
            self._live = Live(get_renderable=self.render, console=self.console,
                              refresh_per_second=self.refresh_per_second)
            self._live.start()

    def render(self) -> Group:
        """One frame: status, progress, best, clock; the trials running now and the best finished."""
        with self._lock:
            s = self._state
            head = Table.grid(padding=(0, 2))
            head.add_column(style="bold")
            head.add_column()
            head.add_row("status", s.status)
            max_trials = s.info.get("max_trials")
            counted = max_trials and s.info.get("trials_unit") != "full trainings"
            bar = ProgressBar(total=max_trials, completed=s.n_finished, width=30) if counted else ""
            head.add_row("trials", Group(s.budget(), bar) if bar else s.budget())
            head.add_row("best", s.best_text())
            if s.status == "running":
                time_text = f"{_duration(s.elapsed)} elapsed"
                if s.remaining is not None:
                    time_text += f", {_duration(s.remaining)} remaining"
                head.add_row("time", time_text)
            else:  # frozen at the search's end: the figure the run reports as its search time
                head.add_row("search", _duration(s.elapsed))
            if s.info.get("threads"):
                head.add_row("workers", f"{s.info.get('workers')} x {s.info['threads']} torch threads "
                                        f"({s.info.get('threads_note')})")
            parts: list[Any] = [head]
            if s.status == "running":
                running = Table(title="running", title_justify="left", expand=False)
                for column in ("trial", "family", "epoch", s.metric or "val metric"):
                    running.add_column(column)
                for trial_id, row in s.running.items():
                    running.add_row(trial_id, _fmt(row["family"]), _fmt(row["epoch"]), _fmt(row["value"]))
                parts.append(running)
            if s.top:
                parts.append(_finished_table(s))
            return Group(*parts)

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
        # no redraw here: Live redraws refresh_per_second from its own thread, and a frame drawn per epoch
        # (1-2 ms) delayed the answer the worker waits for before its next epoch
        self._ensure_live()

    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        with self._lock:
            self._state.finish(record, best, n_finished, elapsed)
        self._refresh()

    def phase(self, name: str, seconds: float | None) -> None:
        # phases come after the search: its clock stops here, until run_finished gives the exact figure
        with self._lock:
            self._state.stop(f"finishing: {name}" if seconds is None else "finishing")
        self.console.print(_phase_line(name, seconds))  # above the live view
        if self._live is not None:
            self._live.refresh()

    def run_finished(self, summary: Mapping[str, Any]) -> None:
        with self._lock:
            self._state.stop(f"finished ({summary.get('stopped_because') or '-'})", _search_seconds(summary))
        self.close()  # the final frame stays on screen, a plain summary under it
        self.console.print(_summary_line(self._state, summary))

    def close(self) -> None:
        if self._live is None:
            return
        with self._lock:
            if self._state.status == "running" or self._state.status.startswith("finishing"):
                self._state.stop(_stopped_by(sys.exc_info()[1]))  # closed without run_finished: say why
        self._live.stop()  # draws the last frame
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


def _search_seconds(summary: Mapping[str, Any]) -> float | None:
    """The search's elapsed time as the run reports it (the final document's timings)."""
    value = (summary.get("timings") or {}).get("search")
    return None if value is None else float(value)


def _stopped_by(error: BaseException | None) -> str:
    """The status of a view closed before run_finished: the agent closes observers in its handlers."""
    if error is None:
        return "stopped"
    if not isinstance(error, Exception):  # KeyboardInterrupt, SIGTERM's Terminated
        return "interrupted"
    first = (str(error).strip().splitlines() or [""])[0]
    return f"stopped: {type(error).__name__}" + (f": {first}" if first else "")


def _finished_table(state: _Progress) -> Table:
    table = Table(title=f"finished trials (best {len(state.top)} of {state.seen})", title_justify="left",
                  expand=False)
    for column in ("trial", "family", state.metric or "loss", "epochs", "time", "status"):
        table.add_column(column)
    for record in state.top:
        table.add_row(record.trial_id, _fmt(record.family), _fmt(state.score_of(record)[1]), str(record.epochs),
                      _duration(record.duration), str(record.status))
    return table


def _summary_line(state: _Progress, summary: Mapping[str, Any]) -> str:
    def metrics(values: Mapping[str, Any] | None) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in (values or {}).items()) or "-"

    search = _search_seconds(summary)
    return (f"run finished ({summary.get('stopped_because', '-')}) after {_duration(summary.get('duration_s'))}"
            + (f" (search {_duration(search)})" if search is not None else "")
            + f": best trial {summary.get('best_trial_id') or '-'} val {metrics(summary.get('best'))} "
            f"test {metrics(summary.get('test'))}")


def make_console_observer(stream: TextIO | None = None) -> RunObserver:
    """The live view on a terminal, plain lines elsewhere; both on `stream` (default stderr,
    keeping stdout free for a command's own output)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return RichConsoleObserver(Console(file=stream))
    return LogConsoleObserver(stream)
