"""The run report: a pure function of the run directory's trial store.

`write_report(run_dir)` can run at any time, also mid-run beside the agent: it opens the
store read-only and copes with any meta key or trial field still missing. It writes (into
run_dir, or the folder `out_dir` names)

    results.json       machine-readable summary (results.build_results)
    report.html        self-contained page: inline CSS, plots as base64 PNG, no links out
    report.md          the same content in Markdown, plots referenced in report_files/
    report_files/*.png the plots

Both documents render one neutral `sections.Document` through the templates in
templates/ (report.html.j2, report.md.j2), so they cannot drift apart. `markdown_report`
renders the Markdown without plots and writes nothing: it works on a full disk.
"""
from __future__ import annotations

import base64
import html
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from automl.errors import DiskFullError, RunDirError
from automl.files import disk_full, dumps_strict, write_atomic
from automl.records import Status
from automl.reporting.evaluation import EVALUATION_PLOTS, draw_evaluation_plots, evaluation_section
from automl.reporting.insight import PLOTS as INSIGHT_PLOTS, insight_part, next_steps_section, search_sections
from automl.reporting.insight_plots import draw_plots as draw_insight_plots
from automl.reporting.results import build, build_results, family_of, load, score
from automl.reporting.sections import PLOTS, Document, build_document
from automl.store import TrialRecord, TrialStore, ranked_trials

__all__ = ["build_results", "markdown_report", "write_report"]

N_CURVES = 5  # learning curves drawn
RANKED = (Status.COMPLETE, Status.PRUNED)  # statuses whose loss counts (a pruned trial has a valid best epoch)
FILES_DIR = "report_files"


# -- plots ------------------------------------------------------------------------------------

def _progress_plots(results: dict[str, Any], trials: list[TrialRecord]) -> dict[str, bytes | None]:
    """Best so far against trials finished and against wall time."""
    from automl.reporting import plots

    metric, direction = results["metric"], results["direction"]
    # finishing order, so "best so far" is what the agent knew at that moment (workers finish out of order)
    done = sorted((t for t in trials if t.finished and t.finished_at is not None), key=lambda t: (t.finished_at, t.seq))
    values = [score(t, metric, direction) if t.status in RANKED else None for t in done]
    elapsed = [t.finished_at - (results["started_at"] or 0.0) for t in done]
    minutes = bool(elapsed) and max(elapsed) > 600
    return {
        "best_by_trial": plots.best_so_far(range(1, len(done) + 1), values, metric=metric, direction=direction,
                                           xlabel="trials finished"),
        "best_by_time": plots.best_so_far([e / 60 if minutes else e for e in elapsed], values, metric=metric,
                                          direction=direction, xlabel=f"wall time ({'min' if minutes else 's'})"),
    }


def _family_plot(results: dict[str, Any], ranked: list[TrialRecord]) -> bytes | None:
    from automl.reporting import plots

    scores: dict[str, list[float]] = {}
    for trial in ranked:
        scores.setdefault(family_of(trial), []).append(score(trial, results["metric"], results["direction"]))
    return plots.score_by_family(scores, metric=results["metric"])


def _curves_plot(results: dict[str, Any], ranked: list[TrialRecord]) -> bytes | None:
    from automl.reporting import plots

    metric, top = results["metric"], ranked[:N_CURVES]
    # curves of the validation metric; val_loss when the history does not carry the metric
    key = metric if any(metric in h for t in top for h in t.history) else "val_loss"
    curves = {f"{t.trial_id} ({family_of(t)})": [(h.get("epoch"), h.get(key)) for h in t.history] for t in top}
    return plots.learning_curves(curves, metric=metric if key == metric else "loss")


def draw_plots(results: dict[str, Any], trials: list[TrialRecord]) -> dict[str, bytes]:
    """PNG bytes by file stem, only of the plots that have something to show."""
    ranked = ranked_trials(trials)
    images = {**_progress_plots(results, trials), "score_by_family": _family_plot(results, ranked),
              "learning_curves": _curves_plot(results, ranked), **draw_evaluation_plots(results),
              **draw_insight_plots(results, trials)}
    return {stem: png for stem, png in images.items() if png}


# -- rendering --------------------------------------------------------------------------------

@jinja2.pass_eval_context
def _escape_html(context: jinja2.nodes.EvalContext, value: Any) -> Any:
    # html.escape rather than markupsafe's escape: the same entities (&#x27;) the report has always written
    if not context.autoescape or isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value)))


def _markdown_text(text: Any) -> str:
    # < and > as entities so stray HTML in names is shown, not rendered; | would split a table cell
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    return "````" if "```" in text else "```"


@lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("automl.reporting", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        finalize=_escape_html, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(md=_markdown_text, fence=_fence, html=html.escape)
    return env


def render_html(doc: Document, images: dict[str, bytes]) -> str:
    encoded = {stem: base64.b64encode(png).decode("ascii") for stem, png in images.items()}
    return _environment().get_template("report.html.j2").render(doc=doc, images=encoded)


def render_markdown(doc: Document, files_dir: str = FILES_DIR) -> str:
    return _environment().get_template("report.md.j2").render(doc=doc, files_dir=files_dir)


# -- writing ----------------------------------------------------------------------------------

def _write_plots(files_dir: Path, images: dict[str, bytes]) -> dict[str, Path]:
    files_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem in [*PLOTS, *EVALUATION_PLOTS, *INSIGHT_PLOTS]:
        path = files_dir / f"{stem}.png"
        if stem in images:
            write_atomic(path, images[stem])
            paths[stem] = path
        else:
            path.unlink(missing_ok=True)  # no stale picture from an older report
    return paths


def _results(run_dir: Path) -> tuple[dict[str, Any], list[TrialRecord]]:
    db = run_dir / TrialStore.FILENAME
    if not db.is_file():
        raise RunDirError(f"{run_dir} has no {TrialStore.FILENAME}: not a run directory, or the run has not started")
    store = TrialStore(db, readonly=True)  # read-only: the agent may be writing right now
    try:
        meta, trials = load(store)
    finally:
        store.close()
    results = build(meta, trials, run_dir)
    results["insight"] = insight_part(results, trials, meta.get("spec"))  # importance, leaderboard, what next
    return results, trials


def markdown_report(run_dir: str | Path) -> str:
    """The Markdown report without its plots (they would be files), writing nothing."""
    results, _ = _results(Path(run_dir))
    return render_markdown(build_document(results, {}, evaluation_section(results, {}), search_sections(results, {}),
                                          next_steps_section(results)))


def write_report(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Regenerate results.json, report.html, report.md and report_files/*.png from the store, into
    `out_dir` (default: the run directory). A full disk raises `DiskFullError` naming the file;
    no temporary is left, and files already there stay whole (each is replaced atomically)."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    results, trials = _results(run_dir)
    images = draw_plots(results, trials)
    doc = build_document(results, images, evaluation_section(results, images), search_sections(results, images),
                         next_steps_section(results))
    try:
        paths = _write_plots(out / FILES_DIR, images)
        paths["results"] = out / "results.json"
        write_atomic(paths["results"], dumps_strict(results, indent=2, sort_keys=True) + "\n")
        paths["markdown"] = out / "report.md"
        write_atomic(paths["markdown"], render_markdown(doc))
        paths["html"] = out / "report.html"
        write_atomic(paths["html"], render_html(doc, images))
    except OSError as error:
        if disk_full(error):
            raise DiskFullError(error.filename or out) from error
        raise
    return paths
