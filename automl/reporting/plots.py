"""Report plots as PNG bytes, drawn from plain data the report extracts from the store.

matplotlib is imported inside the functions so `import automl` stays fast. We draw on a
bare `Figure` (rendered by Agg when saved) rather than pyplot: no global backend switch,
no figure registry to leak, safe beside a live run's threads. Every function returns
None when there is nothing to draw.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

from automl.files import finite_number

_SIZE = (7.0, 3.8)


def _finite(value) -> bool:
    return finite_number(value) is not None


def _figure(integer_x: bool = False):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=_SIZE, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if integer_x:  # trial numbers and epochs: no "2.5"
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # a bare Figure saves through the Agg canvas
    return buf.getvalue()


def best_so_far(xs: Sequence[float], values: Sequence[float | None], *, metric: str, direction: str,
                xlabel: str) -> bytes | None:
    """Each trial's score (dots) and the best so far (step line), in finishing order.

    xs: trial number or wall time of each finished trial; values: its metric (None if failed).
    """
    points = [(x, v) for x, v in zip(xs, values) if _finite(v)]
    if not points:
        return None
    pick = max if direction == "maximize" else min
    best, running = [], None
    for _, v in points:
        running = v if running is None else pick(running, v)
        best.append(running)
    fig, ax = _figure(integer_x=all(isinstance(x, int) for x, _ in points))
    px = [x for x, _ in points]
    ax.scatter(px, [v for _, v in points], s=18, alpha=0.5, color="tab:gray", label="trial")
    ax.step(px, best, where="post", color="tab:blue", linewidth=2, label="best so far")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric} ({'higher' if direction == 'maximize' else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def score_by_family(scores: Mapping[str, Sequence[float]], *, metric: str) -> bytes | None:
    """Box plot of each family's trial scores with the individual trials on top."""
    import numpy as np

    data = {family: [v for v in values if _finite(v)] for family, values in scores.items()}
    data = {family: values for family, values in data.items() if values}
    if not data:
        return None
    fig, ax = _figure()
    names = list(data)
    ax.boxplot([data[n] for n in names], showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)  # fixed jitter: regenerating the report gives the same picture
    for i, name in enumerate(names, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(data[name])), data[name], s=16, alpha=0.6, zorder=3)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={len(data[n])})" for n in names])
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def learning_curves(curves: Mapping[str, Sequence[tuple[float, float]]], *, metric: str) -> bytes | None:
    """Validation metric per epoch, one line per trial label."""
    curves = {label: [(e, v) for e, v in points if _finite(v)] for label, points in curves.items()}
    curves = {label: points for label, points in curves.items() if points}
    if not curves:
        return None
    fig, ax = _figure(integer_x=True)
    for label, points in curves.items():
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)
