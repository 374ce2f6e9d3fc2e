"""Why this model: which hyperparameters mattered, the trials in parameter space, a leaderboard
of every requested metric and what to try next; like the rest of the report, read from the
trial store alone, so it works mid-run.

`insight_part` builds the "insight" part of results.json from the trials; the `*_section`
functions render that part; `draw_plots` (insight_plots.py) draws its figures.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np

from automl.files import finite_number
from automl.records import Reason, Status
from automl.reporting.formatting import format_duration, format_value
from automl.reporting.results import TOP, family_of, score
from automl.reporting.sections import Block, Figure, Paragraph, Section, Table
from automl.store import TrialRecord, ranked_trials

MIN_TRIALS = 8  # below this, a surrogate or a "the best trials ..." pattern would read noise
TOP_K = 5  # "the best trials" of the rules below
N_TREES, N_REPEATS = 64, 10
LEADERBOARD_PARAMS = 6  # hyperparameter columns of the leaderboard, most important first
EDGE = 0.1  # share of a range (of its log for a log-scaled parameter) that counts as its edge
METHOD = (f"permutation importance (as scikit-learn computes it) of a random-forest surrogate ({N_TREES} trees, seed 0) fitted on the "
          "trials' hyperparameters against their loss: how much the surrogate's R² drops when one parameter's "
          f"values are shuffled (mean of {N_REPEATS} shuffles)")
PLOTS = {  # file stem -> caption
    "importance": "Hyperparameter importance (permutation importance of a random-forest surrogate)",
    "parallel_coordinates": "The trials across the most important hyperparameters, coloured by the metric",
    "slices": "The metric against each of the most important hyperparameters",
}


@dataclass(frozen=True)
class SortableTable(Table):
    """A table the HTML report sorts by the column whose header is clicked."""

    sortable: ClassVar[bool] = True


# -- parameters as numbers --------------------------------------------------------------------

def encoded(param: dict[str, Any], value: Any) -> float | None:
    """The value on the axis the surrogate and the plots use: a choice's index, log10 of a
    log-scaled number, else the number; None when the trial did not use the parameter."""
    if value is None:
        return None
    if "choices" in param:
        choices = list(param["choices"])
        return float(choices.index(value)) if value in choices else None
    number = finite_number(value)
    if number is None or (param.get("log") and number <= 0):
        return None
    return math.log10(number) if param.get("log") else float(number)


def bounds(param: dict[str, Any]) -> tuple[float, float]:
    if "choices" in param:
        return 0.0, float(max(len(param["choices"]) - 1, 0))
    low, high = encoded(param, param.get("low")), encoded(param, param.get("high"))
    return (low if low is not None else 0.0), (high if high is not None else 1.0)


def varying(space: Iterable[dict[str, Any]], trials: Sequence[TrialRecord]) -> list[dict[str, Any]]:
    """The search-space parameters that took more than one value (or were unused by some) in `trials`."""
    return [p for p in space if len({encoded(p, t.config.get(p["name"])) for t in trials}) > 1]


def loss_of(trial: TrialRecord, metric: str, direction: str) -> float:
    value = score(trial, metric, direction)
    return -value if direction == "maximize" else value


# -- the insight part of results.json ---------------------------------------------------------

def importance_part(space: list[dict[str, Any]], ranked: list[TrialRecord], metric: str,
                    direction: str) -> dict[str, Any]:
    n = len(ranked)
    if n < MIN_TRIALS:
        return {"trials": n, "skipped": f"{n} finished trial{'s' if n != 1 else ''}; it needs at least {MIN_TRIALS}"}
    params = varying(space, ranked)
    losses = [loss_of(t, metric, direction) for t in ranked]
    if not params or len(set(losses)) < 2:
        return {"trials": n, "skipped": "no hyperparameter or no loss varied between the finished trials"}
    rows = []
    for trial in ranked:
        row = []
        for param in params:
            value, (low, high) = encoded(param, trial.config.get(param["name"])), bounds(param)
            row.append(low - max(high - low, 1.0) if value is None else value)  # unused: a sentinel below the range
        rows.append(row)
    from sklearn.ensemble import RandomForestRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's notes on tiny samples: the R² below says how far to trust it
        forest = RandomForestRegressor(n_estimators=N_TREES, random_state=0, oob_score=True, n_jobs=1)
        forest.fit(rows, losses)
        drops = permutation_drops(forest, np.asarray(rows, dtype=float), np.asarray(losses, dtype=float))
    found = [{"name": p["name"], "importance": float(d.mean()), "std": float(d.std())} for p, d in zip(params, drops)]
    return {"trials": n, "method": METHOD, "oob_r2": float(forest.oob_score_),
            "params": sorted(found, key=lambda row: -row["importance"])}


def permutation_drops(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """scikit-learn's permutation importance (the drop of the model's R² when one column is shuffled,
    N_REPEATS shuffles per column), with every shuffled copy predicted in one call: per-call overhead
    made sklearn's loop take seconds for a few dozen trials."""
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    base = r2_score(y, model.predict(X))
    copies = []
    for column in range(X.shape[1]):
        for _ in range(N_REPEATS):
            shuffled = X.copy()
            shuffled[:, column] = X[rng.permutation(len(X)), column]
            copies.append(shuffled)
    predicted = model.predict(np.concatenate(copies)).reshape(X.shape[1], N_REPEATS, len(X))
    return np.array([[base - r2_score(y, p) for p in per_column] for per_column in predicted])


def parameter_order(space: list[dict[str, Any]], importance: dict[str, Any]) -> list[str]:
    """Parameter names, most important first, then the rest in the space's order."""
    ranked = [row["name"] for row in importance.get("params") or []]
    return ranked + [p["name"] for p in space if p["name"] not in ranked]


def leaderboard_part(r: dict[str, Any], ranked: list[TrialRecord], order: list[str]) -> dict[str, Any]:
    metric, direction, top = r["metric"], r["direction"], ranked[:TOP]
    metrics = list(dict.fromkeys([metric, *(r.get("metrics") or [])]))
    names = list(dict.fromkeys([*order, *(k for t in top for k in t.config)]))
    # only the hyperparameters that tell the top trials apart; the family has its own column
    differ = [n for n in names if n != "family" and len({json.dumps(t.config.get(n)) for t in top}) > 1]
    rows = [{"rank": i, "trial_id": t.trial_id, "family": family_of(t), "epochs": t.epochs, "duration_s": t.duration,
             "status": t.status, "reason": t.reason, "config": {n: t.config.get(n) for n in differ},
             "metrics": {m: score(t, metric, direction) if m == metric else t.metrics.get(m) for m in metrics}}
            for i, t in enumerate(top, start=1)]
    return {"metrics": metrics, "params": differ, "rows": rows}


def insight_part(r: dict[str, Any], trials: list[TrialRecord], spec: dict[str, Any] | None) -> dict[str, Any]:
    """The "insight" part of results.json, from the results built so far, the trials and the spec."""
    space, ranked = r.get("space") or [], ranked_trials(trials)
    importance = importance_part(space, ranked, r["metric"], r["direction"])
    order = parameter_order(space, importance)
    return {"importance": importance, "order": order, "leaderboard": leaderboard_part(r, ranked, order),
            "next_steps": next_steps(r, trials, spec or {})}


# -- what to try next: each rule speaks only when the run shows its pattern --------------------

def edge_steps(space: list[dict[str, Any]], best: list[TrialRecord]) -> list[str]:
    """The best trials crowd one end of a numeric range: the optimum may lie beyond it."""
    steps = []
    for param in space:
        if "choices" in param:
            continue
        low, high = bounds(param)
        values = [v for t in best if (v := encoded(param, t.config.get(param["name"]))) is not None]
        if len(values) < 3 or high <= low:
            continue
        shares = [(v - low) / (high - low) for v in values]  # 0 at the low end, 1 at the high end
        for side, near in (("low", sum(a <= EDGE for a in shares)), ("high", sum(a >= 1 - EDGE for a in shares))):
            wider = _widened(param, side)
            if near * 3 >= len(values) * 2 and wider is not None:  # two thirds of them in that tenth of the range
                override = json.dumps({"families": {"overrides": {param["name"]: {side: wider}}}})
                steps.append(f"{near} of the best {len(values)} trials using {param['name']} sit at the {side} end "
                             f"of its range ({format_value(param[side])}): widen it, e.g. {override[1:-1]}.")
    return steps


def _widened(param: dict[str, Any], side: str) -> float | None:
    """The bound one step further out (a decade on a log scale, half the range otherwise), or None
    where that would cross zero (a rate or a count cannot)."""
    low, high = param["low"], param["high"]
    if param.get("log"):
        new = low / 10 if side == "low" else high * 10
    else:
        new = low - (high - low) / 2 if side == "low" else high + (high - low) / 2
        if side == "low":
            new = max(new, 1 if param.get("type") == "int" else 0)
    new = round(new) if param.get("type") == "int" else float(f"{new:.4g}")  # a number to type, not 0.30000000000000004
    return None if new == param[side] else new


def epochs_step(best: list[TrialRecord], spec: dict[str, Any]) -> str | None:
    """The best trials trained to max_epochs without stopping early, best epoch near the end: more epochs may help."""
    max_epochs = (spec.get("budget") or {}).get("max_epochs")
    if not max_epochs:
        return None
    full = [t for t in best[:3] if t.status == Status.COMPLETE and t.epochs >= max_epochs
            and t.reason != Reason.EARLY_STOPPED
            and (finite_number(t.metrics.get("best_epoch")) or t.epochs) > t.epochs * 3 / 4]
    if len(full) * 2 <= min(len(best), 3):
        return None
    return (f"The best trials ({', '.join(t.trial_id for t in full)}) trained all {max_epochs} epochs without "
            f"stopping early, their best epoch in the last quarter: raise budget.max_epochs (e.g. to "
            f"{max_epochs * 2}).")


def family_steps(ranked: list[TrialRecord]) -> list[str]:
    """A family none of whose (at least 3) trials made the top: leaving it out saves its time."""
    if len(ranked) < 2 * TOP_K:
        return []
    top = {family_of(t) for t in ranked[:TOP_K]}
    by_family: dict[str, list[TrialRecord]] = {}
    for trial in ranked:
        by_family.setdefault(family_of(trial), []).append(trial)
    return [f"Family {name} never ranked in the top {TOP_K} ({len(own)} trials, "
            f"{format_duration(sum(t.duration or 0.0 for t in own))} of training): exclude it to save time, "
            f'"families": {{"exclude": ["{name}"]}}.'
            for name, own in by_family.items() if name not in top and len(own) >= 3]


def improving_step(r: dict[str, Any], trials: list[TrialRecord]) -> str | None:
    """The budget ended while the best so far still improved in the last quarter of the trials."""
    if r["status"] != "finished":
        return None
    done = sorted((t for t in trials if t.finished and t.finished_at is not None), key=lambda t: (t.finished_at, t.seq))
    scored = {t.trial_id for t in ranked_trials(done)}
    losses = [(i, loss_of(t, r["metric"], r["direction"])) for i, t in enumerate(done) if t.trial_id in scored]
    if len(losses) < MIN_TRIALS:
        return None
    cut = math.ceil(len(done) * 3 / 4)
    before = min((v for i, v in losses if i < cut), default=math.inf)
    best_index, best = min(losses, key=lambda iv: iv[1])
    gained = before - best
    if not (best_index >= cut and gained > 0.01 * (losses[0][1] - best)):  # not a rounding-sized gain
        return None
    sign = -1 if r["direction"] == "maximize" else 1
    return (f"The best score still improved in the last quarter of the trials (trial {best_index + 1} of {len(done)}: "
            f"{r['metric']} {format_value(sign * before)} → {format_value(sign * best)}): more trials "
            f"(budget.max_trials or budget.max_time) would likely find better ones.")


def baseline_step(r: dict[str, Any]) -> str | None:
    baseline = r.get("baseline") or {}
    if baseline.get("deep_beats_baseline") is not False:
        return None
    title = next((m.get("title") for m in baseline.get("models") or [] if m.get("name") == baseline.get("best")),
                 baseline.get("best"))
    return (f"The deep model did not beat the baseline {title} on validation: the data may hold too little for "
            f"deep models to show, so prefer the baseline, or try more trials, epochs or other families.")


def next_steps(r: dict[str, Any], trials: list[TrialRecord], spec: dict[str, Any]) -> list[str]:
    ranked = ranked_trials(trials)
    best = ranked[:TOP_K] if len(ranked) >= MIN_TRIALS else []  # "the best" of a handful of trials says little
    steps = [*edge_steps(r.get("space") or [], best), epochs_step(best, spec), *family_steps(ranked),
             improving_step(r, trials), baseline_step(r)]
    return [step for step in steps if step]


# -- sections ---------------------------------------------------------------------------------

def _better(r: dict[str, Any]) -> str:
    return "higher" if r["direction"] == "maximize" else "lower"


def leaderboard_section(r: dict[str, Any]) -> Section:
    board, metric = (r.get("insight") or {}).get("leaderboard") or {}, r["metric"]
    title = f"Leaderboard (top {TOP} by {metric}, {_better(r)} is better)"
    if not board.get("rows"):
        return Section(title, [Paragraph("No trial has finished yet.")])
    params = board["params"][:LEADERBOARD_PARAMS]
    headers = ("#", "Trial", "Family", *board["metrics"], "Epochs", "Time (s)", "Status", *params)
    rows = [(str(e["rank"]), e["trial_id"], e["family"], *(format_value(e["metrics"].get(m)) for m in board["metrics"]),
             str(e["epochs"]), format_value(e["duration_s"] and round(e["duration_s"], 1)),
             e["status"].lower() + (f" ({e['reason']})" if e["reason"] else ""),
             *(format_value(e["config"].get(p)) for p in params)) for e in board["rows"]]
    blocks: list[Block] = [SortableTable(headers, rows)]
    if params:
        more = len(board["params"]) - len(params)
        blocks.append(Paragraph("Hyperparameter columns: those that differ between these trials, most important "
                                "first" + (f" ({more} more differ; results.json has them all)." if more else ".")))
    return Section(title, blocks)


def importance_section(r: dict[str, Any], plotted: Iterable[str]) -> Section | None:
    importance = (r.get("insight") or {}).get("importance")
    if not importance:
        return None
    title = "Hyperparameter importance"
    if "skipped" in importance:
        return Section(title, [Paragraph(f"Not estimated: {importance['skipped']}.")])
    fit = importance["oob_r2"]
    trust = " Its fit is poor, so read the ranking as a rough hint." if fit < 0.3 else ""
    blocks: list[Block] = [
        Paragraph(f"Method: {importance['method']}. Fitted on {importance['trials']} completed and pruned trials, "
                  f"with {r['metric']} as the loss ({_better(r)} is better); a choice enters as its index, a "
                  f"log-scaled parameter as its log10, an unused one as a value below its range. The surrogate "
                  f"explains {fit:.0%} of the loss's variance out of bag (R² {fit:.2f}).{trust}"),
        Table(("Parameter", "Importance", "± (std over shuffles)"),
              [(p["name"], f"{p['importance']:.4f}", f"{p['std']:.4f}") for p in importance["params"]])]
    if "importance" in set(plotted):
        blocks.append(Figure("importance", PLOTS["importance"] + f", {importance['trials']} trials"))
    return Section(title, blocks)


def parameters_section(plotted: Iterable[str]) -> Section | None:
    plotted = set(plotted)
    figures = [Figure(stem, PLOTS[stem]) for stem in ("parallel_coordinates", "slices") if stem in plotted]
    return Section("The trials in parameter space", figures) if figures else None


def next_steps_section(r: dict[str, Any]) -> Section | None:
    steps = (r.get("insight") or {}).get("next_steps")
    if steps is None:
        return None
    if not steps:
        return Section("What to try next", [Paragraph("Nothing in this run points to a change of the spec: no best "
                                                      "trial at the edge of a range or at max_epochs, no family "
                                                      "left out of the top, no late improvement, no baseline ahead.")])
    blocks: list[Block] = [Paragraph(step) for step in steps]
    if r["status"] != "finished":
        blocks.insert(0, Paragraph("From the trials finished so far; the run is still going."))
    return Section("What to try next", blocks)



def search_sections(r: dict[str, Any], plotted: Iterable[str]) -> list[Section | None]:
    """The sections in the leaderboard's place: the leaderboard, then why its best are best."""
    plotted = set(plotted)
    return [leaderboard_section(r), importance_section(r, plotted), parameters_section(plotted)]
