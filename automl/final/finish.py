"""The end of a run: choose the best trial, score its model on test, refit it, build the
ensemble, export, and store the `final` meta document the report and the CLI read: with the
wall time of the whole run and of each phase, and the test split's evaluation of the model
`automl predict` uses (the report is built from the store alone, also long after the run)."""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from automl.data.base import PreparedData
from automl.errors import BudgetExhausted
from automl.families.base import Family
from automl.final.background import Background
from automl.final.baseline import baseline_predictions, fit_baselines, judge, save_baseline
from automl.final.export import export_model
from automl.final.models import FinalModels, NoExportableModel
from automl.final.time_plan import decide_refit
from automl.final.worker_refit import WorkerRefit
from automl.retention import directory_bytes
from automl.spec import TaskSpec
from automl.store import TrialStore, best_trial
from automl.training.trained_models import load_best_model
from automl.training.trainer import Trainer, TrainSettings

log = logging.getLogger(__name__)

Progress = Callable[[str, "float | None"], None]  # (step, None) as it starts, (step, seconds) when done
MAX_STORED_ROWS = 10_000  # regression test rows kept for the report's plots: a random sample beyond
MAX_MATRIX_CLASSES = 50  # a larger confusion matrix is neither readable nor small


@contextmanager
def _step(progress: Progress | None, name: str, timings: dict[str, float], key: str):
    """Time a step into timings[key] (a failed refit cost its time too) and tell `progress` that it
    started and, unless it raised, how long it took: the refit and the ensemble can take many
    minutes."""
    if progress is not None:
        progress(name, None)
    start = time.monotonic()
    try:
        yield
    finally:
        timings[key] = time.monotonic() - start
    if progress is not None:
        progress(name, timings[key])


def whole_run(store: TrialStore, search: float) -> float:
    """Wall time of the whole run so far: the search time of earlier commands (a resumed run) plus
    this command's since the run record started: for a run in one command, Finished - Started."""
    run = store.get_meta("run") or {}
    start = run.get("resumed_at") or run.get("started_at")
    if not start:
        return search
    return float(store.get_meta("elapsed_before", 0.0) or 0.0) + time.time() - start


def no_model_document(stopped_because: str, duration: float, whole: float | None = None) -> dict[str, Any]:
    """The `final` document of a run that ends without a model: `duration` is the search's."""
    return {"best_trial_id": None, "stopped_because": stopped_because, "finished_at": time.time(),
            "duration_s": duration if whole is None else whole, "timings": {"search": duration}}


def _timings(whole: float, timings: dict[str, float]) -> dict[str, float]:
    # "other": workers starting, the best checkpoint loaded and scored: the phases then add up to the whole
    return {**timings, "other": max(0.0, whole - sum(timings.values()))}


def evaluation_document(data: PreparedData, predictions: np.ndarray, model: dict[str, Any],
                        seed: int) -> dict[str, Any] | None:
    """What the report needs to evaluate the model `predict` uses on the test split. Classification:
    the confusion matrix and scikit-learn's per-class report, on every test row; regression: the
    true and predicted values, a random sample of MAX_STORED_ROWS beyond that."""
    y, rows = np.asarray(data.y_test), len(data.y_test)
    if rows == 0:
        return None
    document: dict[str, Any] = {**model, "task": data.profile.task, "rows": rows}
    if data.profile.task == "classification":
        from sklearn.metrics import classification_report, confusion_matrix

        n = int(data.profile.n_classes or predictions.shape[1])
        names = [str(c) for c in (data.profile.class_names or range(n))]
        predicted = predictions.argmax(axis=1) if predictions.ndim == 2 else predictions.astype(int)
        labels = list(range(n))
        document["classes"] = names
        document["per_class"] = classification_report(y, predicted, labels=labels, target_names=names,
                                                      output_dict=True, zero_division=0)
        document["confusion"] = (confusion_matrix(y, predicted, labels=labels).tolist()
                                 if n <= MAX_MATRIX_CLASSES else None)
        return document
    keep = np.arange(rows)
    if rows > MAX_STORED_ROWS:
        keep = np.sort(np.random.default_rng(seed).choice(rows, MAX_STORED_ROWS, replace=False))
    def short(values: np.ndarray) -> list[float]:  # 7 significant digits: plenty for a plot, half the text
        return [float(f"{v:.7g}") for v in values.astype(float)]

    document.update(stored=len(keep), y_true=short(y[keep]), y_pred=short(predictions.reshape(-1)[keep]))
    return document


def finish_search(spec: TaskSpec, data: PreparedData, families: Mapping[str, Family], store: TrialStore,
                  run_dir: Path, settings: TrainSettings, *, stopped_because: str,
                  duration: float, progress: Progress | None = None,
                  deadline: float | None = None, executor=None, refit_threads: int | None = None) -> dict[str, Any]:
    """Store and return the `final` document, with the model exported under run_dir/model.

    `duration`: the search's time (over every command of a resumed run); `deadline`: the wall-clock
    time (time.time()) by which max_time wants the command done, None without max_time; `executor`:
    the search's, its workers idle: the refit trains in one of them, on `refit_threads` torch threads
    (without it, or with no worker free, on a thread of this process).
    Raises `BudgetExhausted` when no trial finished with a usable score, and `NoExportableModel`
    when no scored trial's checkpoint can be read (each with its `final` document stored first); a
    damaged best checkpoint passes to the next best trial's."""
    trials = store.trials()
    best = best_trial(trials)
    if best is None:
        store.set_meta("final", no_model_document(stopped_because, duration, whole_run(store, duration)))
        failed = [t for t in trials if t.status == "FAILED"]
        last_error = (failed[-1].error or "").strip() if failed else ""
        hint = f" The last error: {last_error.splitlines()[-1]}." if last_error else ""
        raise BudgetExhausted(f"no trial finished with a usable score ({stopped_because}; {len(failed)} failed)."
                              f"{hint} See {run_dir / 'report.html'}.")
    # the driver's own trainer, made only now: during the search the data live in the workers
    trainer = Trainer(data, settings, families)
    final_models = FinalModels(spec, data, settings, trainer, run_dir / "checkpoints")
    try:
        best, saved, model, passed_over = final_models.readable_best(trials)
    except NoExportableModel as error:
        store.set_meta("final", {**no_model_document(stopped_because, duration, whole_run(store, duration)),
                                 "error": str(error)})
        raise
    timings: dict[str, float] = {"search": duration}
    val = {k: v for k, v in best.metrics.items() if k in settings.metric_names}  # CV: the mean over folds
    models = {"search": {"trial_id": best.trial_id, "val": val, "test": final_models.test_metrics(model)}}
    exported, refit_error, cut = model, None, []
    refit = decide_refit(spec.refit, best, data, duration, None if deadline is None else deadline - time.time())
    if final_models.refit_wanted() and not refit.run:
        cut.append(refit.why)
        log.info("%s", refit.why)
    refit_tried = final_models.refit_wanted() and refit.run  # the baselines learn from the same rows
    refit_job = None
    if refit_tried:  # in an idle worker, beside the ensemble and the baselines here
        epochs = max(1, int(best.metrics.get("best_epoch") or best.epochs or 1))
        refit_name = (f"refit of trial {best.trial_id} on {final_models.refit_rows()} rows, "
                      f"{epochs} epoch{'s' if epochs != 1 else ''}")
        if progress is not None:
            progress(refit_name, None)
        config = final_models.trained_config(best, saved)
        refit_job = _start_refit(executor, best.trial_id, config, epochs, refit_threads, trainer, run_dir)
    with _step(progress, "ensemble of the best trials", timings, "ensemble"):
        ensemble_net, ensemble = final_models.ensemble(trials)
    if ensemble is not None:
        models["ensemble"] = ensemble
    with _step(progress, "baselines (simple scikit-learn models)", timings, "baselines"):
        baseline, baseline_model = fit_baselines(data, settings.metric_names, spec.seed, refit=refit_tried)
    if refit_job is not None:
        waited = time.monotonic()
        try:
            exported = refit_job.result()
        except RuntimeError as error:  # it diverged: keep the search's model rather than lose the run
            refit_error = str(error)
            log.warning("the refit failed (%s); the best trial's own model is exported", error)
        else:
            models["refit"] = {"epochs": epochs, "rows": final_models.refit_rows(), "seconds": refit_job.seconds,
                               "trained_by": getattr(refit_job, "worker", "") or "driver",
                               "test": final_models.test_metrics(exported)}
        timings["refit"] = time.monotonic() - waited  # what it added: the phases still sum to the whole run
        if progress is not None and refit_error is None:
            progress(refit_name, refit_job.seconds)
    default = "ensemble" if ensemble is not None and ensemble["beats_single"] else ("refit" if "refit" in models
                                                                                   else "search")
    judge(baseline, settings.metric, val.get(settings.metric), (models[default].get("val") or val).get(settings.metric))
    with _step(progress, "export of the model", timings, "export"):
        model_info = export_model(exported, data, best.config, best.trial_id, settings.metric, run_dir / "model",
                                  data_source=spec.data.model_dump(mode="json"), ensemble=ensemble_net,
                                  default="ensemble" if default == "ensemble" else "single",
                                  single="refit" if "refit" in models else "search")
        save_baseline(baseline, baseline_model, data, run_dir / "model")
    predict_model = _predict_model(best, models, default, baseline)
    with _step(progress, "evaluation on the test split", timings, "evaluation"):
        if predict_model["name"] == "baseline":  # exactly what `automl predict` computes from the saved arrays
            facts = json.loads((run_dir / "model" / "model.json").read_text())
            predictions = baseline_predictions(run_dir / "model", facts, data.X_test)
        else:
            predictions = final_models.test_predictions(ensemble_net if default == "ensemble" else exported)
        evaluation = evaluation_document(data, predictions, {k: predict_model[k] for k in ("name", "label")},
                                         spec.seed)
    whole = whole_run(store, duration)
    final = {"best_trial_id": best.trial_id, "best_family": best.family, "val": val,
             "test": models[default]["test"], "models": models, "default_model": default,
             "predict_model": predict_model, "evaluation": evaluation,
             "model": model_info, "baseline": baseline, "finished_at": time.time(), "duration_s": whole,
             "timings": _timings(whole, timings),
             "stopped_because": stopped_because, **({"refit_error": refit_error} if refit_error else {}),
             **({"cut_for_time": cut} if cut else {}),
             **({"unreadable_checkpoints": passed_over} if passed_over else {}),
             "disk_bytes": directory_bytes(run_dir)}  # the run directory, model exported (report not yet written)
    store.set_meta("run", {**(store.get_meta("run") or {}), "disk_bytes": final["disk_bytes"]})  # the report's run facts
    store.set_meta("final", final)
    return final


def _start_refit(executor, trial_id: str, config: dict[str, Any], epochs: int, threads: int | None, trainer: Trainer,
                 run_dir: Path) -> WorkerRefit | Background:
    """The refit, started in an idle worker of the search where there is one, else on a thread here."""
    if executor is not None:
        try:
            return WorkerRefit(executor, trial_id, config, epochs, threads, run_dir / "checkpoints",
                               lambda path: load_best_model(trainer, config, path))
        except RuntimeError as error:  # no worker free, or the executor already shut down
            log.info("the refit trains in this process: %s", error)
    return Background(lambda: trainer.fit_full(trial_id, config, epochs), "automl-refit")


def _predict_model(best, models: dict[str, Any], default: str, baseline: dict[str, Any]) -> dict[str, Any]:
    """The model `automl predict` uses by default, named for people, with its test scores."""
    if baseline.get("used_by_predict"):
        entry = next(m for m in baseline["models"] if m.get("saved"))
        return {"name": "baseline", "label": f"the baseline {entry['title']}", "test": entry["test"]}
    labels = {"search": f"trial {best.trial_id} ({best.family}) as trained in the search",
              "refit": f"trial {best.trial_id} ({best.family}) refit on train+validation",
              "ensemble": f"the ensemble of {len((models.get('ensemble') or {}).get('members') or [])} trials"}
    return {"name": default, "label": labels[default], "test": models[default]["test"]}
