"""Drive TensorBoardObserver with fake trials and read the event files back with tensorboard's own
loaders and the HParams plugin's own request handlers: what they serve is what the dashboard shows."""
from __future__ import annotations

import math

import pytest
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

from automl.reporting.tensorboard import TensorBoardObserver
from automl.space import Choice, Condition, Float, Int, SearchSpace
from automl.store import TrialRecord

# the dashboard (tf-hparams-query-pane _computeHParams in tensorboard's webfiles.zip) ticks the first
# five hyperparameters of the order the backend serves, and the first five metrics
DASHBOARD_TICKS = 5

SPACE = SearchSpace((
    Choice("family", ("mlp", "cnn")),
    Choice("optimizer", ("adam", "sgd")),
    Float("lr", 1e-4, 1e-1, log=True),
    Float("momentum", 0.5, 0.99, condition=Condition("optimizer", ("sgd",))),
    Choice("batch_size", (32, 64)),
    Choice("lr_schedule", ("constant", "cosine")),
    Choice("grad_clip", (0.0,)),  # one value: tells no trials apart, so no default column
    Int("mlp.width", 16, 256, step=16, condition=Condition("family", ("mlp",))),
    Choice("cnn.batchnorm", (True, False), condition=Condition("family", ("cnn",))),
))
DEFAULT_COLUMNS = {"family", "optimizer", "log10_lr", "batch_size", "lr_schedule"}
SHARED = {"batch_size": 32, "lr_schedule": "constant", "grad_clip": 0.0}

# trial id -> (config, per-epoch val accuracies, status)
TRIALS = {
    "t0000": ({"family": "mlp", "optimizer": "adam", "lr": 0.01, "mlp.width": 64, **SHARED},
              [0.5, 0.7, 0.6], "COMPLETE"),
    "t0001": ({"family": "cnn", "optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "cnn.batchnorm": True, **SHARED},
              [0.55, 0.65], "PRUNED"),
    "t0002": ({"family": "mlp", "optimizer": "adam", "lr": 0.05, "mlp.width": 128, **SHARED}, [0.8, 0.9], "COMPLETE"),
    "t0003": ({"family": "cnn", "optimizer": "adam", "lr": 0.1, "cnn.batchnorm": False, **SHARED}, [], "FAILED"),
}


def _epoch_metrics(acc: float, epoch: int) -> dict[str, float]:
    # classification: log_loss is the validation cross-entropy, as val_loss
    return {"train_loss": 1.0 / epoch, "val_loss": 1.0 - acc, "accuracy": acc, "f1_macro": acc / 2,
            "log_loss": 1.0 - acc}


def _record(trial_id: str, seq: int, config, accs, status) -> TrialRecord:
    # like the trainer: the metrics of the best epoch, with best_epoch
    best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
    metrics = {**_epoch_metrics(accs[best], best + 1), "best_epoch": best + 1} if accs else {}
    return TrialRecord(trial_id, seq, config["family"], dict(config), None, None, status,
                       None if not accs else -accs[best], metrics, len(accs), None,
                       "boom" if status == "FAILED" else None, "w0", 0.0, 1.0, 2.0)


def _load(path) -> EventAccumulator:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def _points(acc: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


def _serve(logdir):
    """The runs, the experiment and the session groups as TensorBoard's backend serves them."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    tb = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, str(logdir)))
    context, request = backend_context.Context(tb), tb_context.RequestContext()
    experiment = get_experiment.Handler(request, context, "", api_pb2.GetExperimentRequest(hparams_limit=1000)).run()
    query = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_RUNNING])
    for info in experiment.hparam_infos:
        query.col_params.add(hparam=info.name)
    for info in experiment.metric_infos:
        query.col_params.add(metric=info.name)
    groups = list_session_groups.Handler(request, context, "", query).run().session_groups
    return set(mux.Runs()), experiment, {g.name: g for g in groups}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("tb")
    obs = TensorBoardObserver(log_dir, SPACE, "accuracy", "maximize", ["accuracy", "f1_macro", "log_loss"])
    obs.run_started({"families": ["mlp", "cnn"], "metric": "accuracy", "max_trials": 4})
    best = None
    for n, (trial_id, (config, accs, status)) in enumerate(TRIALS.items(), start=1):
        obs.trial_started(trial_id, config, None)
        for epoch, a in enumerate(accs, start=1):
            obs.epoch(trial_id, epoch, _epoch_metrics(a, epoch))
        record = _record(trial_id, n - 1, config, accs, status)
        if record.loss is not None and (best is None or record.loss < best.loss):
            best = record
        obs.trial_finished(record, best, n, elapsed=10.0 if n < 3 else 10.0 * n)  # two finish in one second
    obs.close()
    return log_dir


@pytest.fixture(scope="module")
def served(logdir):
    return _serve(logdir)


def test_runs_are_named_by_trial_and_family_and_none_at_the_root(served):
    runs, _, groups = served
    trials = {f"trials/{t}-{config['family']}" for t, (config, _, _) in TRIALS.items()}
    assert runs == {"study", *trials}  # no "." run: nothing is written at the log dir's root
    assert set(groups) == trials  # each trial is one HParams session, under its run name


def test_default_columns_are_those_every_trial_has(served):
    _, experiment, groups = served
    served_order = [h.name for h in experiment.hparam_infos]
    assert set(served_order[:DASHBOARD_TICKS]) == DEFAULT_COLUMNS
    infos = {h.name: h for h in experiment.hparam_infos}
    assert {name for name, h in infos.items() if h.differs} == DEFAULT_COLUMNS
    # the conditional and raw ones are declared, to tick by hand
    assert {"lr", "momentum", "grad_clip", "mlp.width", "cnn.batchnorm"} <= set(infos)
    # the parallel-coordinates view draws a line only for a trial with a value in every ticked column
    for name, group in groups.items():
        assert DEFAULT_COLUMNS <= set(group.hparams), name


def test_log_scaled_parameter_gets_a_log10_axis(served):
    _, experiment, groups = served
    info = {h.name: h for h in experiment.hparam_infos}["log10_lr"]
    assert (info.domain_interval.min_value, info.domain_interval.max_value) == pytest.approx((-4, -1))
    assert info.display_name == "log10(lr)"
    for trial_id, (config, _, _) in TRIALS.items():
        hparams = groups[f"trials/{trial_id}-{config['family']}"].hparams
        assert hparams["log10_lr"].number_value == pytest.approx(math.log10(config["lr"]))
        assert hparams["lr"].number_value == pytest.approx(config["lr"])


def test_experiment_declares_domains_and_types(served):
    infos = {h.name: h for h in served[1].hparam_infos}
    assert set(infos) == {*SPACE.names, "log10_lr"}
    assert [v.string_value for v in infos["family"].domain_discrete.values] == ["mlp", "cnn"]
    assert infos["cnn.batchnorm"].type == api_pb2.DATA_TYPE_BOOL
    assert [v.bool_value for v in infos["cnn.batchnorm"].domain_discrete.values] == [True, False]
    for name, low, high in (("lr", 1e-4, 1e-1), ("mlp.width", 16, 256)):
        assert infos[name].type == api_pb2.DATA_TYPE_FLOAT64
        assert (infos[name].domain_interval.min_value, infos[name].domain_interval.max_value) == (low, high)


def test_metrics_one_name_per_quantity_with_direction(served):
    _, experiment, groups = served
    metrics = [(m.name.tag, m.display_name) for m in experiment.metric_infos]
    assert metrics == [("hparams/accuracy", "accuracy (max, selection)"), ("hparams/f1_macro", "f1_macro (max)"),
                       ("hparams/val_loss", "val_loss = log_loss (min)"), ("hparams/epochs", "epochs")]
    # the values at the best epoch, not the last one
    values = {v.name.tag: v.value for v in groups["trials/t0000-mlp"].metric_values}
    assert values == pytest.approx({"hparams/accuracy": 0.7, "hparams/f1_macro": 0.35, "hparams/val_loss": 0.3,
                                    "hparams/epochs": 3})
    assert not groups["trials/t0003-cnn"].metric_values  # a failed trial has no metrics to rank


def test_sessions_hold_their_hparams_and_status(served):
    expected = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_SUCCESS,
                "FAILED": api_pb2.STATUS_FAILURE}
    groups = served[2]
    for trial_id, (config, _, status) in TRIALS.items():
        group = groups[f"trials/{trial_id}-{config['family']}"]
        got = {name: getattr(v, v.WhichOneof("kind")) for name, v in group.hparams.items()}
        assert got == pytest.approx({**config, "log10_lr": math.log10(config["lr"])}), trial_id
        assert type(got.get("cnn.batchnorm", False)) is bool  # bools stay bools
        assert group.sessions[0].status == expected[status]


def test_trial_scalars_are_curves_without_duplicates(logdir):
    acc = _load(logdir / "trials" / "t0000-mlp")
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "metric/accuracy", "metric/f1_macro"} <= tags
    assert "metric/log_loss" not in tags and "hparams/log_loss" not in tags  # it is loss/val
    steps, values = _points(acc, "metric/accuracy")
    assert steps == [1, 2, 3] and values == pytest.approx([0.5, 0.7, 0.6])
    # hparams/*: the best epoch so far at each epoch, a line rather than one point
    steps, values = _points(acc, "hparams/accuracy")
    assert steps == [1, 2, 3] and values == pytest.approx([0.5, 0.7, 0.7])
    assert _points(acc, "hparams/val_loss")[1] == pytest.approx([0.5, 0.3, 0.3])


def test_best_so_far_lines(logdir):
    study = _load(logdir / "study")
    steps, values = _points(study, "best_so_far/accuracy")
    assert steps == [1, 2, 3, 4] and values == pytest.approx([0.7, 0.7, 0.9, 0.9])  # maximized: never goes down
    # x in seconds, one point per finished trial: two finishing in the same second still make two points
    assert [e.step for e in study.Scalars("best_so_far_by_time/accuracy")] == [10, 11, 30, 40]


def test_resumed_and_promoted_trials_keep_their_run(tmp_path):
    config = TRIALS["t0000"][0]
    first = TensorBoardObserver(tmp_path, SPACE, "accuracy", "maximize", ["accuracy"])
    first.trial_started("t0000", config, 2)
    first.epoch("t0000", 1, _epoch_metrics(0.5, 1))
    first.close()  # interrupted; the run resumes with a fresh observer
    again = TensorBoardObserver(tmp_path, SPACE, "accuracy", "maximize", ["accuracy"])
    again.trial_started("t0000", config, 2)
    again.epoch("t0000", 2, _epoch_metrics(0.7, 2))
    again.trial_finished(_record("t0000", 0, config, [0.5, 0.7], "PRUNED"), None, 1, 5.0)
    again.trial_started("t0000", config, 4)  # promoted to a larger budget
    again.epoch("t0000", 3, _epoch_metrics(0.6, 3))
    again.trial_finished(_record("t0000", 0, config, [0.5, 0.7, 0.6], "COMPLETE"), None, 1, 9.0)
    again.close()
    assert [p.name for p in (tmp_path / "trials").iterdir()] == ["t0000-mlp"]
    acc = _load(tmp_path / "trials" / "t0000-mlp")
    # sorted: both event files carry the same second in their names when the test is fast, and
    # TensorBoard's reader then may take the resumed one first
    assert sorted(e.step for e in acc.Scalars("metric/accuracy")) == [1, 2, 3]
    steps, values = _points(acc, "hparams/accuracy")
    assert steps == [2, 3] and values == pytest.approx([0.7, 0.7])
