"""TensorBoard event files written with tensorboard's own writer: no torch, no TensorFlow.

torch.utils.tensorboard.SummaryWriter is a thin layer over the same `EventFileWriter`, but
importing it imports torch (a second before the run's first trial). The writer queues events
and a background thread writes them, so a write never blocks the caller on the disk."""
from __future__ import annotations

import time

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

MAX_QUEUE = 10  # events queued before the writer thread is woken (torch's SummaryWriter's defaults)
FLUSH_SECS = 120


class SummaryWriter:
    """One run's event file under `log_dir` (created if missing)."""

    def __init__(self, log_dir: str):
        self._events = EventFileWriter(str(log_dir), MAX_QUEUE, FLUSH_SECS, "")

    def add_summary(self, summary: Summary, step: int | None = None) -> None:
        event = Event(summary=summary, wall_time=time.time())
        if step is not None:
            event.step = int(step)
        self._events.add_event(event)

    def add_scalar(self, tag: str, value: float, global_step: int | None = None) -> None:
        # simple_value, as torch's add_scalar writes it: every TensorBoard reads it as a scalar
        self.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), global_step)

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()  # flushes first
