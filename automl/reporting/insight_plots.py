"""The figures of insight.py as PNG bytes: hyperparameter importance, parallel coordinates of
the trials and slice plots. Drawn like plots.py (bare matplotlib Figures, imported lazily);
each returns None when there is nothing to draw.
"""
from __future__ import annotations

from typing import Any, Sequence

from automl.reporting.insight import bounds, encoded, varying
from automl.reporting.plots import _png
from automl.reporting.results import score
from automl.store import TrialRecord, ranked_trials

MAX_BARS = 15
PARALLEL_PARAMS, SLICE_PARAMS = 6, 4
UNUSED = -0.15  # where a trial that did not use a parameter crosses its axis (below the range)


def _label(value: Any) -> str:
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 12 else text[:11] + "…"


def importance(rows: Sequence[dict[str, Any]], *, trials: int) -> bytes | None:
    """Horizontal bars of the permutation importance, the most important on top, ± its spread."""
    from matplotlib.figure import Figure

    rows = list(rows)[:MAX_BARS][::-1]
    if not rows:
        return None
    fig = Figure(figsize=(7.0, 1.0 + 0.32 * len(rows)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.barh([r["name"] for r in rows], [r["importance"] for r in rows], xerr=[r["std"] for r in rows],
            color="tab:blue", alpha=0.8)
    ax.set_xlabel("drop of the surrogate's R² when the parameter is shuffled")
    ax.set_title(f"Permutation importance, random-forest surrogate, {trials} trials", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def _position(param: dict[str, Any], value: Any) -> float:
    """Where a value crosses its axis, 0 (low end, first choice) to 1; log-scaled parameters by their log."""
    at, (low, high) = encoded(param, value), bounds(param)
    if at is None:
        return UNUSED
    return 0.5 if high <= low else (at - low) / (high - low)


def _ticks(param: dict[str, Any]) -> list[tuple[float, str]]:
    if "choices" in param:  # categoricals: one evenly spaced tick per choice
        return [(_position(param, c), _label(c)) for c in param["choices"]]
    low, high = bounds(param)
    values = [low, (low + high) / 2, high]
    return [(_position(param, 10 ** v if param.get("log") else v), _label(10 ** v if param.get("log") else v))
            for v in values]


def parallel_coordinates(params: Sequence[dict[str, Any]], trials: Sequence[TrialRecord], scores: Sequence[float],
                         *, metric: str, direction: str) -> bytes | None:
    """One polyline per trial across an axis per parameter, coloured by the metric, the best drawn last."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    if len(params) < 2 or not trials:
        return None
    fig = Figure(figsize=(max(6.0, 1.4 * len(params) + 2), 4.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    # the better end of the colour map is always the bright one
    cmap = colormaps["viridis" if direction == "maximize" else "viridis_r"]
    norm = Normalize(min(scores), max(scores))
    order = sorted(range(len(trials)), key=lambda i: scores[i] if direction == "maximize" else -scores[i])
    xs = range(len(params))
    for i in order:
        ys = [_position(p, trials[i].config.get(p["name"])) for p in params]
        ax.plot(xs, ys, color=cmap(norm(scores[i])), alpha=0.7, linewidth=1.2)
    for x, param in enumerate(params):
        ax.axvline(x, color="black", linewidth=0.8)
        ticks = _ticks(param) + [(UNUSED, "unused")] * (param.get("condition") is not None)
        for y, text in ticks:
            ax.text(x - 0.03, y, text, ha="right", va="center", fontsize=7)
    ax.set_xticks(list(xs), [p["name"] + (" (log)" if p.get("log") else "") for p in params], fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.5, len(params) - 0.8)
    ax.set_ylim(UNUSED - 0.08, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric)
    return _png(fig)


def slices(params: Sequence[dict[str, Any]], trials: Sequence[TrialRecord], scores: Sequence[float],
           *, metric: str) -> bytes | None:
    """The metric against each parameter, one panel each; the trials that did not use it are left out."""
    import numpy as np
    from matplotlib.figure import Figure

    if not params or not trials:
        return None
    fig = Figure(figsize=(max(4.0, 3.0 * len(params)), 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(params), sharey=True, squeeze=False)[0]
    rng = np.random.default_rng(0)  # fixed jitter: regenerating the report gives the same picture
    for ax, param in zip(axes, params):
        used = [(t.config.get(param["name"]), s) for t, s in zip(trials, scores)
                if encoded(param, t.config.get(param["name"])) is not None]
        ys = [s for _, s in used]
        if "choices" in param:  # categoricals: a jittered column per choice
            xs = [param["choices"].index(v) + rng.uniform(-0.15, 0.15) for v, _ in used]
            ax.set_xticks(range(len(param["choices"])), [_label(c) for c in param["choices"]], fontsize=7)
        else:
            xs = [v for v, _ in used]
            if param.get("log"):
                ax.set_xscale("log")
        ax.scatter(xs, ys, s=14, alpha=0.6)
        if used:  # the best trial using it (scores arrive best first)
            ax.scatter(xs[:1], ys[:1], marker="*", s=90, color="tab:red", zorder=3)
        ax.set_xlabel(param["name"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    return _png(fig)


def draw_plots(results: dict[str, Any], trials: list[TrialRecord]) -> dict[str, bytes]:
    """PNG bytes by file stem (insight.PLOTS), only of the figures that have something to show."""
    part, metric, direction = results.get("insight") or {}, results["metric"], results["direction"]
    ranked = ranked_trials(trials)
    scores = [score(t, metric, direction) for t in ranked]
    by_name = {p["name"]: p for p in varying(results.get("space") or [], ranked)}
    imp = part.get("importance") or {}
    # parameters most important first; without an importance (too few trials) there is no "most important"
    params = [by_name[n] for n in part.get("order") or [] if n in by_name] if imp.get("params") else []
    images = {"importance": importance(imp.get("params") or [], trials=imp.get("trials", 0)),
              "parallel_coordinates": parallel_coordinates(params[:PARALLEL_PARAMS], ranked, scores,
                                                           metric=metric, direction=direction),
              "slices": slices(params[:SLICE_PARAMS], ranked, scores, metric=metric)}
    return {stem: png for stem, png in images.items() if png}
