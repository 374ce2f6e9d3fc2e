"""Greedy ensemble selection (Caruana et al. 2004, "Ensemble Selection from Libraries of Models").

Start from nothing; in each round add the candidate, with replacement, whose inclusion
makes the averaged validation predictions score best; keep the best round's ensemble.
Drawing with replacement turns the counts into weights, and keeping the best prefix
stops the ensemble from overfitting the validation split once it stops improving
(both refinements from section 2.1 of the paper; auto-sklearn does the same).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

# (selection loss, tie-break loss): lower is better. The tie-break is a smooth loss
# (log loss, squared error) so that a flat metric such as accuracy still moves the search.
ScoreFn = Callable[[np.ndarray], tuple[float, float]]


@dataclass(frozen=True)
class Ensemble:
    weights: np.ndarray  # one per candidate, summing to 1; zero for candidates not drawn
    score: tuple[float, float]  # the score of the weighted validation predictions
    history: tuple[tuple[float, float], ...]  # the score after each round

    @property
    def members(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.weights > 0)]


def greedy_ensemble(predictions: Sequence[np.ndarray], score: ScoreFn, rounds: int) -> Ensemble:
    """`predictions[i]`: candidate i's validation predictions (probabilities (n, K) or values (n,)),
    best candidate first, so ties go to the better-ranked one."""
    if not predictions:
        raise ValueError("ensemble selection needs at least one candidate")
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in predictions])
    counts = np.zeros(len(stacked), dtype=np.int64)
    total = np.zeros_like(stacked[0])
    best_counts, best_score = counts.copy(), (math.inf, math.inf)
    history = []
    for size in range(1, rounds + 1):
        trial_scores = [_finite(score((total + candidate) / size)) for candidate in stacked]
        pick = min(range(len(stacked)), key=lambda i: trial_scores[i])
        counts[pick] += 1
        total += stacked[pick]
        history.append(trial_scores[pick])
        if trial_scores[pick] < best_score:
            best_counts, best_score = counts.copy(), trial_scores[pick]
    return Ensemble(best_counts / best_counts.sum(), best_score, tuple(history))


def _finite(value: tuple[float, float]) -> tuple[float, float]:
    return tuple(v if math.isfinite(v) else math.inf for v in value)


def blend(predictions: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The weighted average of the members' predictions."""
    return sum(w * np.asarray(p, dtype=np.float64) for p, w in zip(predictions, weights) if w > 0)
