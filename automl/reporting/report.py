"""The run report: a pure function of the run directory's trial store.

`write_report(run_dir)` can run at any time, also mid-run beside the agent: it opens the
store read-only and copes with any meta key or trial field still missing. It writes

    results.json       machine-readable summary (build_results)
    report.html        self-contained page: inline CSS, plots as base64 PNG, no links out
    report.md          the same content in Markdown, plots referenced in report_files/
    report_files/*.png the plots

Both documents are rendered from one neutral list of sections, so they cannot drift apart.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

from automl.data.base import Profile
from automl.errors import RunDirError
from automl.store import TrialRecord, TrialStore, ranked_trials

TOP = 10  # leaderboard rows
N_CURVES = 5  # learning curves drawn
RANKED = ("COMPLETE", "PRUNED")  # statuses whose loss counts (a pruned trial still has a valid best epoch)
META_KEYS = ("spec", "metric", "direction", "metrics", "space", "profile", "choices", "strategy", "run", "final",
             "strategy_fallback")
PLOTS = {  # file stem -> caption, in report order
    "best_by_trial": "Best score so far against trials finished",
    "best_by_time": "Best score so far against wall time",
    "score_by_family": "Score by model family (completed and pruned trials)",
    "learning_curves": "Learning curves of the top trials",
}


# -- results.json ---------------------------------------------------------------------------

def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _clean(value: Any) -> Any:
    """NaN/inf -> None so results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _score(trial: TrialRecord, metric: str, direction: str) -> float | None:
    """The trial's selection metric; derived from the loss (= -metric when maximising) if not reported."""
    value = trial.metrics.get(metric)
    if _finite(value):
        return value
    if _finite(trial.loss):
        return -trial.loss if direction == "maximize" and metric != "loss" else trial.loss
    return None


def _ranked(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Best first, the same order the agent uses to pick the model it exports."""
    return ranked_trials(trials)


def _family(trial: TrialRecord) -> str:
    return trial.family or str(trial.config.get("family") or "?")


def _error_lines(error: str | None) -> tuple[str, str]:
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return (lines[0], lines[-1]) if lines else ("", "")


def _load(store: TrialStore) -> tuple[dict[str, Any], list[TrialRecord]]:
    meta = {key: store.get_meta(key) for key in META_KEYS}
    meta["attempts"] = store.attempts()  # retried attempts: crashes, out of memory
    return meta, store.trials(with_history=True)


def _memory_infeasible(trials: list[TrialRecord], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that ran out of memory on every try, with the batch sizes tried."""
    rows = []
    for trial in trials:
        if trial.status != "FAILED" or trial.reason != "oom":
            continue
        tried = [a["overrides"].get("batch_size", trial.config.get("batch_size"))
                 for a in attempts if a["trial_id"] == trial.trial_id and a["reason"] == "oom"]
        if tried and isinstance(tried[-1], int):
            tried.append(tried[-1] // 2)  # the last try, which failed for good, ran with half the batch
        rows.append({"trial_id": trial.trial_id, "family": _family(trial), "config": trial.config,
                     "batch_sizes": tried})
    return rows


def _metric(meta: dict[str, Any]) -> tuple[str, str]:
    spec = meta.get("spec") or {}
    metric = meta.get("metric") or spec.get("metric") or "loss"
    direction = meta.get("direction") or spec.get("direction")
    if direction not in ("maximize", "minimize"):
        from automl.spec import METRICS  # only needed when the agent has not yet written the direction

        direction = METRICS.get(metric, ("minimize",))[0]
    return metric, direction


def _results(meta: dict[str, Any], trials: list[TrialRecord], run_dir: Path) -> dict[str, Any]:
    spec, run, final = meta.get("spec") or {}, meta.get("run") or {}, meta.get("final")
    metric, direction = _metric(meta)
    ranked = _ranked(trials)
    by_status = {s: sum(t.status == s for t in trials) for s in ("COMPLETE", "FAILED", "PRUNED", "RUNNING", "PENDING")}
    started_at = run.get("started_at") or min((t.created_at for t in trials), default=None)
    if final:
        duration = final.get("duration_s")
    else:  # mid-run (or interrupted): time since the run started
        duration = time.time() - started_at if started_at else None

    best = None
    if ranked:
        b = ranked[0]
        best = {"trial_id": b.trial_id, "family": _family(b), "config": b.config, "status": b.status,
                "value": _score(b, metric, direction),
                "val": {k: v for k, v in b.metrics.items() if k not in ("train_loss", "best_epoch")},
                "best_epoch": b.metrics.get("best_epoch"), "epochs": b.epochs, "duration_s": b.duration}

    # one row per family: the agent's decision and reason merged with how its trials did
    def family_row(name: str, chosen: bool = True, reason: str | None = None) -> dict[str, Any]:
        return {"family": name, "chosen": chosen, "reason": reason, "trials": 0, "completed": 0, "pruned": 0,
                "failed": 0, "best": next((_score(t, metric, direction) for t in ranked if _family(t) == name), None)}

    families = {str(c.get("family")): family_row(str(c.get("family")), bool(c.get("chosen")), c.get("reason"))
                for c in meta.get("choices") or []}
    for t in trials:
        row = families.setdefault(_family(t), family_row(_family(t)))
        row["trials"] += 1
        key = {"COMPLETE": "completed", "PRUNED": "pruned", "FAILED": "failed"}.get(t.status)
        if key:
            row[key] += 1

    model = dict((final or {}).get("model") or {}) or None
    if model and model.get("path"):
        model["exists"] = (run_dir / model["path"]).exists()

    return _clean({
        "name": spec.get("name") or run_dir.name,
        "status": "finished" if final else "running",
        "metric": metric,
        "direction": direction,
        "metrics": meta.get("metrics") or [metric],
        "best": best,
        "test": (final or {}).get("test"),
        "final_val": (final or {}).get("val"),
        "models": (final or {}).get("models"),
        "default_model": (final or {}).get("default_model"),
        "refit_error": (final or {}).get("refit_error"),
        "trials": {"completed": by_status["COMPLETE"], "failed": by_status["FAILED"], "pruned": by_status["PRUNED"],
                   "running": by_status["RUNNING"], "pending": by_status["PENDING"], "total": len(trials)},
        "duration_s": duration,
        "started_at": started_at,
        "finished_at": (final or {}).get("finished_at"),
        "stopped_because": (final or {}).get("stopped_because"),
        "generated_at": time.time(),
        "strategy": meta.get("strategy") or spec.get("strategy"),
        "strategy_fallback": meta.get("strategy_fallback"),
        "families": sorted(families.values(), key=lambda r: not r["chosen"]),
        "leaderboard": [{"rank": i, "trial_id": t.trial_id, "family": _family(t), "value": _score(t, metric, direction),
                         "loss": t.loss, "epochs": t.epochs, "duration_s": t.duration, "status": t.status,
                         "reason": t.reason} for i, t in enumerate(ranked[:TOP], start=1)],
        "memory_infeasible": _memory_infeasible(trials, meta.get("attempts") or []),
        "retried": meta.get("attempts") or [],
        "failures": [{"trial_id": t.trial_id, "family": _family(t), "first_line": _error_lines(t.error)[0],
                      "last_line": _error_lines(t.error)[1], "reason": t.reason, "error": t.error}
                     for t in trials if t.status == "FAILED"],
        "model": model,
        "profile": meta.get("profile"),
        "space": meta.get("space"),
        "run": run,
        "seed": spec.get("seed"),
    })


def build_results(store: TrialStore) -> dict[str, Any]:
    """The results.json content for the run whose trial store this is."""
    return _results(*_load(store), store.path.parent)


# -- plots ------------------------------------------------------------------------------------

def _plots(results: dict[str, Any], trials: list[TrialRecord]) -> dict[str, bytes]:
    from automl.reporting import plots

    metric, direction = results["metric"], results["direction"]
    # finishing order, so "best so far" is what the agent knew at that moment (workers finish out of order)
    done = sorted((t for t in trials if t.finished and t.finished_at is not None), key=lambda t: (t.finished_at, t.seq))
    values = [_score(t, metric, direction) if t.status in RANKED else None for t in done]
    start = results["started_at"] or 0.0
    elapsed = [t.finished_at - start for t in done]
    minutes = bool(elapsed) and max(elapsed) > 600
    ranked = _ranked(trials)
    scores: dict[str, list[float]] = {}
    for t in ranked:
        scores.setdefault(_family(t), []).append(_score(t, metric, direction))
    # curves of the validation metric; val_loss when the history does not carry the metric
    key = metric if any(metric in h for t in ranked[:N_CURVES] for h in t.history) else "val_loss"
    curves = {f"{t.trial_id} ({_family(t)})": [(h.get("epoch"), h.get(key)) for h in t.history]
              for t in ranked[:N_CURVES]}

    images = {
        "best_by_trial": plots.best_so_far(range(1, len(done) + 1), values, metric=metric, direction=direction,
                                           xlabel="trials finished"),
        "best_by_time": plots.best_so_far([e / 60 if minutes else e for e in elapsed], values, metric=metric,
                                          direction=direction, xlabel=f"wall time ({'min' if minutes else 's'})"),
        "score_by_family": plots.score_by_family(scores, metric=metric),
        "learning_curves": plots.learning_curves(curves, metric=metric if key == metric else "loss"),
    }
    return {name: png for name, png in images.items() if png}


# -- formatting -------------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, dict):
        items = list(value.items())
        more = f", … ({len(items) - 20} more)" if len(items) > 20 else ""
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in items[:20]) + more
    if isinstance(value, (list, tuple)):
        more = f", … ({len(value) - 20} more)" if len(value) > 20 else ""
        return ", ".join(_fmt(v) for v in value[:20]) + more
    return str(value)


def _fmt_duration(seconds: float | None) -> str:
    if not _finite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _fmt_time(ts: float | None) -> str:
    if not _finite(ts):
        return "—"
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")


def _fmt_param(p: dict[str, Any]) -> tuple[str, str, str]:
    if "choices" in p:
        values = _fmt(p["choices"])
    else:
        values = f"[{_fmt(p.get('low'))}, {_fmt(p.get('high'))}]" + (" log" if p.get("log") else "") + (
            f" step {_fmt(p['step'])}" if p.get("step") else "")
    cond = p.get("condition")
    when = ""
    if isinstance(cond, dict):
        allowed = list(cond.get("values") or [])
        when = f"{cond.get('parent')} = {_fmt(allowed[0])}" if len(allowed) == 1 else \
            f"{cond.get('parent')} in {{{_fmt(allowed)}}}"
    return str(p.get("name")), f"{p.get('type', '')} {values}".strip(), when


# -- the document: sections of neutral blocks, rendered to HTML and Markdown --------------------
# blocks: ("p", text) | ("table", headers, rows) | ("code", text) | ("image", stem) | ("details", summary, text)

def _sections(r: dict[str, Any], images: Iterable[str]) -> list[tuple[str, list[tuple]]]:
    metric, best, test = r["metric"], r["best"], r["test"] or {}
    better = "higher" if r["direction"] == "maximize" else "lower"
    counts = r["trials"]
    out: list[tuple[str, list[tuple]]] = []

    summary = [("Selection metric", f"{metric} ({better} is better)"),
               ("Best trial", f"{best['trial_id']} ({best['family']})" if best else "none finished yet"),
               (f"Best validation {metric}", _fmt(best["value"]) if best else "—"),
               (f"Test {metric}", _fmt(test.get(metric)) if r["test"] else "— (after the search)"),
               ("Trials", f"{counts['total']} total: {counts['completed']} completed, {counts['pruned']} pruned, "
                          f"{counts['failed']} failed, {counts['running']} running, {counts['pending']} pending"),
               ("Duration", _fmt_duration(r["duration_s"]))]
    if r["stopped_because"]:
        summary.append(("Stopped because", r["stopped_because"]))
    out.append(("Summary", [("table", ("", ""), summary)]))

    profile = r["profile"] or {}
    order = [f.name for f in dataclasses.fields(Profile)]  # the store sorts keys; show them in a reading order
    keys = sorted(profile, key=lambda k: order.index(k) if k in order else len(order))
    rows = [(k.replace("_", " "), _fmt(profile[k])) for k in keys if profile[k] not in (None, [], {}, "") and k != "notes"]
    blocks: list[tuple] = [("table", ("Property", "Value"), rows)] if rows else [("p", "Not profiled yet.")]
    blocks += [("p", f"Note: {note}") for note in profile.get("notes") or []]
    out.append(("Data", blocks))

    fam_rows = [(f["family"], "chosen" if f["chosen"] else "excluded", f["reason"] or "", str(f["trials"]),
                 _fmt(f["best"])) for f in r["families"]]
    out.append(("Model families: what the agent chose and why",
                [("table", ("Family", "Decision", "Reason", "Trials", f"Best {metric}"), fam_rows)] if fam_rows
                else [("p", "No families chosen yet.")]))

    strategy = r["strategy"] or {}
    blocks = [("table", ("", ""), [("Strategy", str(strategy.get("name", "—"))),
                                   ("Source", str(strategy.get("source") or "—")),
                                   ("Seed", _fmt(r["seed"]))])]
    if strategy.get("options"):
        blocks.append(("code", json.dumps(strategy["options"], indent=2, sort_keys=True)))
    fallback = r.get("strategy_fallback")
    if fallback:
        blocks.append(("p", f"After {fallback['after_trials']} trials the strategy broke and the search went on "
                            f"with the {fallback['fallback']} strategy: {fallback['error']}"))
    if r["space"]:
        blocks.append(("table", ("Parameter", "Range", "Active when"), [_fmt_param(p) for p in r["space"]]))
    out.append(("Search strategy and space", blocks))

    lb = [(str(e["rank"]), e["trial_id"], e["family"], _fmt(e["value"]), str(e["epochs"]), _fmt_duration(e["duration_s"]),
           e["status"].lower() + (f" ({e['reason']})" if e["reason"] else "")) for e in r["leaderboard"]]
    out.append((f"Leaderboard (top {TOP} by {metric}, {better} is better)",
                [("table", ("#", "Trial", "Family", metric, "Epochs", "Duration", "Status"), lb)] if lb
                else [("p", "No trial has finished yet.")]))

    if best:
        names = list(dict.fromkeys([*best["val"], *test]))
        blocks = [("p", f"Trial {best['trial_id']} ({best['family']}), best epoch {_fmt(best['best_epoch'])} "
                        f"of {best['epochs']}."),
                  ("table", ("Parameter", "Value"), [(k, _fmt(v)) for k, v in sorted(best["config"].items())]),
                  ("table", ("Metric", "Validation", "Test"),
                   [(n, _fmt(best["val"].get(n)), _fmt(test.get(n)) if r["test"] else "—") for n in names])]
        out.append(("Best model", blocks))

    if r.get("models"):
        out.append(("Final models: single best, refit and ensemble on the test split", _model_blocks(r)))

    model = r["model"]
    if model:
        blocks = [("table", ("", ""), [("File", str(model.get("path", "—")) + ("" if model.get("exists", True)
                                                                             else " (missing)")),
                                       ("Format", str(model.get("format", "—")))])]
        if model.get("how"):
            blocks += [("p", "How to load and use it:"), ("code", str(model["how"]))]
        out.append(("Exported model", blocks))

    stems = [s for s in PLOTS if s in set(images)]
    out.append(("Plots", [("image", s) for s in stems] or [("p", "Nothing to plot yet.")]))

    if r["failures"]:
        out.append((f"Failed trials ({len(r['failures'])})",
                    [("details", f"{f['trial_id']} ({f['family']}): {f['last_line'] or f['reason'] or 'failed'}",
                      f["error"] or f["reason"] or "no error recorded") for f in r["failures"]]))

    if r.get("memory_infeasible"):
        out.append(("Memory-infeasible configurations",
                    [("p", "These ran out of memory, also when retried with half the batch size."),
                     ("table", ("Trial", "Family", "Batch sizes tried", "Config"),
                      [(m["trial_id"], m["family"], ", ".join(str(b) for b in m["batch_sizes"]),
                        json.dumps(m["config"], sort_keys=True)) for m in r["memory_infeasible"]])]))

    run = r["run"] or {}
    facts = [("Status", r["status"]), ("Device", _fmt(run.get("device"))), ("Workers", _fmt(run.get("workers"))),
             ("Host", _fmt(run.get("host"))), ("Started", _fmt_time(r["started_at"])),
             ("Finished", _fmt_time(r["finished_at"])), ("Duration", _fmt_duration(r["duration_s"])),
             ("Report generated", _fmt_time(r["generated_at"]))]
    facts += [(f"{k} version", str(v)) for k, v in sorted((run.get("versions") or {}).items())]
    out.append(("Run facts", [("table", ("", ""), facts)]))
    return out


MODEL_TITLES = {"search": "Best single model (as trained in the search)",
                "refit": "Best configuration refit on train+validation",
                "ensemble": "Greedy ensemble of the best trials"}


def _model_blocks(r: dict[str, Any]) -> list[tuple]:
    """The models made after the search, side by side on the test split."""
    metric, models = r["metric"], r["models"]
    rows = []
    for key, title in MODEL_TITLES.items():
        entry = models.get(key)
        if not entry:
            continue
        used = " (used by `automl predict`)" if key == r.get("default_model") else ""
        rows.append((title + used, _fmt((entry.get("val") or {}).get(metric)), _fmt((entry.get("test") or {}).get(metric))))
    blocks: list[tuple] = [("table", ("Model", f"Validation {metric}", f"Test {metric}"), rows)]
    if r.get("refit_error"):
        blocks.append(("p", f"The refit failed ({r['refit_error']}); the best trial's own model is exported."))
    refit = models.get("refit")
    if refit:
        blocks.append(("p", f"The refit trained for {refit.get('epochs')} epochs (the best epoch of the search) on "
                            f"{refit.get('rows')} rows; it has no validation score of its own."))
    ensemble = models.get("ensemble")
    if ensemble:
        blocks.append(("table", ("Ensemble member", "Family", "Weight"),
                       [(m["trial_id"], m.get("family") or "", _fmt(m["weight"])) for m in ensemble["members"]]))
        blocks.append(("p", "Members and weights were chosen greedily on the validation predictions "
                            "(Caruana et al. 2004), so its validation score is optimistic; the test column is not."))
    return blocks


def _subtitle(r: dict[str, Any]) -> str:
    if r["status"] == "finished":
        return "Finished" + (f": {r['stopped_because']}" if r["stopped_because"] else "")
    return "Running (or interrupted): this report shows the trials recorded so far."


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.status{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
details{margin:.4em 0}summary{cursor:pointer;font-family:monospace}
"""


def _html(r: dict[str, Any], images: dict[str, bytes]) -> str:
    e = html.escape  # every piece of user or run text goes through it

    def block(b: tuple) -> str:
        kind = b[0]
        if kind == "p":
            return f"<p>{e(b[1])}</p>"
        if kind == "code":
            return f"<pre><code>{e(b[1])}</code></pre>"
        if kind == "table":
            head = "" if not any(b[1]) else "<tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>"
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            return f"<table>{head}{body}</table>"
        if kind == "image":
            data = base64.b64encode(images[b[1]]).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(PLOTS[b[1]])}">'
                    f"<figcaption>{e(PLOTS[b[1]])}</figcaption></figure>")
        if kind == "details":
            return f"<details><summary>{e(b[1])}</summary><pre>{e(b[2])}</pre></details>"
        raise ValueError(kind)

    body = "".join(f"<h2>{e(title)}</h2>" + "".join(block(b) for b in blocks)
                   for title, blocks in _sections(r, images))
    title = f"AutoML report: {r['name']}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"
            f'<p class="status">{e(_subtitle(r))}</p>{body}</body></html>\n')


def _md_text(text: Any) -> str:
    # < and > as entities so stray HTML in names is shown, not rendered; | would split a table cell
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def _markdown(r: dict[str, Any], images: dict[str, bytes], files_dir: str) -> str:
    def block(b: tuple) -> str:
        kind = b[0]
        if kind == "p":
            return _md_text(b[1])
        if kind == "code":
            fence = "````" if "```" in b[1] else "```"
            return f"{fence}\n{b[1]}\n{fence}"
        if kind == "table":
            lines = ["| " + " | ".join(_md_text(h) for h in b[1]) + " |", "|" + "---|" * len(b[1])]
            lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in b[2]]
            return "\n".join(lines)
        if kind == "image":
            return f"![{_md_text(PLOTS[b[1]])}]({files_dir}/{b[1]}.png)"
        if kind == "details":
            fence = "````" if "```" in b[2] else "```"
            return f"<details><summary>{html.escape(b[1])}</summary>\n\n{fence}\n{b[2]}\n{fence}\n</details>"
        raise ValueError(kind)

    parts = [f"# AutoML report: {_md_text(r['name'])}", f"*{_md_text(_subtitle(r))}*"]
    for title, blocks in _sections(r, images):
        parts.append(f"## {_md_text(title)}")
        parts += [block(b) for b in blocks]
    return "\n\n".join(parts) + "\n"


# -- writing ----------------------------------------------------------------------------------

def _write(path: Path, data: str | bytes) -> None:
    # write-then-rename: a reader (browser, a second `automl report`) never sees a half-written file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Regenerate results.json, report.html, report.md and report_files/*.png from the store."""
    run_dir = Path(run_dir)
    db = run_dir / TrialStore.FILENAME
    if not db.is_file():
        raise RunDirError(f"{run_dir} has no {TrialStore.FILENAME}: not a run directory, or the run has not started")
    store = TrialStore(db, readonly=True)  # read-only: the agent may be writing right now
    try:
        meta, trials = _load(store)
    finally:
        store.close()
    results = _results(meta, trials, run_dir)
    images = _plots(results, trials)

    files_dir = run_dir / "report_files"
    files_dir.mkdir(exist_ok=True)
    paths: dict[str, Path] = {}
    for stem in PLOTS:
        path = files_dir / f"{stem}.png"
        if stem in images:
            _write(path, images[stem])
            paths[stem] = path
        else:
            path.unlink(missing_ok=True)  # no stale picture from an older report
    paths["results"] = run_dir / "results.json"
    _write(paths["results"], json.dumps(results, indent=2, sort_keys=True, allow_nan=False) + "\n")
    paths["markdown"] = run_dir / "report.md"
    _write(paths["markdown"], _markdown(results, images, files_dir.name))
    paths["html"] = run_dir / "report.html"
    _write(paths["html"], _html(results, images))
    return paths
