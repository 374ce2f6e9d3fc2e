"""Checkpoint retention (`execution.keep_checkpoints`): a run keeps what resume, promotions and the
final models need, finished checkpoints without their training state, and reports its disk use."""
from __future__ import annotations

import json

import pytest

from automl.agent import Agent
from automl.errors import SpecError
from automl.retention import Retention
from automl.spec import load_spec
from automl.store import TrialStore, ranked_trials
from automl.training.checkpoints import load_checkpoint
from tests.conftest import write_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(tmp_path, **overrides):
    summary = Agent(load_spec(write_spec(tmp_path, **overrides))).run()
    store = TrialStore(tmp_path / "run" / TrialStore.FILENAME)
    try:
        return summary, store.trials(), {p.stem for p in (tmp_path / "run" / "checkpoints").glob("*.pt")}
    finally:
        store.close()


def random_run(tmp_path, keep: str):
    return run(tmp_path, budget={"max_trials": 6, "max_epochs": 2, "patience": None},
               ensemble={"candidates": 2}, execution={"isolation": "threads", "keep_checkpoints": keep})


def test_best_keeps_the_two_candidates_without_training_state_and_reports_the_disk(tmp_path):
    summary, trials, kept = random_run(tmp_path, "best")
    assert len(trials) == 6 and all(t.finished for t in trials)
    assert kept == {t.trial_id for t in ranked_trials(trials)[:2]}
    for trial_id in kept:
        saved = load_checkpoint(tmp_path / "run" / "checkpoints" / f"{trial_id}.pt")
        assert saved.members == () and saved.best is not None  # no optimizer state; the best epoch is there
    ensemble = summary["models"].get("ensemble")  # built from the kept checkpoints, when it beats one model
    assert ensemble is None or {m["trial_id"] for m in ensemble["members"]} <= kept
    assert summary["disk_bytes"] > 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["run"]["disk_bytes"] == summary["disk_bytes"]
    assert "Disk used" in (tmp_path / "run" / "report.md").read_text()


def test_all_keeps_every_checkpoint_whole(tmp_path):
    _, trials, kept = random_run(tmp_path, "all")
    assert kept == {t.trial_id for t in trials} and len(kept) == 6
    assert all(load_checkpoint(tmp_path / "run" / "checkpoints" / f"{t}.pt").members for t in kept)


def test_asha_promotions_resume_from_checkpoints_kept_for_them(tmp_path):
    summary, trials, kept = run(
        tmp_path, budget={"max_trials": 3, "max_epochs": 4, "patience": None}, ensemble={"candidates": 2},
        strategy={"name": "asha", "options": {"min_budget": 1, "reduction_factor": 2, "sampler": "random"}})
    promoted = [t for t in trials if t.resume_from]
    assert promoted, "the run promoted no trial: the test proves nothing"
    for trial in promoted:
        store = TrialStore(tmp_path / "run" / TrialStore.FILENAME)
        try:
            history = store.history(trial.trial_id)
        finally:
            store.close()
        parent = next(t for t in trials if t.trial_id == trial.resume_from)
        # resumed from the parent's checkpoint (written before retention ran on the parent's outcome)
        assert history[0]["epoch"] == parent.epochs + 1, (trial.trial_id, history)
    best = {t.trial_id for t in ranked_trials(trials)[:2]}
    open_to_promotion = Retention(tmp_path, 2, 4.0).needed_whole(trials)
    assert kept == best | open_to_promotion
    assert len(kept) < len(trials)  # trials neither best nor promotable are gone
    for trial_id in open_to_promotion:  # a later promotion (a resumed run) still finds the optimizer state
        assert load_checkpoint(tmp_path / "run" / "checkpoints" / f"{trial_id}.pt").members


def test_unfinished_trials_and_sources_in_flight_are_never_touched(tmp_path):
    store = TrialStore(tmp_path / TrialStore.FILENAME)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for trial_id in ("a", "b", "c", "d"):
        (folder / f"{trial_id}.pt").write_bytes(b"not read")
    store.add_trial("a", {}, budget=1.0)  # a lower rung, continued by "b" still running
    store.add_trial("b", {}, budget=4.0, resume_from="a")
    store.add_trial("c", {}, budget=4.0)  # running
    store.add_trial("d", {}, budget=4.0)  # finished, not among the best 0: deleted
    for trial_id, loss in (("a", 0.1), ("d", 0.2)):
        store.start_trial(trial_id)
        store.finish_trial(trial_id, "COMPLETE", loss=loss, epochs=1)
    store.start_trial("b")
    store.start_trial("c")
    Retention(folder, 0, 4.0)(store.trials())
    store.close()
    assert {p.stem for p in folder.glob("*.pt")} == {"a", "b", "c"}


def test_keep_checkpoints_is_validated(tmp_path):
    with pytest.raises(SpecError) as error:
        load_spec(write_spec(tmp_path, execution={"keep_checkpoints": "some"}))
    assert "execution.keep_checkpoints" in str(error.value) and "'best' or 'all'" in str(error.value)
