"""TensorBoard observer: per-trial curves, the HParams dashboard and study-level progress.

Layout under log_dir (each folder is one TensorBoard "run"):
  .                    the HParams experiment: every hyperparameter with its domain, the metrics
  trials/<trial_id>/   loss/train, loss/val, metric/<name> per epoch; the session start/end
                       info and the final hparams/<name> values the HParams dashboard reads
  study/               best_so_far/<metric> by finished-trial count and best_so_far_by_time/<metric>
                       by elapsed seconds

Everything is written with torch's SummaryWriter and tensorboard's protos, so TensorFlow
is never needed.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from google.protobuf import struct_pb2
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from automl.files import disk_full, finite_number
from automl.reporting.base import RunObserver
from automl.space import Choice, SearchSpace
from automl.store import TrialRecord

HPARAMS_PREFIX = "hparams/"
# hparams' Status has no "aborted": a pruned trial ran correctly and has real (partial)
# metrics, so it counts as a success; its reason stays visible in the store and report.
STATUS = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_SUCCESS,
          "FAILED": api_pb2.STATUS_FAILURE}


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
    # Float and Int: an interval; the dashboard offers its own log-scale toggle for log params
    interval = api_pb2.Interval(min_value=float(param.low), max_value=float(param.high))
    return api_pb2.HParamInfo(name=param.name, type=api_pb2.DATA_TYPE_FLOAT64, domain_interval=interval)


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
        # the objective metric first, then the others, without duplicates
        self.metric_names = list(dict.fromkeys([metric, *metric_names]))
        self._types = {p.name: _hparam_info(p).type for p in space}
        self._writers: OrderedDict[str, SummaryWriter] = OrderedDict()
        self._last_epoch: dict[str, dict[str, float]] = {}
        self._experiment_written = False
        self._study: SummaryWriter | None = None
        self._disk_full = False  # said once
        _quiet_writer_threads()

    # -- writers
    def _trial_writer(self, trial_id: str) -> SummaryWriter:
        writer = self._writers.pop(trial_id, None)
        if writer is None:
            # reopening a trial's folder later is fine: TensorBoard reads every event file in it
            writer = SummaryWriter(log_dir=str(self.log_dir / "trials" / trial_id))
        self._writers[trial_id] = writer  # most recently used last
        while len(self._writers) > self.MAX_OPEN_WRITERS:
            self._writers.popitem(last=False)[1].close()
        return writer

    def _study_writer(self) -> SummaryWriter:
        if self._study is None:
            self._study = SummaryWriter(log_dir=str(self.log_dir / "study"))
        return self._study

    # -- the experiment (written once, in the root run)
    def _experiment(self, families: Sequence[str] | None) -> api_pb2.Experiment:
        hparams = [_hparam_info(p) for p in self.space]
        if "family" not in self._types:
            # the family is in every config even when the space does not search over it
            self._types["family"] = api_pb2.DATA_TYPE_STRING
            domain = struct_pb2.ListValue(values=[struct_pb2.Value(string_value=f) for f in families or []])
            hparams.insert(0, api_pb2.HParamInfo(name="family", type=api_pb2.DATA_TYPE_STRING,
                                                 domain_discrete=domain if families else None))
        metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=HPARAMS_PREFIX + name), display_name=name,
                                      dataset_type=api_pb2.DATASET_VALIDATION)
                   for name in [*self.metric_names, "val_loss"]]
        return api_pb2.Experiment(description=f"objective: {self.metric} ({self.direction})",
                                  time_created_secs=time.time(), hparam_infos=hparams, metric_infos=metrics)

    def _write_experiment(self, families: Sequence[str] | None = None) -> None:
        if self._experiment_written:
            return
        self._experiment_written = True
        data = plugin_data_pb2.HParamsPluginData(experiment=self._experiment(families))
        with SummaryWriter(log_dir=str(self.log_dir)) as root:
            root.file_writer.add_summary(_summary(metadata.EXPERIMENT_TAG, data))

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
        data = plugin_data_pb2.HParamsPluginData(session_start_info=start)
        self._trial_writer(trial_id).file_writer.add_summary(_summary(metadata.SESSION_START_INFO_TAG, data))

    @_unless_disk_full
    def epoch(self, trial_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        writer = self._trial_writer(trial_id)
        for key, value in metrics.items():
            value = finite_number(value)
            if value is None:
                continue
            tag = {"train_loss": "loss/train", "val_loss": "loss/val"}.get(key, f"metric/{key}")
            writer.add_scalar(tag, value, global_step=epoch)
        self._last_epoch[trial_id] = dict(metrics)

    @_unless_disk_full
    def trial_finished(self, record: TrialRecord, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        writer = self._trial_writer(record.trial_id)
        # the record's metrics win; val_loss usually lives only in the last epoch's dict
        final = {**self._last_epoch.pop(record.trial_id, {}), **(record.metrics or {})}
        if record.status != "FAILED":
            for name in [*self.metric_names, "val_loss"]:
                value = finite_number(final.get(name))
                if value is not None:
                    writer.add_scalar(HPARAMS_PREFIX + name, value, global_step=record.epochs)
        end = plugin_data_pb2.SessionEndInfo(status=STATUS.get(record.status, api_pb2.STATUS_UNKNOWN),
                                             end_time_secs=record.finished_at or time.time())
        writer.file_writer.add_summary(_summary(metadata.SESSION_END_INFO_TAG,
                                                plugin_data_pb2.HParamsPluginData(session_end_info=end)))
        self._writers.pop(record.trial_id).close()  # close() flushes
        self._record_best(best, n_finished, elapsed)

    def _record_best(self, best: TrialRecord | None, n_finished: int, elapsed: float) -> None:
        value = finite_number((best.metrics or {}).get(self.metric)) if best is not None else None
        if value is None:
            return
        study = self._study_writer()
        study.add_scalar(f"best_so_far/{self.metric}", value, global_step=n_finished)
        study.add_scalar(f"best_so_far_by_time/{self.metric}", value, global_step=int(elapsed))
        study.flush()

    @_unless_disk_full
    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        if self._study is not None:
            self._study.close()
            self._study = None
