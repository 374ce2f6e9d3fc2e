"""The report's content as neutral data: sections of blocks, rendered by the HTML and the
Markdown template alike, so the two documents cannot drift apart.

Each `*_section` function builds one section from the results.json content (or None when
the section does not apply); all text is plain and unescaped, the templates escape it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Sequence, Union

from automl.data.base import Profile
from automl.reporting.formatting import format_duration, format_param, format_time, format_value

PLOTS = {  # file stem -> caption, in report order
    "best_by_trial": "Best score so far against trials finished",
    "best_by_time": "Best score so far against wall time",
    "score_by_family": "Score by model family (completed and pruned trials)",
    "learning_curves": "Learning curves of the top trials",
}
MODEL_TITLES = {"search": "Best single model (as trained in the search)",
                "refit": "Best configuration refit on train+validation",
                "ensemble": "Greedy ensemble of the best trials"}


@dataclass(frozen=True)
class Paragraph:
    text: str
    kind: ClassVar[str] = "paragraph"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]  # all empty: a two-column key/value table without a header row
    rows: list[tuple[str, ...]]
    kind: ClassVar[str] = "table"

    @property
    def has_header(self) -> bool:
        return any(self.headers)


@dataclass(frozen=True)
class Code:
    text: str
    kind: ClassVar[str] = "code"


@dataclass(frozen=True)
class Figure:
    stem: str  # report_files/<stem>.png
    caption: str
    kind: ClassVar[str] = "figure"


@dataclass(frozen=True)
class Details:
    """A collapsed block: a one-line summary and the full text (a traceback) under it."""

    summary: str
    text: str
    kind: ClassVar[str] = "details"


Block = Union[Paragraph, Table, Code, Figure, Details]
FACTS = ("", "")  # the headers of a key/value table


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list[Block]


@dataclass(frozen=True)
class Document:
    name: str
    status: str  # the line under the title: finished and why, or still running
    sections: list[Section]


def _better(r: dict[str, Any]) -> str:
    return "higher" if r["direction"] == "maximize" else "lower"


def summary_section(r: dict[str, Any]) -> Section:
    metric, best, counts = r["metric"], r["best"], r["trials"]
    rows = [("Selection metric", f"{metric} ({_better(r)} is better)"),
            ("Best trial", f"{best['trial_id']} ({best['family']})" if best else "none finished yet"),
            (f"Best trial's validation {metric}", format_value(best["value"]) if best else "—"),
            *_predict_rows(r),
            ("Trials", f"{counts['total']} total: {counts['completed']} completed, {counts['pruned']} pruned, "
                       f"{counts['failed']} failed, {counts['running']} running, {counts['pending']} pending"),
            ("Wall time", _wall_time(r))]
    if r["stopped_because"]:
        rows.append(("Stopped because", r["stopped_because"]))
    if (r.get("baseline") or {}).get("message"):
        rows.append(("Baseline", r["baseline"]["message"]))
    return Section("Summary", [Table(FACTS, rows)])


def _predict_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The model `automl predict` uses and its test score, each named (not the best trial's)."""
    metric, chosen = r["metric"], r.get("predict_model")
    if chosen:
        return [("Model `automl predict` uses", chosen["label"]),
                (f"Its test {metric}", format_value((chosen.get("test") or {}).get(metric)))]
    if r["test"]:  # a run finished before the model was named
        return [(f"Test {metric} of the exported model", format_value(r["test"].get(metric)))]
    return [(f"Test {metric}", "— (after the search)")]


PHASES = ("search", "refit", "ensemble", "baselines", "export", "evaluation", "other")


def _wall_time(r: dict[str, Any]) -> str:
    """The whole run's wall time and, once it finished, where it went."""
    timings = r.get("timings") or {}
    parts = [f"{phase} {format_duration(timings[phase])}" for phase in PHASES if phase in timings]
    if not timings and r["status"] == "finished":  # an older run recorded only its search
        return f"{format_duration(r['duration_s'])} (the search alone)"
    return format_duration(r["duration_s"]) + (f" ({', '.join(parts)})" if parts else "")


def data_section(r: dict[str, Any]) -> Section:
    profile = r["profile"] or {}
    order = [f.name for f in dataclasses.fields(Profile)]  # the store sorts keys; show them in a reading order
    keys = sorted(profile, key=lambda k: order.index(k) if k in order else len(order))
    rows = [(k.replace("_", " "), format_value(profile[k])) for k in keys
            if profile[k] not in (None, [], {}, "") and k != "notes"]
    blocks: list[Block] = [Table(("Property", "Value"), rows)] if rows else [Paragraph("Not profiled yet.")]
    blocks += [Paragraph(f"Note: {note}") for note in profile.get("notes") or []]
    return Section("Data", blocks)


CHECK_TITLES = {"leakage": "Possible leak", "duplicates": "Duplicates across splits", "constant": "Constant columns",
                "id_like": "ID-like columns", "classes": "Classes"}


def data_checks_section(r: dict[str, Any]) -> Section | None:
    """What the checks before the search found (absent from runs older than the checks)."""
    findings = r.get("data_checks")
    if findings is None:
        return None
    if not findings:
        return Section("Data checks", [Paragraph("No leak, duplicate across splits, constant or ID-like column, "
                                                 "or class without training rows found.")])
    rows = [(CHECK_TITLES.get(f.get("check"), str(f.get("check"))), str(f.get("message"))) for f in findings]
    return Section("Data checks", [Table(("Check", "Finding"), rows)])


def families_section(r: dict[str, Any]) -> Section:
    rows = [(f["family"], "chosen" if f["chosen"] else "excluded", f["reason"] or "", str(f["trials"]),
             format_value(f["best"])) for f in r["families"]]
    table = Table(("Family", "Decision", "Reason", "Trials", f"Best {r['metric']}"), rows)
    return Section("Model families: what the agent chose and why",
                   [table] if rows else [Paragraph("No families chosen yet.")])


def strategy_section(r: dict[str, Any]) -> Section:
    strategy = r["strategy"] or {}
    chosen = "picked by the agent (auto)" if strategy.get("chosen_by") == "auto" else "named in the spec"
    rows = [("Strategy", str(strategy.get("name", "—"))), ("Chosen", chosen if strategy.get("name") else "—")]
    if strategy.get("chosen_by") == "auto" and strategy.get("reason"):
        rows.append(("Why", str(strategy["reason"])))
    if strategy.get("budget_note"):
        rows.append(("Budget", str(strategy["budget_note"])))
    rows += [("Source", str(strategy.get("source") or "—")), ("Seed", format_value(r["seed"]))]
    blocks: list[Block] = [Table(FACTS, rows)]
    if strategy.get("options"):
        blocks.append(Code(json.dumps(strategy["options"], indent=2, sort_keys=True)))
    fallback = r.get("strategy_fallback")
    if fallback:
        blocks.append(Paragraph(f"After {fallback['after_trials']} trials the strategy broke and the search went on "
                                f"with the {fallback['fallback']} strategy: {fallback['error']}"))
    if r["space"]:
        blocks.append(Table(("Parameter", "Range", "Active when"), [format_param(p) for p in r["space"]]))
    return Section("Search strategy and space", blocks)


def best_model_section(r: dict[str, Any]) -> Section | None:
    best = r["best"]
    if not best:
        return None
    # the test column is this trial's own model, not the refit or ensemble `predict` may use
    search = (r.get("models") or {}).get("search") or {}
    test = search.get("test") if search.get("trial_id") == best["trial_id"] else None
    names = list(dict.fromkeys([*best["val"], *(test or {})]))
    return Section("Best model", [
        Paragraph(f"Trial {best['trial_id']} ({best['family']}), best epoch {format_value(best['best_epoch'])} "
                  f"of {best['epochs']}."),
        Table(("Parameter", "Value"), [(k, format_value(v)) for k, v in sorted(best["config"].items())]),
        Table(("Metric", f"Validation (trial {best['trial_id']})", f"Test (trial {best['trial_id']}, as trained)"),
              [(n, format_value(best["val"].get(n)), format_value(test.get(n)) if test else "—") for n in names])])


def final_models_section(r: dict[str, Any]) -> Section | None:
    """The models made after the search, side by side on the test split."""
    models = r.get("models")
    if not models:
        return None
    blocks: list[Block] = [_final_models_table(r)]
    for why in r.get("cut_for_time") or ():
        blocks.append(Paragraph(why[:1].upper() + why[1:] + "."))
    if r.get("refit_error"):
        blocks.append(Paragraph(f"The refit failed ({r['refit_error']}); the best trial's own model is exported."))
    refit = models.get("refit")
    if refit:
        blocks.append(Paragraph(f"The refit trained for {refit.get('epochs')} epochs (the best epoch of the search) "
                                f"on {refit.get('rows')} rows; it has no validation score of its own."))
    ensemble = models.get("ensemble")
    if ensemble:
        blocks.append(Table(("Ensemble member", "Family", "Weight"),
                            [(m["trial_id"], m.get("family") or "", format_value(m["weight"]))
                             for m in ensemble["members"]]))
        blocks.append(Paragraph("Members and weights were chosen greedily on the validation predictions "
                                "(Caruana et al. 2004), so its validation score is optimistic; the test column "
                                "is not."))
    return Section("Final models: single best, refit and ensemble on the test split", blocks)


def _final_models_table(r: dict[str, Any]) -> Table:
    metric, models = r["metric"], r["models"]
    rows = []
    for key, title in MODEL_TITLES.items():
        entry = models.get(key)
        if entry:
            used = " (used by `automl predict`)" if key == r.get("default_model") and not _baseline_used(r) else ""
            trial = f": trial {models['search']['trial_id']}" if key != "ensemble" and "search" in models else ""
            rows.append((title + trial + used, format_value((entry.get("val") or {}).get(metric)),
                         format_value((entry.get("test") or {}).get(metric))))
    return Table(("Model", f"Validation {metric}", f"Test {metric}"), rows)


def _baseline_used(r: dict[str, Any]) -> bool:
    return bool((r.get("baseline") or {}).get("used_by_predict"))


def baseline_section(r: dict[str, Any]) -> Section | None:
    """The simple scikit-learn models, scored on the validation and test rows the deep models were."""
    baseline, metric = r.get("baseline"), r["metric"]
    if not baseline:
        return None
    rows = []
    for entry in baseline.get("models") or []:
        if "skipped" in entry:
            rows.append((entry["title"], "—", "—", f"skipped: {entry['skipped']}"))
            continue
        used = ", used by `automl predict`" if _baseline_used(r) else ""
        notes = [f"{entry['rows']} training rows, {format_duration(entry['seconds'])}",
                 entry.get("note"), f"saved as model/baseline.npz{used}" if entry.get("saved") else None]
        rows.append((entry["title"], format_value(entry["val"].get(metric)), format_value(entry["test"].get(metric)),
                     "; ".join(n for n in notes if n)))
    blocks: list[Block] = [Paragraph(baseline["message"])] if baseline.get("message") else []
    if rows:
        blocks.append(Table(("Baseline", f"Validation {metric}", f"Test {metric}", "Notes"), rows))
    blocks.append(Paragraph(baseline.get("note") or "Each baseline was fit on the training rows the trials used, "
                            "on the same preprocessed inputs, and scored on the same validation and test rows; "
                            "a refit one (see its notes) then learned from the validation rows too, as the "
                            "deep model's refit did, so its test score is the refit model's."))
    return Section("Baseline: a simple model on the same split", blocks)


def exported_model_section(r: dict[str, Any]) -> Section | None:
    model = r["model"]
    if not model:
        return None
    missing = "" if model.get("exists", True) else " (missing)"
    blocks: list[Block] = [Table(FACTS, [("File", str(model.get("path", "—")) + missing),
                                         ("Format", str(model.get("format", "—")))])]
    if model.get("how"):
        blocks += [Paragraph("How to load and use it:"), Code(str(model["how"]))]
    return Section("Exported model", blocks)


def plots_section(plotted: Iterable[str]) -> Section:
    plotted = set(plotted)
    figures = [Figure(stem, caption) for stem, caption in PLOTS.items() if stem in plotted]
    return Section("Plots", figures or [Paragraph("Nothing to plot yet.")])


def failures_section(r: dict[str, Any]) -> Section | None:
    failures = r["failures"]
    if not failures:
        return None
    return Section(f"Failed trials ({len(failures)})",
                   [Details(f"{f['trial_id']} ({f['family']}): {f['last_line'] or f['reason'] or 'failed'}",
                            f["error"] or f["reason"] or "no error recorded") for f in failures])


def memory_infeasible_section(r: dict[str, Any]) -> Section | None:
    rows = [(m["trial_id"], m["family"], ", ".join(str(b) for b in m["batch_sizes"]),
             json.dumps(m["config"], sort_keys=True)) for m in r.get("memory_infeasible") or []]
    if not rows:
        return None
    return Section("Memory-infeasible configurations",
                   [Paragraph("These ran out of memory, also when retried with half the batch size."),
                    Table(("Trial", "Family", "Batch sizes tried", "Config"), rows)])


def run_facts_section(r: dict[str, Any]) -> Section:
    run = r["run"] or {}
    rows = [("Status", r["status"]), ("Device", format_value(run.get("device"))),
            ("Workers", format_value(run.get("workers"))), ("Host", format_value(run.get("host"))),
            ("Started", format_time(r["started_at"])), ("Finished", format_time(r["finished_at"])),
            ("Wall time", _wall_time(r)), ("Search time", format_duration(r.get("search_duration_s"))),
            ("Report generated", format_time(r["generated_at"])), ("Disk used", _megabytes(run.get("disk_bytes")))]
    rows += [(f"{k} version", str(v)) for k, v in sorted((run.get("versions") or {}).items())]
    return Section("Run facts", [Table(FACTS, rows)])


def _megabytes(size: Any) -> str:
    """The run directory's size at the end of the run (before the report), or a dash before it ended."""
    return "—" if not isinstance(size, (int, float)) else f"{size / 1e6:.1f} MB (the run directory, after the export)"


def status_line(r: dict[str, Any]) -> str:
    if r["status"] == "finished":
        return "Finished" + (f": {r['stopped_because']}" if r["stopped_because"] else "")
    return "Running (or interrupted): this report shows the trials recorded so far."


def build_document(r: dict[str, Any], plotted: Iterable[str], evaluation: Section | None = None,
                   search: Sequence[Section | None] = (), next_steps: Section | None = None) -> Document:
    """The whole report from the results.json content and the stems of the plots drawn; `evaluation`:
    the test-split evaluation of the model `predict` uses (reporting/evaluation.py); `search`: the
    leaderboard, importance and parameter plots, `next_steps`: what to try next (reporting/insight.py)."""
    sections = [summary_section(r), data_section(r), data_checks_section(r), families_section(r), strategy_section(r),
                *search, best_model_section(r), final_models_section(r), baseline_section(r),
                evaluation, next_steps, exported_model_section(r), plots_section(plotted), failures_section(r),
                memory_infeasible_section(r), run_facts_section(r)]
    return Document(r["name"], status_line(r), [s for s in sections if s is not None])
