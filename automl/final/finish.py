"""The end of a run: choose the best trial, score its model on test, refit it, build the
ensemble, export, and store the `final` meta document the report and the CLI read."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping

from automl.data.base import PreparedData
from automl.errors import BudgetExhausted
from automl.families.base import Family
from automl.final.baseline import fit_baselines, judge, save_baseline
from automl.final.export import export_model
from automl.final.models import FinalModels, NoExportableModel
from automl.spec import TaskSpec
from automl.store import TrialStore, best_trial
from automl.training.trainer import Trainer, TrainSettings

log = logging.getLogger(__name__)

Progress = Callable[[str, "float | None"], None]  # (step, None) as it starts, (step, seconds) when done


@contextmanager
def _step(progress: Progress | None, name: str):
    """Tell `progress` that a step started and, unless it raised, how long it took: the refit and
    the ensemble run in the driver and can take many minutes."""
    if progress is not None:
        progress(name, None)
    start = time.monotonic()
    yield
    if progress is not None:
        progress(name, time.monotonic() - start)


def no_model_document(stopped_because: str, duration: float) -> dict[str, Any]:
    """The `final` document of a run that ends without a model."""
    return {"best_trial_id": None, "stopped_because": stopped_because, "finished_at": time.time(),
            "duration_s": duration}


def finish_search(spec: TaskSpec, data: PreparedData, families: Mapping[str, Family], store: TrialStore,
                  run_dir: Path, settings: TrainSettings, *, stopped_because: str,
                  duration: float, progress: Progress | None = None) -> dict[str, Any]:
    """Store and return the `final` document, with the model exported under run_dir/model.

    Raises `BudgetExhausted` when no trial finished with a usable score, and `NoExportableModel`
    when no scored trial's checkpoint can be read (each with its `final` document stored first); a
    damaged best checkpoint passes to the next best trial's."""
    trials = store.trials()
    best = best_trial(trials)
    if best is None:
        store.set_meta("final", no_model_document(stopped_because, duration))
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
        store.set_meta("final", {**no_model_document(stopped_because, duration), "error": str(error)})
        raise
    val = {k: v for k, v in best.metrics.items() if k in settings.metric_names}  # CV: the mean over folds
    models = {"search": {"trial_id": best.trial_id, "val": val, "test": final_models.test_metrics(model)}}
    exported, refit_error = model, None
    if final_models.refit_wanted():
        epochs = max(1, int(best.metrics.get("best_epoch") or best.epochs or 1))
        try:
            with _step(progress, f"refit of trial {best.trial_id} on {final_models.refit_rows()} rows, "
                                 f"{epochs} epoch{'s' if epochs != 1 else ''}"):
                exported = trainer.fit_full(best.trial_id, final_models.trained_config(best, saved), epochs)
        except RuntimeError as error:  # it diverged: keep the search's model rather than lose the run
            refit_error = str(error)
            log.warning("the refit failed (%s); the best trial's own model is exported", error)
        else:
            models["refit"] = {"epochs": epochs, "rows": final_models.refit_rows(),
                               "test": final_models.test_metrics(exported)}
    with _step(progress, "ensemble of the best trials"):
        ensemble_net, ensemble = final_models.ensemble(trials)
    if ensemble is not None:
        models["ensemble"] = ensemble
    default = "ensemble" if ensemble is not None and ensemble["beats_single"] else ("refit" if "refit" in models
                                                                                   else "search")
    with _step(progress, "baselines (simple scikit-learn models)"):
        baseline, baseline_model = fit_baselines(data, settings.metric_names, spec.seed, refit=final_models.refit_wanted())
    judge(baseline, settings.metric, val.get(settings.metric), (models[default].get("val") or val).get(settings.metric))
    model_info = export_model(exported, data, best.config, best.trial_id, settings.metric, run_dir / "model",
                              data_source=spec.data.model_dump(mode="json"), ensemble=ensemble_net,
                              default="ensemble" if default == "ensemble" else "single",
                              single="refit" if "refit" in models else "search")
    save_baseline(baseline, baseline_model, data, run_dir / "model")
    final = {"best_trial_id": best.trial_id, "best_family": best.family, "val": val,
             "test": models[default]["test"], "models": models, "default_model": default,
             "model": model_info, "baseline": baseline, "finished_at": time.time(), "duration_s": duration,
             "stopped_because": stopped_because, **({"refit_error": refit_error} if refit_error else {}),
             **({"unreadable_checkpoints": passed_over} if passed_over else {})}
    store.set_meta("final", final)
    return final
