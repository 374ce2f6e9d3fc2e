"""The models made after the search: the best trial's, its refit, and the greedy ensemble.

Every one is scored on the test split here, once, after the search; the test split never
steers a choice. Which model `automl predict` uses is decided on validation scores only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from automl.data.base import PreparedData
from automl.errors import AutoMLError, CheckpointError
from automl.final.ensemble import blend, greedy_ensemble
from automl.final.time_plan import refit_rows, refit_wanted
from automl.spec import TaskSpec
from automl.store import TrialRecord, ranked_trials
from automl.training.checkpoints import Checkpoint, load_checkpoint
from automl.training.metrics import classification_metrics, regression_metrics, to_loss
from automl.training.trained_models import WeightedAverage, best_model, load_best_model
from automl.training.trainer import Trainer, TrainSettings

log = logging.getLogger(__name__)


class NoExportableModel(AutoMLError):
    """No scored trial's checkpoint can be read: the trials stand, but no model comes out of them."""


class FinalModels:
    def __init__(self, spec: TaskSpec, data: PreparedData, settings: TrainSettings, trainer: Trainer,
                 checkpoint_dir: Path):
        self.spec, self.data, self.settings, self.trainer = spec, data, settings, trainer
        self.checkpoints = checkpoint_dir
        self.X_test = torch.as_tensor(data.X_test, device=trainer.device)
        # test predictions by model: scored once, reused by the evaluation of the model predict uses
        self._test_predictions: dict[int, tuple[nn.Module, np.ndarray]] = {}

    def checkpoint_path(self, trial: TrialRecord) -> Path:
        return self.checkpoints / f"{trial.trial_id}.pt"

    def best_checkpoint(self, trial: TrialRecord) -> Checkpoint:
        """A scored trial's checkpoint, with its best epoch; a `CheckpointError` naming the file when it has none."""
        path = self.checkpoint_path(trial)
        try:
            saved = load_checkpoint(path, map_location=self.trainer.device)
        except CheckpointError as error:
            raise CheckpointError(path, f"{error.problem} (the checkpoint of trial {trial.trial_id})") from None
        if saved.best is None:
            raise CheckpointError(path, f"holds no finished epoch of trial {trial.trial_id}")
        return saved

    def readable_best(self, trials: Sequence[TrialRecord]) -> tuple[TrialRecord, Checkpoint, nn.Module, list[str]]:
        """The best trial whose checkpoint yields its model: (trial, checkpoint, model, the better trials passed
        over). A damaged checkpoint (a full disk, a crafted file) costs that trial its place, not the run's model."""
        passed_over, problems = [], []
        ranked = ranked_trials(trials)
        for trial in ranked:
            try:
                saved = self.best_checkpoint(trial)
                return trial, saved, self.trained(trial, saved), passed_over
            except torch.cuda.OutOfMemoryError:
                raise
            except (CheckpointError, RuntimeError, ValueError) as error:  # RuntimeError: weights that do not fit
                problem = error if isinstance(error, CheckpointError) else f"{self.checkpoint_path(trial)}: {error}"
                problem = str(problem)
                passed_over.append(trial.trial_id)
                problems.append(problem)
                if len(problems) < len(ranked):  # the last one is told in the error below
                    log.warning("%s; the next best trial's model is tried instead", problem)
        example = f", e.g. {problems[0]}" if problems else ""
        raise NoExportableModel(f"no model can be exported: the checkpoint of every scored trial ({len(problems)}) is "
                                f"unreadable{example}. The trials are kept in the run's trials.db; restore "
                                f"{self.checkpoints} from a backup, or run again with a larger --max-trials to train "
                                "new ones (or --overwrite to start afresh)")

    @staticmethod
    def trained_config(trial: TrialRecord, saved: Checkpoint) -> dict[str, Any]:
        """The config the trial ran with, retry overrides included (e.g. a halved batch after out of memory)."""
        return dict(saved.config or trial.config)

    def trained(self, trial: TrialRecord, saved: Checkpoint | None = None) -> nn.Module:
        if saved is not None:
            return best_model(self.trainer, trial.config, saved)
        return load_best_model(self.trainer, trial.config, self.checkpoint_path(trial))

    def metrics(self, y: np.ndarray, predictions: np.ndarray, names: Sequence[str] | None = None) -> dict[str, float]:
        names = self.settings.metric_names if names is None else names
        if self.trainer.classification:
            return classification_metrics(names, y, predictions)
        return regression_metrics(names, y, predictions)

    def test_predictions(self, model: nn.Module) -> np.ndarray:
        key = id(model)
        if key not in self._test_predictions:  # the module is kept with them, so its id is not reused
            self._test_predictions[key] = (model, self.trainer.predict(model, self.X_test))
        return self._test_predictions[key][1]

    def test_metrics(self, model: nn.Module) -> dict[str, float]:
        return self.metrics(self.data.y_test, self.test_predictions(model))

    # -- refit on train + validation
    def refit_rows(self) -> int:
        return refit_rows(self.data)

    def refit_wanted(self) -> bool:
        return refit_wanted(self.spec.refit, self.refit_rows())

    # -- greedy ensemble
    def _score(self, y: np.ndarray):
        """(selection loss, smooth tie-break loss) of validation predictions."""
        metric, direction = self.settings.metric, self.settings.direction

        def score(predictions: np.ndarray) -> tuple[float, float]:  # rounds x candidates calls: one metric
            value = self.metrics(y, predictions, [metric])[metric]
            if self.trainer.classification:
                rows = predictions[np.arange(len(y)), y]
                smooth = float(-np.mean(np.log(np.clip(rows, 1e-15, 1))))
            else:
                smooth = float(np.mean((predictions - y) ** 2))
            return to_loss(value, direction), smooth
        return score

    def _candidates(self, trials: Sequence[TrialRecord], n_rows: int) -> list[tuple[TrialRecord, np.ndarray]]:
        """The best trials whose checkpoint kept their validation predictions."""
        found = []
        for trial in ranked_trials(trials):
            if len(found) == self.spec.ensemble.candidates:
                break
            predictions = self._validation_predictions(self.checkpoint_path(trial))
            if predictions is not None and len(predictions) == n_rows:
                found.append((trial, predictions))
        return found

    @staticmethod
    def _validation_predictions(path: Path) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            saved = load_checkpoint(path, map_location="cpu")
        except CheckpointError as error:  # the ensemble is optional: go on without this candidate
            log.warning("ensemble: a candidate is left out: %s", error)
            return None
        return None if saved.best is None else saved.best.predictions()

    def ensemble(self, trials: Sequence[TrialRecord]):
        """(the ensemble as one module, its facts) or (None, None) when it would be the single best model."""
        settings = self.spec.ensemble
        y = self.trainer.validation_targets()
        candidates = self._candidates(trials, len(y)) if settings.enabled else []
        if len(candidates) < 2:
            return None, None
        score = self._score(y)
        chosen = greedy_ensemble([p for _, p in candidates], score, settings.rounds)
        if len(chosen.members) < 2:
            log.info("ensemble selection kept only the best model; no ensemble exported")
            return None, None
        members = [candidates[i][0] for i in chosen.members]
        weights = [float(chosen.weights[i]) for i in chosen.members]
        val = self.metrics(y, blend([candidates[i][1] for i in chosen.members], weights))
        net = WeightedAverage([self.trained(t) for t in members], self.trainer.classification, weights).eval()
        single = score(candidates[0][1])  # the best trial, scored the same way as the ensemble
        info: dict[str, Any] = {
            "members": [{"trial_id": t.trial_id, "family": t.family, "weight": w} for t, w in zip(members, weights)],
            "val": val, "test": self.test_metrics(net), "rounds": settings.rounds,
            # strictly better on validation, else the simpler single model is kept as the default
            "beats_single": bool(chosen.score < single),
        }
        return net, info
