"""`automl run` starts its worker processes before it imports torch where the device is certain
without torch; the agent runs its trials on them, or closes them when its plan differs."""
from __future__ import annotations

from automl.agent import Agent
import json

import pytest

from automl.execution.prestart import RAW_DEFAULTS, early_workers_for_file, planned_slots
from automl.execution.processes import ProcessExecutor
from automl.execution.slots import certain_device, plan_slots
from automl.spec import load_spec
from automl.store import TrialStore
from tests.conftest import write_spec
from tests.execution.test_process_faults import alive, wait_until

PROCESSES = {"device": "cpu", "workers": 1, "isolation": "processes"}


def test_the_device_is_certain_without_torch_only_where_no_gpu_can_be_there(tmp_path):
    driver = tmp_path / "nvidia0"
    assert certain_device("cpu", gpu_files=(str(driver),)) == "cpu"
    assert certain_device("auto", platform="linux", gpu_files=(str(driver),)) == "cpu"
    driver.touch()  # a GPU driver: only torch knows whether its build can use it
    assert certain_device("auto", platform="linux", gpu_files=(str(driver),)) is None
    assert certain_device("auto", platform="darwin", gpu_files=()) is None  # MPS
    assert certain_device("cuda", platform="linux", gpu_files=()) is None


def workers_of(run_dir) -> set[str]:
    store = TrialStore(run_dir / TrialStore.FILENAME)
    try:
        return {trial.worker for trial in store.trials()}
    finally:
        store.close()


def test_the_run_trains_on_the_workers_started_before_it(tmp_path):
    path = write_spec(tmp_path, execution=PROCESSES, budget={"max_trials": 2, "max_epochs": 2})
    spec = load_spec(path)
    early = early_workers_for_file(path, {})
    assert early is not None
    pid = early.pids()[0]
    Agent(spec, prestarted=early).run()
    assert workers_of(tmp_path / "run") == {f"process-0:{pid}"}


def test_workers_started_for_other_slots_are_closed_and_the_run_starts_its_own(tmp_path):
    spec = load_spec(write_spec(tmp_path, execution=PROCESSES, budget={"max_trials": 2, "max_epochs": 2}))
    early = ProcessExecutor.prestart(plan_slots("cpu", 2, cpu_count=2), preload=())  # two slots, not one
    pids = early.pids()
    Agent(spec, prestarted=early).run()
    assert wait_until(lambda: not any(alive(pid) for pid in pids), timeout=60), "the unused workers live on"
    used = workers_of(tmp_path / "run")
    assert len(used) == 1 and not any(used_by.endswith(f":{pid}") for used_by in used for pid in pids)


def test_a_worker_gets_no_test_rows_and_no_preprocessor(tmp_path):
    """What travels to every worker: the training and validation rows only. Test rows stay with the
    driver (no trial can see them), and the preprocessor (pandas to unpickle) is the export's."""
    import pickle

    from automl.agent import make_plan
    from automl.training.runner import worker_data

    spec = load_spec(write_spec(tmp_path, execution=PROCESSES))
    data = make_plan(spec).data
    sent = pickle.loads(pickle.dumps(worker_data(data)))
    assert len(data.X_test) > 0 and data.preprocessor is not None  # what the driver keeps
    assert (len(sent.X_test), len(sent.y_test)) == (0, 0)
    assert sent.X_test.shape[1:] == data.X_test.shape[1:] and sent.preprocessor is None
    assert (sent.X_train == data.X_train).all() and (sent.y_val == data.y_val).all()


def test_the_spec_file_as_written_defaults_to_what_the_validated_spec_does():
    from automl.spec import ExecutionSpec

    assert {key: ExecutionSpec.model_fields[key].default for key in RAW_DEFAULTS} == RAW_DEFAULTS


@pytest.mark.parametrize("execution, overrides", [
    (PROCESSES, {}),
    ({"device": "cpu", "workers": 2}, {}),
    ({"isolation": "processes", "device": "auto"}, {"execution.workers": 2}),  # the command line's --workers
    (None, {"execution.device": "cpu"}),
])
def test_workers_started_from_the_spec_file_have_the_slots_the_validated_spec_plans(tmp_path, execution, overrides):
    """Started before the spec is validated, from the file as written: the agent keeps them only
    when their slots are the ones it plans, so they must agree for every spec that runs."""
    raw = json.loads(write_spec(tmp_path).read_text())
    raw.pop("execution")
    if execution is not None:
        raw["execution"] = execution
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    early = early_workers_for_file(path, overrides)
    try:
        spec = load_spec(path)
        validated = spec.execution.model_copy(update={k.split(".")[1]: v for k, v in overrides.items()})
        assert early is not None and early.slots == planned_slots(validated, "cpu")
    finally:
        if early is not None:
            early.close()


@pytest.mark.parametrize("text", [
    "not json", "[]", "[" * 100_000, json.dumps({"execution": {"isolation": "threads"}}), json.dumps({"execution": {"workers": 0}}),
    json.dumps({"execution": {"workers": "2"}}), json.dumps({"execution": {"backend": "ray"}}),
    json.dumps({"execution": {"device": "cuda"}}),  # only torch can tell
])
def test_no_workers_start_before_validation_where_the_file_does_not_say_plainly(tmp_path, text):
    path = tmp_path / "spec.json"
    path.write_text(text)
    assert early_workers_for_file(path, {}) is None
    assert early_workers_for_file(tmp_path / "missing.json", {}) is None
