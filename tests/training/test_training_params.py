"""The optimisation hyperparameters offered to the search (`planning.training_params`)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from automl.planning import LBFGS_MAX_TRAIN, training_params
from automl.space import Condition, SearchSpace
from automl.training.trainer import TRAINING_PARAMS
from tests.training.test_trainer import tabular_profile


def space_for(n_train: int) -> SearchSpace:
    profile = tabular_profile("classification", 10, n_classes=3)
    return SearchSpace(tuple(training_params(replace(profile, n_train=n_train))))


def test_the_space_holds_every_training_parameter_by_name():
    assert tuple(space_for(1000).names) == TRAINING_PARAMS


def test_lbfgs_is_offered_only_for_small_tables():
    assert "lbfgs" in space_for(LBFGS_MAX_TRAIN)["optimizer"].choices
    assert space_for(LBFGS_MAX_TRAIN + 1)["optimizer"].choices == ("adam", "adamw", "sgd")
    images = replace(tabular_profile("classification", 10, n_classes=3), modality="image", n_train=500)
    assert SearchSpace(tuple(training_params(images)))["optimizer"].choices == ("adam", "adamw", "sgd")


def test_conditions_follow_the_optimizer():
    space = space_for(1000)
    assert space["momentum"].condition == space["nesterov"].condition == Condition("optimizer", ("sgd",))
    assert space["nesterov"].choices == (False, True)
    assert space["grad_clip"].choices == (0.0, 1.0, 5.0)
    assert space["lr_schedule"].choices == ("constant", "cosine", "one_cycle")
    rng = np.random.default_rng(0)
    for _ in range(100):
        config = space.sample(rng)
        assert space.problems(config) == []
        first_order = config["optimizer"] != "lbfgs"
        assert ("grad_clip" in config) == ("weight_decay" in config) == first_order
        assert ("nesterov" in config) == (config["optimizer"] == "sgd")
        assert "batch_size" in config and "lr" in config  # always there: specs and retries override them
