"""Sequences: NPZ arrays and CSV files (wide and long layout) -> float32 (n, length, channels)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from automl.data.csvfile import read_table
from automl.data.loaders import load_data
from automl.data.sequences import SequenceScaler, long_sequences
from automl.errors import DataError
from automl.spec import NpzData, SequenceCsvData, SplitSpec

SPLIT = SplitSpec()


def write(tmp_path, text, name="seq.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def seq_source(path, **kwargs):
    return SequenceCsvData(source="sequence_csv", path=path, target=kwargs.pop("target", "label"), **kwargs)


def data_error(src, task=None) -> str:
    with pytest.raises(DataError) as info:
        load_data(src, SPLIT, task=task, seed=0)
    return str(info.value)


def wide_csv(tmp_path, rows=30, steps=5):
    rng = np.random.default_rng(0)
    lines = ["id,label," + ",".join(f"t{k}" for k in range(steps))]
    lines += [f"s{i},{i % 2}," + ",".join(f"{v:.3f}" for v in rng.normal(i % 2, 1, steps)) for i in range(rows)]
    return write(tmp_path, "\n".join(lines) + "\n")


def long_csv(tmp_path, lengths=(3, 5, 4) * 8):
    """Rows listed time-descending so ordering by `time` matters; sequence i has label i % 2."""
    lines = ["seq,time,a,b,label"]
    for i, length in enumerate(lengths):
        lines += [f"q{i},{t},{i + t},{-t},{i % 2}" for t in reversed(range(length))]
    return write(tmp_path, "\n".join(lines) + "\n")


# --- NPZ -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape, kind, modality, input_shape", [
    ((40, 7, 3), "auto", "sequence", (7, 3)),  # 3-D with H != W: a sequence
    ((40, 6, 6), "auto", "image", (1, 6, 6)),  # 3-D square: an image
    ((40, 6, 6), "sequence", "sequence", (6, 6)),
    ((40, 9), "sequence", "sequence", (9, 1)),  # univariate gets a channel axis
    ((40, 9), "auto", "tabular", (9,)),
])
def test_npz_kind(tmp_path, shape, kind, modality, input_shape):
    path = tmp_path / "x.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=shape), y=np.arange(shape[0]) % 2)
    data = load_data(NpzData(source="npz", path=path, kind=kind), SPLIT, task=None, seed=0)
    assert (data.profile.modality, data.profile.input_shape) == (modality, input_shape)
    assert data.X_train.dtype == np.float32


def test_npz_kind_that_does_not_fit_the_shape(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, X=np.zeros((10, 4, 4, 4)), y=np.arange(10) % 2)
    message = data_error(NpzData(source="npz", path=path, kind="sequence"))
    assert "x.npz" in message and "'sequence'" in message and "(10, 4, 4, 4)" in message


def test_npz_sequences_are_standardised_per_channel_on_train(tmp_path):
    rng = np.random.default_rng(0)
    X = np.stack([rng.normal(5, 2, (200, 8)), rng.normal(-3, 0.5, (200, 8))], axis=-1)
    path = tmp_path / "x.npz"
    np.savez(path, X=X, y=rng.normal(size=200))
    data = load_data(NpzData(source="npz", path=path), SPLIT, task=None, seed=0)
    np.testing.assert_allclose(data.X_train.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(axis=(0, 1)), 1, atol=1e-4)


# --- scaler ----------------------------------------------------------------------------

def test_scaler_pads_at_the_end_cuts_and_pickles():
    train = [np.array([[1.0], [3.0]]), np.array([[1.0], [3.0], [1.0], [3.0]])]
    scaler = pickle.loads(pickle.dumps(SequenceScaler().fit(train)))
    assert scaler.length_ == 4 and scaler.mean_.tolist() == [2.0] and scaler.std_.tolist() == [1.0]
    out = scaler.transform([np.array([[3.0]]), np.arange(6.0)])  # 1-D counts as one channel
    assert out.dtype == np.float32 and out.shape == (2, 4, 1)
    assert out[0, :, 0].tolist() == [1, 0, 0, 0] and out[1, :, 0].tolist() == [-2, -1, 0, 1]
    assert any("2 to 4 steps" in note for note in scaler.fit_notes())


def test_scaler_rejects_other_channel_counts():
    scaler = SequenceScaler().fit(np.zeros((3, 4, 2)))
    with pytest.raises(DataError, match="1 channel"):
        scaler.transform(np.zeros((1, 4, 1)))


# --- CSV wide ----------------------------------------------------------------------------

def test_wide_layout_is_one_univariate_sequence_per_row(tmp_path):
    data = load_data(seq_source(wide_csv(tmp_path), drop=("id",)), SPLIT, task=None, seed=0)
    p = data.profile
    assert (p.modality, p.task, p.input_shape, p.n_samples, p.n_features) == ("sequence", "classification", (5, 1), 30, 5)
    assert data.X_train.shape == (p.n_train, 5, 1) and data.X_train.dtype == np.float32


def test_wide_non_number_names_line_and_column(tmp_path):
    path = write(tmp_path, "label,t0,t1\n0,1,2\n1,3,x\n0,4,5\n")
    message = data_error(seq_source(path))
    assert "seq.csv" in message and "line 3" in message and "'t1'" in message and "'x'" in message


def test_wide_missing_cell_names_line_and_column(tmp_path):
    path = write(tmp_path, "label,t0,t1\n0,1,2\n1,3,4\n0,,5\n")
    message = data_error(seq_source(path))
    assert "seq.csv" in message and "line 4" in message and "'t0'" in message and "empty" in message


def test_wide_missing_target_column(tmp_path):
    message = data_error(seq_source(write(tmp_path, "y,t0\n0,1\n"), target="label"))
    assert "seq.csv" in message and "'label'" in message


# --- CSV long ----------------------------------------------------------------------------

def test_long_layout_groups_orders_and_pads(tmp_path):
    src = seq_source(long_csv(tmp_path), layout="long", id_column="seq", time_column="time")
    data = load_data(src, SplitSpec(test=0.25, validation=0.25), task="classification", seed=0)
    p = data.profile
    assert (p.input_shape, p.n_samples, p.n_features) == ((5, 2), 24, 2)
    assert any("24 sequences from 96 rows" in note for note in p.notes)
    assert any("3 to 5 steps" in note for note in p.notes)
    assert data.X_train.dtype == np.float32


def test_long_steps_are_ordered_by_time_in_order_of_first_appearance(tmp_path):
    frame, lines = read_table(long_csv(tmp_path, lengths=(3, 2)), ",")
    sequences, ids, groups = long_sequences(frame, lines, "seq.csv", "seq", "time", {"label"})
    assert ids == ["q0", "q1"] and [g.tolist() for g in groups] == [[0, 1, 2], [3, 4]]
    assert sequences[0].tolist() == [[0, 0], [1, -1], [2, -2]] and sequences[1].tolist() == [[1, 0], [2, -1]]


def test_long_without_time_keeps_file_order(tmp_path):
    src = seq_source(long_csv(tmp_path), layout="long", id_column="seq", drop=("time",))
    data = load_data(src, SPLIT, task="classification", seed=0)
    assert data.profile.input_shape == (5, 2)


def test_long_target_must_be_constant_within_a_sequence(tmp_path):
    path = write(tmp_path, "seq,v,label\na,1,x\na,2,x\nb,3,y\nb,4,x\nc,5,y\n")
    message = data_error(seq_source(path, layout="long", id_column="seq"))
    assert "seq.csv" in message and "'b'" in message and "line 4" in message and "line 5" in message


def test_long_missing_id_names_the_line(tmp_path):
    path = write(tmp_path, "seq,v,label\na,1,x\n,2,x\nb,3,y\n")
    message = data_error(seq_source(path, layout="long", id_column="seq"))
    assert "seq.csv" in message and "'seq'" in message and "line 3" in message


def test_long_unknown_time_column(tmp_path):
    path = write(tmp_path, "seq,v,label\na,1,x\n")
    message = data_error(seq_source(path, layout="long", id_column="seq", time_column="when"))
    assert "seq.csv" in message and "'when'" in message and "time" in message
