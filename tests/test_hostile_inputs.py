"""Damaged or crafted files in a run directory are named and contained: a damaged trials.db is
refused before anything trains, a bad checkpoint costs its trial its progress or its place (never
the run), and nothing of the run directory is ever unpickled."""
from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
import sqlite3
import zipfile

import pytest
import torch
from click.testing import CliRunner

from automl.cli import main
from automl.errors import CheckpointError
from automl.store import TrialStore
from automl.training.checkpoints import load_checkpoint
from tests.conftest import write_spec

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")]  # torch, on a crafted file


class Tripwire:
    """Unpickling one creates `marker`: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted(kind: str, marker) -> bytes:
    """A file posing as a checkpoint whose unpickling would run code."""
    payload = {"format": 2, "epoch": 1, "tripwire": Tripwire(marker)}
    if kind == "torch_zip":  # the layout torch.save writes, a pickle inside
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()
    if kind == "torch_legacy":  # torch's older, non-zip format
        buffer = io.BytesIO()
        torch.save(payload, buffer, _use_new_zipfile_serialization=False)
        return buffer.getvalue()
    raw = pickle.dumps(payload)
    if kind == "pickle":
        return raw
    archive = io.BytesIO()  # "polyglot": a pickle that a zip reader also takes for an archive
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("archive/data.pkl", raw)
    return raw + archive.getvalue()


@pytest.mark.parametrize("kind", ["torch_zip", "torch_legacy", "pickle", "polyglot"])
def test_a_crafted_checkpoint_runs_nothing_and_is_refused_as_unreadable(tmp_path, kind):
    marker, path = tmp_path / "ran", tmp_path / "0000.pt"
    path.write_bytes(crafted(kind, marker))
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert str(raised.value).startswith(f"{path}: ") and not marker.exists()
    assert "weights_only" not in str(raised.value)  # torch's advice to load it unsafely is not passed on


# -- a finished run, copied for each test ----------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    spec = write_spec(folder, refit=False, ensemble={"enabled": False})
    result = CliRunner().invoke(main, ["run", str(spec), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def run(finished, tmp_path):
    """(spec, run dir, trial ids best first) of a fresh copy of the finished run."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    run_dir = tmp_path / "run"
    with sqlite3.connect(run_dir / "trials.db") as db:
        ranked = [row[0] for row in db.execute("SELECT trial_id FROM trials ORDER BY loss, seq")]
    return tmp_path / "spec.json", run_dir, ranked


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def files_of(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def damage_database(path, kind):
    if kind == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    elif kind == "garbage":
        path.write_bytes(b"these are not the trials you are looking for\n" * 200)
    else:  # the header and the first pages intact: only a read of the pages further on meets the damage
        with open(path, "r+b") as f:
            f.seek(4096 * 3)
            f.write(b"\xff" * 4096 * 2)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "pages"])
def test_a_damaged_trial_database_is_refused_before_anything_trains(run, kind, caplog):
    caplog.set_level(logging.INFO)
    spec, run_dir, _ = run
    db = run_dir / "trials.db"
    damage_database(db, kind)
    before, checkpoints = db.read_bytes(), files_of(run_dir / "checkpoints")
    for command in (["run", spec, "--quiet", "--max-trials", "6"], ["report", run_dir]):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert f"error: {db} is not a readable trial database" in result.output, result.output
        assert "restore it from a backup" in result.output and ".recover" in result.output
        assert "Traceback" not in result.output and result.output.count("\n") == 1
    assert db.read_bytes() == before and files_of(run_dir / "checkpoints") == checkpoints  # nothing trained
    assert "loaded sklearn:iris" not in caplog.text  # refused before the data were loaded


def test_a_damaged_trial_database_can_be_discarded_with_overwrite(run):
    spec, run_dir, _ = run
    damage_database(run_dir / "trials.db", "garbage")
    result = invoke("run", spec, "--quiet", "--overwrite", "--max-trials", "1")
    assert result.exit_code == 0, result.output
    with sqlite3.connect(run_dir / "trials.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 1


def damage_checkpoint(path, kind, marker):
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(crafted(kind, marker))


@pytest.mark.parametrize("kind", ["truncated", "torch_zip"])
def test_an_interrupted_trial_with_an_unreadable_checkpoint_starts_again(run, kind, caplog):
    spec, run_dir, ranked = run
    trial, marker = ranked[-1], run_dir.parent / "ran"
    with sqlite3.connect(run_dir / "trials.db") as db:  # as if the run had been killed during its last epoch
        db.execute("UPDATE trials SET status='RUNNING', loss=NULL, metrics='{}', finished_at=NULL WHERE trial_id=?",
                   (trial,))
        db.execute("DELETE FROM meta WHERE key='final'")
        resumed_at = db.execute("SELECT MAX(recorded_at) FROM epochs").fetchone()[0]
    checkpoint = run_dir / "checkpoints" / f"{trial}.pt"
    damage_checkpoint(checkpoint, kind, marker)
    result = invoke("run", spec, "--quiet")
    assert result.exit_code == 0, result.output
    assert f"trial {trial} starts again from scratch: {checkpoint}: " in caplog.text
    store = TrialStore(run_dir / "trials.db", readonly=True)
    record, history = store.trial(trial), store.history(trial)
    store.close()
    assert record.status == "COMPLETE" and record.epochs == 3
    assert [h["epoch"] for h in history] == [1, 2, 3]
    with sqlite3.connect(run_dir / "trials.db") as db:  # every epoch trained anew, none continued from the file
        assert db.execute("SELECT MIN(recorded_at) FROM epochs WHERE trial_id=?", (trial,)).fetchone()[0] > resumed_at
    assert load_checkpoint(checkpoint).epoch == 3 and not marker.exists()


def final_document(run_dir):
    with sqlite3.connect(run_dir / "trials.db") as db:
        return json.loads(db.execute("SELECT value FROM meta WHERE key='final'").fetchone()[0])


@pytest.mark.parametrize("kind", ["truncated", "torch_zip", "polyglot"])
def test_an_unreadable_best_checkpoint_passes_to_the_next_best_trial(run, kind, caplog):
    spec, run_dir, ranked = run
    best, marker = run_dir / "checkpoints" / f"{ranked[0]}.pt", run_dir.parent / "ran"
    damage_checkpoint(best, kind, marker)
    result = invoke("run", spec, "--quiet")  # every trial done: straight to the end
    assert result.exit_code == 0, result.output
    assert f"{best}: " in caplog.text and "the next best trial's model is tried instead" in caplog.text
    final = final_document(run_dir)
    assert final["best_trial_id"] == ranked[1] and final["unreadable_checkpoints"] == [ranked[0]]
    assert json.loads((run_dir / "model" / "model.json").read_text())["trial_id"] == ranked[1]
    assert not marker.exists()


def test_a_crafted_preprocessor_pickle_is_refused_by_predict(run):
    _, run_dir, _ = run
    model, marker = run_dir / "model", run_dir.parent / "ran"
    facts = json.loads((model / "model.json").read_text())
    facts["files"]["preprocessor"] = "preprocessor.pkl"  # as an older run's model.json says
    (model / "model.json").write_text(json.dumps(facts))
    (model / "preprocessor.pkl").write_bytes(pickle.dumps(Tripwire(marker)))
    rows = run_dir.parent / "new.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n")
    out = run_dir.parent / "predictions.csv"
    result = invoke("predict", run_dir, rows, "--out", out)
    assert result.exit_code == 1
    assert f"error: {model / 'preprocessor.pkl'}: a pickled preprocessor" in result.output
    assert "Traceback" not in result.output and not marker.exists() and not out.exists()


def test_a_damaged_model_description_is_named_by_predict_and_rebuilt_by_run(run):
    spec, run_dir, _ = run
    facts = run_dir / "model" / "model.json"
    facts.write_bytes(facts.read_bytes()[:40])
    rows = run_dir.parent / "new.csv"
    rows.write_text("a,b,c,d\n5.1,3.5,1.4,0.2\n")
    out = run_dir.parent / "predictions.csv"
    result = invoke("predict", run_dir, rows, "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output and not out.exists()
    assert f"error: {facts} is not readable JSON" in result.output and "automl run" in result.output
    assert invoke("run", spec, "--quiet").exit_code == 0  # every trial done: the model is exported again
    assert invoke("predict", run_dir, rows, "--out", out).exit_code == 0 and out.exists()
