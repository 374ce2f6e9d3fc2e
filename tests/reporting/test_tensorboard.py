"""Drive TensorBoardObserver with fake trials and read the event files back with
tensorboard's own loader and hparams parsers."""
from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from automl.reporting.tensorboard import TensorBoardObserver
from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.store import TrialRecord

SPACE = SearchSpace((
    Choice("family", ("mlp", "cnn")),
    Float("lr", 1e-4, 1e-1, log=True),
    Int("epochs", 1, 10),
    Int("mlp.width", 16, 256, step=16, condition=Condition("family", ("mlp",))),
    Choice("cnn.batchnorm", (True, False), condition=Condition("family", ("cnn",))),
))

# trial id -> (config, per-epoch val accuracies, status)
TRIALS = {
    "t0000": ({"family": "mlp", "lr": 0.01, "epochs": 3, "mlp.width": 64}, [0.5, 0.6, 0.7], "COMPLETE"),
    "t0001": ({"family": "cnn", "lr": 0.001, "epochs": 2, "cnn.batchnorm": True}, [0.55, 0.65], "PRUNED"),
    "t0002": ({"family": "mlp", "lr": 0.05, "epochs": 2, "mlp.width": 128}, [0.8, 0.9], "COMPLETE"),
    "t0003": ({"family": "cnn", "lr": 0.1, "epochs": 1, "cnn.batchnorm": False}, [], "FAILED"),
}


def _epoch_metrics(acc: float, epoch: int) -> dict[str, float]:
    return {"train_loss": 1.0 / epoch, "val_loss": 1.0 - acc, "accuracy": acc, "f1": acc / 2}


def _record(trial_id: str, seq: int, config, accs, status) -> TrialRecord:
    metrics = _epoch_metrics(accs[-1], len(accs)) if accs else {}
    metrics.pop("train_loss", None)
    metrics.pop("val_loss", None)  # like the agent: val_loss only in the epoch dicts
    return TrialRecord(trial_id, seq, config["family"], dict(config), None, None, status,
                       None if not accs else -accs[-1], metrics, len(accs), None,
                       "boom" if status == "FAILED" else None, "w0", 0.0, 1.0, 2.0)


def _load(path) -> EventAccumulator:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb")
    obs = TensorBoardObserver(log_dir, SPACE, "accuracy", "maximize", ["accuracy", "f1"])
    obs.run_started({"families": ["mlp", "cnn"], "metric": "accuracy", "max_trials": 4})
    best = None
    for n, (trial_id, (config, accs, status)) in enumerate(TRIALS.items(), start=1):
        obs.trial_started(trial_id, config, None)
        for epoch, a in enumerate(accs, start=1):
            obs.epoch(trial_id, epoch, _epoch_metrics(a, epoch))
        record = _record(trial_id, n - 1, config, accs, status)
        if record.loss is not None and (best is None or record.loss < best.loss):
            best = record
        obs.trial_finished(record, best, n, elapsed=10.0 * n)
    obs.close()
    return log_dir


def test_per_trial_scalars(logdir):
    acc = _load(logdir / "trials" / "t0000")
    assert {"loss/train", "loss/val", "metric/accuracy", "metric/f1"} <= set(acc.Tags()["scalars"])
    points = [(e.step, e.value) for e in acc.Scalars("metric/accuracy")]
    assert points == [(1, pytest.approx(0.5)), (2, pytest.approx(0.6)), (3, pytest.approx(0.7))]
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3]
    assert acc.Scalars("loss/val")[-1].value == pytest.approx(0.3)
    # the final values under the experiment's metric tags
    assert acc.Scalars("hparams/accuracy")[-1].value == pytest.approx(0.7)
    assert acc.Scalars("hparams/val_loss")[-1].value == pytest.approx(0.3)


def test_experiment_declares_every_hparam_with_its_domain(logdir):
    root = _load(logdir)
    content = root.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(content)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == set(SPACE.names)

    assert infos["family"].HasField("domain_discrete")
    assert [v.string_value for v in infos["family"].domain_discrete.values] == ["mlp", "cnn"]
    assert infos["family"].type == api_pb2.DATA_TYPE_STRING
    assert infos["cnn.batchnorm"].type == api_pb2.DATA_TYPE_BOOL
    assert [v.bool_value for v in infos["cnn.batchnorm"].domain_discrete.values] == [True, False]
    for name, low, high in (("lr", 1e-4, 1e-1), ("epochs", 1, 10), ("mlp.width", 16, 256)):
        assert infos[name].HasField("domain_interval"), name
        assert infos[name].type == api_pb2.DATA_TYPE_FLOAT64
        assert infos[name].domain_interval.min_value == pytest.approx(low)
        assert infos[name].domain_interval.max_value == pytest.approx(high)

    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags == ["hparams/accuracy", "hparams/f1", "hparams/val_loss"]


def test_each_trial_session_holds_its_hparams_and_status(logdir):
    expected_status = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_SUCCESS,
                       "FAILED": api_pb2.STATUS_FAILURE}
    for trial_id, (config, _, status) in TRIALS.items():
        content = _load(logdir / "trials" / trial_id).PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
        assert set(start.hparams) == set(config)  # only the active params
        got = {name: getattr(v, v.WhichOneof("kind")) for name, v in start.hparams.items()}
        assert got == pytest.approx(config), trial_id  # numbers come back as floats
        assert type(got.get("cnn.batchnorm", False)) is bool  # and bools stay bools
        end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
        assert end.status == expected_status[status]


def test_failed_trial_has_no_final_metrics(logdir):
    scalars = _load(logdir / "trials" / "t0003").Tags()["scalars"]
    assert not any(tag.startswith("hparams/") for tag in scalars)


def test_best_so_far_is_monotone_and_equals_best_seen(logdir):
    study = _load(logdir / "study")
    by_count = [(e.step, e.value) for e in study.Scalars("best_so_far/accuracy")]
    assert [s for s, _ in by_count] == [1, 2, 3, 4]
    values = [v for _, v in by_count]
    assert values == sorted(values)  # accuracy is maximized: never goes down
    assert values == pytest.approx([0.7, 0.7, 0.9, 0.9])
    by_time = study.Scalars("best_so_far_by_time/accuracy")
    assert [e.step for e in by_time] == [10, 20, 30, 40]
    assert by_time[-1].value == pytest.approx(max(a for _, accs, _ in TRIALS.values() for a in accs))
