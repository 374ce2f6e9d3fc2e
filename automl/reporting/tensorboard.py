"""TensorBoard observer: per-trial curves, the HParams dashboard and study-level progress.

Layout under log_dir (each folder is one TensorBoard "run"; nothing is written at the root):
  study/                 the HParams experiment (hyperparameters with their domains, metrics with their
                         direction); best_so_far/<metric> by finished-trial count and
                         best_so_far_by_time/<metric> by elapsed seconds
  trials/<id>-<family>/  loss/train, loss/val, metric/<name> per epoch; the session's hyperparameters and
                         status; hparams/<name>: per epoch, the value at the trial's best epoch so far (the
                         model it keeps), written when it finishes: its last point is what HParams shows

What TensorBoard 2.x does with the experiment (plugins/hparams/backend_context.py,
_sort_and_reduce_to_hparams_limit; the dashboard's _computeHParams in webfiles.zip index.js): it sorts
the hyperparameters by `differs` (True first), then by name, and ticks the first five. So `differs` marks
the default columns: the family and the parameters every trial has (a parameter with a condition would
leave a trial without a value, and the parallel-coordinates view draws no line for it), everything else
is declared but unticked. Metrics: the first five in declared order are shown; MetricInfo has no
direction, so it is in the display name. HParamInfo has no log-scale flag (the axis defaults to linear;
its scale menu has "log"), so each log-scaled parameter also gets `log10_<name>`, the default column in
place of the raw value. Classification always trains with cross-entropy, so log_loss IS the validation
loss: one name for it, loss/val per epoch and val_loss in HParams.

Everything is written with tensorboard's own event writer and protos (`event_writer.py`), so
neither TensorFlow nor torch is needed.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from automl.files import disk_full, finite_number
from automl.metrics import METRICS
from automl.reporting.base import RunObserver
from automl.reporting.event_writer import SummaryWriter
from automl.space import Choice, SearchSpace
from automl.store import TrialRecord

HPARAMS_PREFIX = "hparams/"
DEFAULT_COLUMNS = 5  # the dashboard ticks the first five hyperparameters (and metrics)
# hparams' Status has no "aborted": a pruned trial ran correctly and has real (partial)
# metrics, so it counts as a success; its reason stays visible in the store and report.
STATUS = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_SUCCESS,
          "FAILED": api_pb2.STATUS_FAILURE}
EPOCH_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val"}
SAME_AS_VAL_LOSS = "log_loss"  # cross-entropy on the validation rows, as val_loss


# -- encoding hyperparameter values: the declared type and the session values must agree,
#    or the dashboard shows the column but cannot filter or plot it

def _data_type(values: Iterable[Any]) -> int:
    values = list(values)
    if values and all(isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_BOOL
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING  # strings, and mixed choices shown as their str()


def _proto_value(value: Any, data_type: int) -> struct_pb2.Value:
    if data_type == api_pb2.DATA_TYPE_BOOL:
        return struct_pb2.Value(bool_value=bool(value))
    if data_type == api_pb2.DATA_TYPE_FLOAT64:
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def _hparam_info(param) -> api_pb2.HParamInfo:
    if isinstance(param, Choice):
        data_type = _data_type(param.choices)
        domain = struct_pb2.ListValue(values=[_proto_value(v, data_type) for v in param.choices])
        return api_pb2.HParamInfo(name=param.name, type=data_type, domain_discrete=domain)
    interval = api_pb2.Interval(min_value=float(param.low), max_value=float(param.high))
    return api_pb2.HParamInfo(name=param.name, type=api_pb2.DATA_TYPE_FLOAT64, domain_interval=interval)


def log10_name(name: str) -> str:
    return f"log10_{name}"


def _log10_info(param) -> api_pb2.HParamInfo:
    interval = api_pb2.Interval(min_value=math.log10(param.low), max_value=math.log10(param.high))
    return api_pb2.HParamInfo(name=log10_name(param.name), display_name=f"log10({param.name})",
                              description=f"log10 of {param.name}, searched on a log scale",
                              type=api_pb2.DATA_TYPE_FLOAT64, domain_interval=interval)


def _varies(param) -> bool:
    return len(param.choices) > 1 if isinstance(param, Choice) else param.low < param.high


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    # NULL_TENSOR as in tensorboard's own hparams summary_v2: a value with a tensor is stored
    # by every loader as a time series; the payload is all in the metadata
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data),
                                        tensor=metadata.NULL_TENSOR)])


log = logging.getLogger(__name__)


def _unless_disk_full(method):
    """A full disk loses these log lines, said once in one line, and keeps the observer on (its
    guard would log a traceback and switch it off): the run's own next write (trials.db, a
    checkpoint) stops the run with the disk-full message."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as error:
            if not disk_full(error):
                raise
            if not self._disk_full:
                self._disk_full = True
                log.warning("TensorBoard logs incomplete: no space left on device while writing %s",
                            getattr(error, "filename", None) or self.log_dir)
            return None
    return call


def _quiet_writer_threads() -> None:
    """tensorboard's writer thread re-raises a failed write, so Python prints its traceback; a full
    disk is said in one line by the observer instead. Other errors and threads are printed as ever."""
    previous = threading.excepthook
    if getattr(previous, "automl_full_disk_quiet", False):
        return

    def hook(args) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and disk_full(args.exc_value)):
            previous(args)
    hook.automl_full_disk_quiet = True
    threading.excepthook = hook


class TensorBoardObserver(RunObserver):
    MAX_OPEN_WRITERS = 32  # trials normally close their own; this bounds file handles if some never finish

    def __init__(self, log_dir: Path, space: SearchSpace, metric: str, direction: str,
                 metric_names: Sequence[str]):
        self.log_dir = Path(log_dir)
        self.space = space
        self.metric = metric
        self.direction = direction
        self._same_as_val_loss = SAME_AS_VAL_LOSS in [metric, *metric_names]
        # one key per quantity, in the dashboard's order: the objective, the others, val loss, epochs
        keys = [self._key(name) for name in [metric, *metric_names, "val_loss", "epochs"]]
        self.metric_keys = list(dict.fromkeys(keys))
        self._types = {p.name: _hparam_info(p).type for p in space}
        self._log_params = {p.name for p in space if getattr(p, "log", False)}
        self._writers: OrderedDict[str, SummaryWriter] = OrderedDict()
        self._runs: dict[str, str] = {}  # trial id -> its run folder, named once with its family
        self._curves: dict[str, list[tuple[int, dict[str, float]]]] = {}  # best-epoch values, per epoch
        self._best: dict[str, dict[str, float]] = {}  # a trial's best epoch so far (kept for promotions)
        self._experiment_written = False
        self._study: SummaryWriter | None = None
        self._last_second = -1  # best_so_far_by_time's last step: steps must increase
        self._disk_full = False  # said once
        _quiet_writer_threads()

    def _key(self, name: str) -> str:
        return "val_loss" if self._same_as_val_loss and name == SAME_AS_VAL_LOSS else name

    # -- writers
    def _run_name(self, trial_id: str, family: Any = None) -> str:
        # fixed at the trial's first start, so a resumed or promoted trial writes to the same run
        if trial_id not in self._runs:
            self._runs[trial_id] = f"trials/{trial_id}-{family}" if family else f"trials/{trial_id}"
        return self._runs[trial_id]

    def _trial_writer(self, trial_id: str, family: Any = None) -> SummaryWriter:
        writer = self._writers.pop(trial_id, None)
        if writer is None:
            # reopening a trial's folder later is fine: TensorBoard reads every event file in it
            writer = SummaryWriter(log_dir=str(self.log_dir / self._run_name(trial_id, family)))
        self._writers[trial_id] = writer  # most recently used last
        while len(self._writers) > self.MAX_OPEN_WRITERS:
            self._writers.popitem(last=False)[1].close()
        return writer

    def _study_writer(self) -> SummaryWriter:
        if self._study is None:
            self._study = SummaryWriter(log_dir=str(self.log_dir / "study"))
        return self._study

    # -- the experiment (written once, in the study run)
    def _hparam_infos(self, families: Sequence[str] | None) -> list[api_pb2.HParamInfo]:
        infos, defaults = [], []
        if "family" not in self._types:
            # the family is in every config even when the space does not search over it
            self._types["family"] = api_pb2.DATA_TYPE_STRING
            domain = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=f) for f in families or []])
            infos.append(api_pb2.HParamInfo(name="family", type=api_pb2.DATA_TYPE_STRING,
                                            domain_discrete=domain if families else None))
            defaults.append("family")
        for param in self.space:
            infos.append(_hparam_info(param))
            if param.name in self._log_params:
                infos.append(_log10_info(param))
            # a default column needs a value in every trial (no condition) that tells trials apart
            if param.condition is None and _varies(param):
                defaults.append(log10_name(param.name) if param.name in self._log_params else param.name)
        defaults.sort(key=lambda name: name != "family")  # the family first, whatever the space's order
        for info in infos:
            info.differs = info.name in defaults[:DEFAULT_COLUMNS]
        return infos

    def _metric_info(self, key: str) -> api_pb2.MetricInfo:
        """The direction goes into the display name: MetricInfo has no field for it."""
        if key == "epochs":
            display, about = "epochs", "epochs trained"
        else:
            selection = key == self._key(self.metric)
            direction = self.direction if selection else (
                "minimize" if key == "val_loss" else getattr(METRICS.get(key), "direction", None))
            display = f"{key} = {SAME_AS_VAL_LOSS}" if key == "val_loss" and self._same_as_val_loss else key
            arrow = {"maximize": "max", "minimize": "min"}.get(direction)
            if arrow:
                display += f" ({arrow}, selection)" if selection else f" ({arrow})"
            about = f"{direction or 'no direction'}; at the trial's best epoch"
        return api_pb2.MetricInfo(name=api_pb2.MetricName(tag=HPARAMS_PREFIX + key), display_name=display,
                                  description=about, dataset_type=api_pb2.DATASET_VALIDATION)

    def _write_experiment(self, families: Sequence[str] | None = None) -> None:
        if self._experiment_written:
            return
        self._experiment_written = True
        experiment = api_pb2.Experiment(
            description=f"objective: {self.metric} ({self.direction})", time_created_secs=time.time(),
            hparam_infos=self._hparam_infos(families), metric_infos=[self._metric_info(k) for k in self.metric_keys])
        data = plugin_data_pb2.HParamsPluginData(experiment=experiment)
        study = self._study_writer()
        study.add_summary(_summary(metadata.EXPERIMENT_TAG, data))
        study.flush()

    # -- RunObserver
    @_unless_disk_full
    def run_started(self, info: Mapping[str, Any]) -> None:
        self._write_experiment(info.get("families"))

    @_unless_disk_full
    def trial_started(self, trial_id: str, config: Mapping[str, Any], budget: float | None) -> None:
        self._write_experiment()
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for name, value in config.items():
            if value is None:
                continue
            data_type = self._types.get(name) or _data_type([value])
            start.hparams[name].CopyFrom(_proto_value(value, data_type))
            if name in self._log_params and isinstance(value, (int, float)) and value > 0:
                start.hparams[log10_name(name)].number_value = math.log10(value)
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        writer = self._trial_writer(trial_id, config.get("family"))
        writer.add_summary(_summary(metadata.SESSION_START_INFO_TAG, data))

    @_unless_disk_full
    def epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        writer = self._trial_writer(trial_id)
        for key, value in metrics.items():
            value = finite_number(value)
            if value is None or (self._same_as_val_loss and key == SAME_AS_VAL_LOSS):
                continue  # log_loss is drawn as loss/val
            writer.add_scalar(EPOCH_TAGS.get(key, f"metric/{key}"), value, global_step=epoch)
        if self._better(metrics, self._best.get(trial_id)):
            self._best[trial_id] = dict(metrics)
        self._curves.setdefault(trial_id, []).append((epoch, self._best[trial_id]))

    def _better(self, metrics: Mapping[str, float], best: Mapping[str, float] | None) -> bool:
        """The trainer's rule for the epoch it keeps: the metric, a tie going to the lower val loss."""
        def loss(m: Mapping[str, float]) -> tuple[float, float]:
            value = finite_number(m.get(self.metric))
            val_loss = finite_number(m.get("val_loss"))
            value = math.inf if value is None else (-value if self.direction == "maximize" else value)
            return value, math.inf if val_loss is None else val_loss
        return best is None or loss(metrics) < loss(best)

    @_unless_disk_full
    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        writer = self._trial_writer(record.trial_id, record.family)
        curve = self._curves.pop(record.trial_id, [])
        if record.status == "FAILED":
            self._best.pop(record.trial_id, None)  # a failed trial has no metrics to show
        else:
            # the record (the trainer's best epoch) wins over what the observer followed
            final = {**self._best.get(record.trial_id, {}), **(record.metrics or {})}
            self._best[record.trial_id] = final
            last = record.epochs or 0
            points = [(epoch, values) for epoch, values in curve if epoch < last]
            for epoch, values in [*points, (last, final)]:
                values = {**values, "epochs": epoch}
                for key in self.metric_keys:
                    value = finite_number(values.get(key))
                    if value is not None:
                        writer.add_scalar(HPARAMS_PREFIX + key, value, global_step=epoch)
        end = plugin_data_pb2.SessionEndInfo(status=STATUS.get(record.status, api_pb2.STATUS_UNKNOWN),
                                             end_time_secs=record.finished_at or time.time())
        writer.add_summary(_summary(metadata.SESSION_END_INFO_TAG,
                                                plugin_data_pb2.HParamsPluginData(session_end_info=end)))
        self._writers.pop(record.trial_id).close()  # close() flushes
        self._record_best(best, n_finished, elapsed)

    def _record_best(self, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        value = finite_number((best.metrics or {}).get(self.metric)) if best is not None else None
        if value is None:
            return
        study = self._study_writer()
        study.add_scalar(f"best_so_far/{self.metric}", value, global_step=n_finished)
        # whole seconds as steps; trials finishing within one second would share a step and draw
        # no line between them, so each later point moves on by a second at least
        self._last_second = max(int(elapsed), self._last_second + 1)
        study.add_scalar(f"best_so_far_by_time/{self.metric}", value, global_step=self._last_second)
        study.flush()

    @_unless_disk_full
    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._study is not None:
            self._study.close()
            self._study = None
