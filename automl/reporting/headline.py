"""The few lines `automl run` ends with (cli.py prints them); every score and model is in the report."""
from __future__ import annotations

from automl.reporting.formatting import format_duration


def headline(summary: dict, seconds: float) -> list[str]:
    """The model `predict` uses and its test score, the baseline's verdict, the wall time of the
    command (`seconds`) and of the run's phases, and the report's path."""
    metric = summary["metric"]
    chosen = summary["predict_model"]
    lines = [f"automl predict uses {chosen['label']}: test {metric} {chosen['test'].get(metric, float('nan')):.4f}"]
    baseline = summary.get("baseline") or {}
    best = next((m for m in baseline.get("models", []) if m["name"] == baseline.get("best")), None)
    trial = f"the deep search's best trial {summary['best_trial_id']} ({summary['best_family']})"
    verdict = {True: "beat it", False: "did not beat it"}.get(baseline.get("deep_beats_baseline"))
    if best and verdict:
        lines.append(f"baseline {best['title']}: test {metric} {best['test'].get(metric, float('nan')):.4f}; "
                     f"{trial} {verdict} on validation")
    else:
        lines.append(f"{trial}: validation {metric} {summary['val'].get(metric, float('nan')):.4f}; no baseline to "
                     "compare (the report says why)")
    phases = ", ".join(f"{name} {format_duration(value)}" for name, value in summary.get("timings", {}).items())
    whole = summary["duration_s"]  # from the run's record: the report's figure
    rest = "the rest: imports, loading the data, the report" if whole <= seconds else "over all of its commands"
    lines.append(f"stopped: {summary['stopped_because']}; wall time {format_duration(seconds)}, the run "
                 f"{format_duration(whole)} ({phases}; {rest})")
    lines.extend(f"note: {why}" for why in summary.get("cut_for_time") or ())
    lines.append(f"report: {summary['report'].get('html', '-')}")
    return lines
