"""`automl tensorboard`: the URL and problems only, TensorBoard's chatter behind --verbose."""
from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from automl.cli import main

LOGGERS = ("", "tensorboard", "werkzeug")


@pytest.fixture
def fake_tensorboard(monkeypatch):
    """TensorBoard's program without a server: records its argv, says what the real one says."""
    program = importlib.import_module("tensorboard.program")  # the module, not tensorboard's lazy proxy of it
    seen = {}
    levels = {name: logging.getLogger(name).level for name in LOGGERS}

    class Board:
        def configure(self, argv):
            seen["argv"] = argv

        def launch(self):
            sys.stderr.write(program._DATA_SERVER_ADVISORY_MESSAGE + "E: the data server said so\n")
            return "http://127.0.0.1:1234/"

    def pause():
        raise KeyboardInterrupt

    monkeypatch.setattr(program, "TensorBoard", Board)
    monkeypatch.setattr(signal, "pause", pause)
    yield seen
    for name, level in levels.items():  # the command sets them process-wide
        logging.getLogger(name).setLevel(level)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_quiet_by_default(tmp_path, fake_tensorboard):
    (tmp_path / "tensorboard").mkdir()
    result = _invoke("tensorboard", tmp_path, "--port", 0)
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["TensorBoard at http://127.0.0.1:1234/ (Ctrl-C to stop)"]
    assert result.stderr.strip() == "E: the data server said so"  # the advisory note dropped, the rest kept
    assert fake_tensorboard["argv"][1:] == ["--logdir", str(tmp_path / "tensorboard"), "--host", "127.0.0.1",
                                            "--port", "0"]
    for name in LOGGERS:  # werkzeug's request lines and TensorBoard's INFO are not shown
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_verbose_keeps_tensorboards_logs(tmp_path, fake_tensorboard):
    (tmp_path / "tensorboard").mkdir()
    logging.getLogger().setLevel(logging.INFO)
    result = _invoke("tensorboard", tmp_path, "--verbose")
    assert result.exit_code == 0
    assert "fast data loading" in result.stderr
    assert logging.getLogger("werkzeug").isEnabledFor(logging.INFO)


def test_a_served_page_adds_no_line(tmp_path):
    """The real server on a free port: after a request, its output is still the URL line alone."""
    (tmp_path / "tensorboard").mkdir()
    out = tmp_path / "out.txt"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "automl.cli", "tensorboard", str(tmp_path), "--port", "0"],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30  # generous: the machine may be busy
        while "http://" not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = out.read_text().split("TensorBoard at ")[1].split()[0]
        urllib.request.urlopen(url, timeout=10).read()
        time.sleep(0.2)  # werkzeug logs a request after answering it
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its group: TensorBoard's data server too
        proc.wait(timeout=10)
    assert out.read_text().splitlines() == [f"TensorBoard at {url} (Ctrl-C to stop)"]
