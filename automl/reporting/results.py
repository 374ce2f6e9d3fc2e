"""results.json: the machine-readable summary of a run, built from its trial store.

Every part reads only the meta documents and trial rows, and copes with any of them still
missing: the report may be built mid-run, before the agent has written them all.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

from automl.files import dumps_strict, finite_number
from automl.records import Reason, Status
from automl.store import TrialRecord, TrialStore, ranked_trials

TOP = 10  # leaderboard rows
META_KEYS = ("spec", "metric", "direction", "metrics", "space", "profile", "choices", "strategy", "run", "final",
             "strategy_fallback", "data_checks")
COUNTED = {Status.COMPLETE: "completed", Status.PRUNED: "pruned", Status.FAILED: "failed"}  # per-family counts


def finite(value: Any) -> bool:
    return finite_number(value) is not None


def family_of(trial: TrialRecord) -> str:
    return trial.family or str(trial.config.get("family") or "?")


def score(trial: TrialRecord, metric: str, direction: str) -> float | None:
    """The trial's selection metric; derived from the loss (= -metric when maximising) if not reported."""
    value = trial.metrics.get(metric)
    if finite(value):
        return value
    if finite(trial.loss):
        return -trial.loss if direction == "maximize" and metric != "loss" else trial.loss
    return None


def load(store: TrialStore) -> tuple[dict[str, Any], list[TrialRecord]]:
    """The meta documents (any may be None) and every trial with its per-epoch history."""
    meta = {key: store.get_meta(key) for key in META_KEYS}
    meta["attempts"] = store.attempts()  # retried attempts: crashes, out of memory
    return meta, store.trials(with_history=True)


def metric_and_direction(meta: dict[str, Any]) -> tuple[str, str]:
    spec = meta.get("spec") or {}
    metric = meta.get("metric") or spec.get("metric") or "loss"
    direction = meta.get("direction") or spec.get("direction")
    if direction not in ("maximize", "minimize"):
        from automl.spec import METRICS  # only needed when the agent has not yet written the direction

        direction = METRICS.get(metric, ("minimize",))[0]
    return metric, direction


def best_part(ranked: list[TrialRecord], metric: str, direction: str) -> dict[str, Any] | None:
    if not ranked:
        return None
    best = ranked[0]
    return {"trial_id": best.trial_id, "family": family_of(best), "config": dict(best.config), "status": best.status,
            "value": score(best, metric, direction),
            "val": {k: v for k, v in best.metrics.items() if k not in ("train_loss", "best_epoch")},
            "best_epoch": best.metrics.get("best_epoch"), "epochs": best.epochs, "duration_s": best.duration}


def families_part(choices: Iterable[dict[str, Any]], trials: list[TrialRecord], ranked: list[TrialRecord],
                  metric: str, direction: str) -> list[dict[str, Any]]:
    """One row per family: the agent's decision and reason merged with how its trials did; chosen first."""
    def row(name: str, chosen: bool = True, reason: str | None = None) -> dict[str, Any]:
        best = next((score(t, metric, direction) for t in ranked if family_of(t) == name), None)
        return {"family": name, "chosen": chosen, "reason": reason, "trials": 0, "completed": 0, "pruned": 0,
                "failed": 0, "best": best}

    rows = {str(c.get("family")): row(str(c.get("family")), bool(c.get("chosen")), c.get("reason")) for c in choices}
    for trial in trials:
        entry = rows.setdefault(family_of(trial), row(family_of(trial)))
        entry["trials"] += 1
        key = next((key for status, key in COUNTED.items() if trial.status == status), None)
        if key:
            entry[key] += 1
    return sorted(rows.values(), key=lambda r: not r["chosen"])


def counts_part(trials: list[TrialRecord]) -> dict[str, int]:
    def count(status: Status) -> int:
        return sum(t.status == status for t in trials)

    return {"completed": count(Status.COMPLETE), "failed": count(Status.FAILED), "pruned": count(Status.PRUNED),
            "running": count(Status.RUNNING), "pending": count(Status.PENDING), "total": len(trials)}


def started_at_part(run: dict[str, Any], trials: list[TrialRecord]) -> float | None:
    return run.get("started_at") or min((t.created_at for t in trials), default=None)


def duration_part(final: dict[str, Any] | None, started_at: float | None) -> float | None:
    if final:
        return final.get("duration_s")
    return time.time() - started_at if started_at else None  # mid-run (or interrupted): time since the start


def leaderboard_part(ranked: list[TrialRecord], metric: str, direction: str) -> list[dict[str, Any]]:
    return [{"rank": i, "trial_id": t.trial_id, "family": family_of(t), "value": score(t, metric, direction),
             "loss": t.loss, "epochs": t.epochs, "duration_s": t.duration, "status": t.status, "reason": t.reason}
            for i, t in enumerate(ranked[:TOP], start=1)]


def _error_lines(error: str | None) -> tuple[str, str]:
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return (lines[0], lines[-1]) if lines else ("", "")


def failures_part(trials: list[TrialRecord]) -> list[dict[str, Any]]:
    rows = []
    for trial in trials:
        if trial.status == Status.FAILED:
            first, last = _error_lines(trial.error)
            rows.append({"trial_id": trial.trial_id, "family": family_of(trial), "first_line": first,
                         "last_line": last, "reason": trial.reason, "error": trial.error})
    return rows


def memory_infeasible_part(trials: list[TrialRecord], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that ran out of memory on every try, with the batch sizes tried."""
    rows = []
    for trial in trials:
        if trial.status != Status.FAILED or trial.reason != Reason.OOM:
            continue
        tried = [a["overrides"].get("batch_size", trial.config.get("batch_size"))
                 for a in attempts if a["trial_id"] == trial.trial_id and a["reason"] == Reason.OOM]
        if tried and isinstance(tried[-1], int):
            tried.append(tried[-1] // 2)  # the last try, which failed for good, ran with half the batch
        rows.append({"trial_id": trial.trial_id, "family": family_of(trial), "config": dict(trial.config),
                     "batch_sizes": tried})
    return rows


def model_part(final: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
    model = dict(final.get("model") or {}) or None
    if model and model.get("path"):
        model["exists"] = (run_dir / model["path"]).exists()
    return model


def final_part(final: dict[str, Any]) -> dict[str, Any]:
    """What the agent recorded once the search was over (all None mid-run)."""
    keys = {"test": "test", "final_val": "val", "models": "models", "default_model": "default_model",
            "refit_error": "refit_error", "finished_at": "finished_at", "stopped_because": "stopped_because",
            "baseline": "baseline", "predict_model": "predict_model", "evaluation": "evaluation", "timings": "timings",
            "cut_for_time": "cut_for_time"}
    part = {name: final.get(key) for name, key in keys.items()}
    # duration_s is the whole run; a run finished before the phases were timed recorded only its search
    part["search_duration_s"] = (final.get("timings") or {}).get("search", final.get("duration_s"))
    return part


def build(meta: dict[str, Any], trials: list[TrialRecord], run_dir: Path) -> dict[str, Any]:
    """The results.json content from the meta documents and trials `load` read, as plain JSON
    values (enums as their text, NaN as None): exactly what the file holds."""
    spec, run, final = meta.get("spec") or {}, meta.get("run") or {}, meta.get("final")
    metric, direction = metric_and_direction(meta)
    ranked = ranked_trials(trials)
    started_at = started_at_part(run, trials)
    return json.loads(dumps_strict({
        "name": spec.get("name") or run_dir.name,
        "status": "finished" if final else "running",
        "metric": metric,
        "direction": direction,
        "metrics": meta.get("metrics") or [metric],
        "best": best_part(ranked, metric, direction),
        **final_part(final or {}),
        "trials": counts_part(trials),
        "duration_s": duration_part(final, started_at),
        "started_at": started_at,
        "generated_at": time.time(),
        "strategy": meta.get("strategy") or spec.get("strategy"),
        "strategy_fallback": meta.get("strategy_fallback"),
        "families": families_part(meta.get("choices") or [], trials, ranked, metric, direction),
        "leaderboard": leaderboard_part(ranked, metric, direction),
        "memory_infeasible": memory_infeasible_part(trials, meta.get("attempts") or []),
        "retried": meta.get("attempts") or [],
        "failures": failures_part(trials),
        "model": model_part(final or {}, run_dir),
        "profile": meta.get("profile"),
        "data_checks": meta.get("data_checks"),  # warnings about the data (data/checks.py); None before they ran
        "space": meta.get("space"),
        "run": run,
        "seed": spec.get("seed"),
    }))


def build_results(store: TrialStore) -> dict[str, Any]:
    """The results.json content for the run whose trial store this is."""
    return build(*load(store), store.path.parent)
