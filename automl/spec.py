"""The run spec: one JSON document, validated by pydantic, frozen once loaded.

Every model forbids unknown keys so a typo is an error, not a silently ignored field.
Paths are resolved relative to the spec file by `load_spec`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from automl.errors import SpecError
from automl.metrics import DEFAULT_METRIC
from automl.metrics import METRICS as METRIC_DEFINITIONS

# metric name -> (direction, tasks it applies to); the definitions live in automl.metrics
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {name: (m.direction, (m.task,)) for name, m in METRIC_DEFINITIONS.items()}
MetricName = Literal[tuple(METRIC_DEFINITIONS)]  # type: ignore[valid-type]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinData(_Model):
    source: Literal["builtin"]
    name: Literal["sklearn:digits", "sklearn:breast_cancer", "sklearn:wine", "sklearn:iris", "sklearn:diabetes"]


class CsvData(_Model):
    source: Literal["csv"]
    path: Path
    target: str = Field(min_length=1, description="Name of the column to predict.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    drop: tuple[str, ...] = Field((), description="Columns to ignore (ids, leaks).")


class NpzData(_Model):
    source: Literal["npz"]
    path: Path
    x_key: str = "X"
    y_key: str = "y"
    kind: Literal["auto", "tabular", "image", "sequence"] = Field(
        "auto", description="What X holds. auto: (n, features) tabular, (n, C, H, W) image, (n, H, W) image when "
                            "H == W, else a sequence (n, length, channels); (n, length) is a sequence only when "
                            "kind is 'sequence'.")


class ImageFolderData(_Model):
    source: Literal["images"]
    path: Path = Field(description="Folder with one sub-folder of PNG/JPEG files per class.")
    image_size: Optional[tuple[int, int]] = Field(
        None, description="(height, width) every image is resized to; default: chosen from the images' sizes.")
    color: Literal["auto", "grayscale", "rgb"] = Field(
        "auto", description="auto: grayscale when every image is, else RGB.")

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value):
        if value is not None and min(value) < 4:
            raise ValueError(f"image_size {list(value)} is too small; give (height, width), each at least 4")
        return value


class SequenceCsvData(_Model):
    source: Literal["sequence_csv"]
    path: Path
    target: str = Field(min_length=1, description="Column to predict (constant within a sequence in long layout).")
    layout: Literal["wide", "long"] = Field(
        "wide", description="wide: one row per sequence, one column per time step. long: one row per time step, "
                            "rows of a sequence share id_column.")
    id_column: Optional[str] = Field(None, description="long layout: the column naming each row's sequence.")
    time_column: Optional[str] = Field(None, description="long layout: orders the steps of a sequence (default: file order).")
    delimiter: str = Field(",", min_length=1, max_length=1)
    drop: tuple[str, ...] = Field((), description="Columns to ignore.")

    @model_validator(mode="after")
    def _long_needs_id(self) -> "SequenceCsvData":
        if self.layout == "long" and not self.id_column:
            raise ValueError("layout 'long' needs id_column: the column that names the sequence of each row")
        if self.layout == "wide" and (self.id_column or self.time_column):
            raise ValueError("id_column and time_column apply to layout 'long' only")
        return self


class TextCsvData(_Model):
    source: Literal["text_csv"]
    path: Path
    text_column: str = Field(min_length=1, description="Column holding the text.")
    target: str = Field(min_length=1, description="Column to predict.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    max_length: Optional[int] = Field(
        None, ge=4, le=4096, description="Tokens kept per text; default: the 95th percentile of training lengths, "
                                         "at most 256.")
    max_vocab: int = Field(20000, ge=10, description="Most frequent training words kept; the rest become <unk>.")
    min_count: int = Field(1, ge=1, description="A word needs this many training occurrences to enter the vocabulary.")
    lowercase: bool = True


DataSource = Annotated[Union[BuiltinData, CsvData, NpzData, ImageFolderData, SequenceCsvData, TextCsvData],
                       Field(discriminator="source")]
DATA_SOURCES = ("builtin", "csv", "npz", "images", "sequence_csv", "text_csv")


class SplitSpec(_Model):
    validation: float = Field(0.2, gt=0, lt=1, description="Fraction of the non-test data used for validation.")
    test: float = Field(0.2, gt=0, lt=1, description="Fraction of all data held out; never seen by the search.")
    stratify: bool = Field(True, description="Stratify splits by class for classification.")
    cv_folds: Optional[int] = Field(
        None, ge=2, le=20, description="k-fold cross-validation on the non-test rows instead of one validation "
                                       "split: a trial trains k models and scores their mean (spread recorded).")


class BudgetSpec(_Model):
    max_trials: Optional[int] = Field(20, ge=1)
    max_time: Optional[float] = Field(None, gt=0, description="Wall-clock seconds for the whole search.")
    max_epochs: int = Field(30, ge=1, description="Epochs per trial at full budget.")
    max_failed: int = Field(5, ge=1, description="Stop the search after this many failed trials.")
    patience: Optional[int] = Field(8, ge=1, description="Early stopping patience in epochs; null disables it.")
    max_trial_time: Optional[float] = Field(None, gt=0, description="Seconds one trial may run before it is killed.")
    max_consecutive_failures: Optional[int] = Field(
        10, ge=1, description="Abort after this many trials failed in a row (something is systematically wrong).")

    @model_validator(mode="after")
    def _some_limit(self) -> "BudgetSpec":
        if self.max_trials is None and self.max_time is None:
            raise ValueError("set max_trials or max_time (or both): otherwise the search never ends")
        return self


class StrategySpec(_Model):
    name: str = Field("auto", min_length=1, description="A strategy's name, or auto: the agent picks one from the "
                                                        "budget, the epochs and the search space (docs/strategies.md).")
    options: dict[str, Any] = Field(default_factory=dict, description="Validated by the strategy's own options model.")
    timeout: float = Field(600, gt=0, description="Seconds one call of the strategy may take before it counts as hung.")
    fallback: Optional[Literal["random"]] = Field(
        None, description="On a strategy that raises, hangs or breaks the protocol: go on with this one instead of stopping.")

    @model_validator(mode="after")
    def _auto_takes_no_options(self) -> "StrategySpec":
        if self.name == "auto" and self.options:
            raise ValueError("auto picks the strategy and its options itself; to set options, name the strategy "
                             "(e.g. \"name\": \"asha\")")
        return self


class RangeOverride(_Model):
    """Narrow or replace one search-space parameter. Give low/high or choices."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: Optional[bool] = None
    choices: Optional[tuple[Union[bool, int, float, str], ...]] = None

    @model_validator(mode="after")
    def _one_kind(self) -> "RangeOverride":
        has_range = self.low is not None or self.high is not None
        if self.choices is not None and has_range:
            raise ValueError("give either low/high or choices, not both")
        if self.choices is None and not has_range:
            raise ValueError("give low and/or high, or choices")
        if self.choices is not None and len(self.choices) == 0:
            raise ValueError("choices must not be empty")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class FamiliesSpec(_Model):
    include: Optional[tuple[str, ...]] = Field(None, description="Only these families (default: all that suit the data).")
    exclude: tuple[str, ...] = ()
    overrides: dict[str, RangeOverride] = Field(
        default_factory=dict, description="Search-space overrides by parameter name, e.g. 'lr' or 'mlp.width'."
    )


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ExecutionSpec(_Model):
    backend: Literal["local", "ray"] = Field("local", description="Worker processes on this machine, or a Ray cluster.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    workers: Optional[int] = Field(
        None, ge=1, description="Trials run in parallel (default: one per GPU x trials_per_gpu, else 1).")
    trials_per_gpu: int = Field(1, ge=1, description="Trials sharing one GPU.")
    isolation: Literal["processes", "threads"] = Field(
        "processes", description="Worker processes survive a crashing or hung trial and are killed at "
                                 "max_trial_time; threads start faster, but a crash ends the run and a thread past "
                                 "max_trial_time is abandoned (its trial fails, its CPU is freed when it returns).")
    retries: int = Field(1, ge=0, description="Runs again of a trial whose worker crashed.")
    address: Optional[str] = Field(None, description="Ray: 'auto', 'ray://host:port' or none for a local Ray.")
    gpus_per_trial: Optional[float] = Field(None, ge=0, description="Ray: GPUs per trial (fractions share a GPU).")
    cpus_per_trial: Optional[float] = Field(None, gt=0, description="Ray: CPUs per trial.")

    @model_validator(mode="after")
    def _ray_fields(self) -> "ExecutionSpec":
        if self.backend != "ray":
            given = [f for f in ("address", "gpus_per_trial", "cpus_per_trial") if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to backend 'ray'; set \"backend\": \"ray\" "
                                 "or remove them")
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device {value!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        return value


class EnsembleSpec(_Model):
    enabled: bool = Field(True, description="Build a greedy ensemble (Caruana et al. 2004) of the best trials.")
    candidates: int = Field(10, ge=2, description="The best trials by validation score the ensemble draws from.")
    rounds: int = Field(25, ge=1, description="Greedy selection steps (with replacement): the ensemble's size.")


class TaskSpec(_Model):
    """The whole run spec."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    data: DataSource
    task: Optional[Literal["classification", "regression"]] = Field(None, description="Inferred from the target when omitted.")
    metric: Optional[MetricName] = Field(None, description="Selection metric; default accuracy / rmse.")
    direction: Optional[Literal["maximize", "minimize"]] = Field(None, description="Implied by the metric; checked if given.")
    metrics: tuple[MetricName, ...] = Field((), description="Extra metrics to report.")
    loss: Literal["auto", "mse", "mae", "huber"] = Field(
        "auto", description="Regression training loss (auto: mse); classification always trains with cross-entropy.")
    refit: Union[bool, Literal["auto"]] = Field(
        "auto", description="Retrain the best configuration on train+validation after the search; auto: when the "
                            "non-test rows number at most 20000.")
    ensemble: EnsembleSpec = EnsembleSpec()
    split: SplitSpec = SplitSpec()
    budget: BudgetSpec = BudgetSpec()
    strategy: StrategySpec = StrategySpec()
    families: FamiliesSpec = FamiliesSpec()
    execution: ExecutionSpec = ExecutionSpec()
    output: Optional[Path] = Field(None, description="Run directory; default runs/<name> beside the spec.")
    plugins_dirs: tuple[Path, ...] = Field((), description="Folders of plugin files to load.")

    @model_validator(mode="after")
    def _metric_fits(self) -> "TaskSpec":
        problems = []
        if self.metric is not None:
            direction, tasks = METRICS[self.metric]
            if self.task is not None and self.task not in tasks:
                problems.append(f"metric {self.metric!r} does not apply to {self.task}; use one of "
                                f"{', '.join(m for m, (_, t) in METRICS.items() if self.task in t)}")
            if self.direction is not None and self.direction != direction:
                problems.append(f"metric {self.metric!r} is to {direction}, but direction says {self.direction}")
        if self.task == "classification" and self.loss != "auto":
            problems.append(f"loss {self.loss!r} is for regression; classification trains with cross-entropy "
                            "(remove loss or set task to regression)")
        if self.task is not None:
            for extra in self.metrics:
                if self.task not in METRICS[extra][1]:
                    problems.append(f"metrics: {extra!r} does not apply to {self.task}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolved_metric(self, task: str) -> tuple[str, str]:
        """(metric, direction) once the task is known."""
        metric = self.metric or DEFAULT_METRIC[task]
        return metric, METRICS[metric][0]


def _format_loc(loc: tuple) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in DATA_SOURCES and parts == ["data"]:
            continue  # discriminator tag pydantic adds; the user's path has no such key
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def problems_from_validation_error(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors():
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field; check its spelling (see `automl schema` for allowed fields)"
        elif item["type"] == "missing":
            message = "required field is missing"
        problems.append((_format_loc(tuple(item["loc"])), message.removeprefix("Value error, ")))
    return problems


def parse_spec(raw: Any, source: str | None = None, base_dir: Path | None = None) -> TaskSpec:
    """Validate a decoded JSON document; paths are resolved against base_dir."""
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(problems_from_validation_error(error), source) from None
    if base_dir is not None:
        spec = resolve_paths(spec, base_dir)
    return spec


def resolve_paths(spec: TaskSpec, base_dir: Path) -> TaskSpec:
    def absolute(path: Path | None) -> Path | None:
        if path is None:
            return None
        return path if path.is_absolute() else (base_dir / path).resolve()

    updates: dict[str, Any] = {"plugins_dirs": tuple(absolute(p) for p in spec.plugins_dirs)}
    updates["output"] = absolute(spec.output) if spec.output else (base_dir / "runs" / spec.name).resolve()
    if hasattr(spec.data, "path"):
        updates["data"] = spec.data.model_copy(update={"path": absolute(spec.data.path)})
    return spec.model_copy(update=updates)


def load_spec(path: str | Path) -> TaskSpec:
    """Read, decode and validate a spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([("", f"spec file {path} does not exist")], str(path)) from None
    except OSError as error:
        raise SpecError([("", f"cannot read {path}: {error.strerror}")], str(path)) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError([("", f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}")], str(path)) from None
    if not isinstance(raw, dict):
        raise SpecError([("", "the spec must be a JSON object")], str(path))
    return parse_spec(raw, str(path), path.resolve().parent)


def spec_fingerprint(spec: TaskSpec) -> dict[str, Any]:
    """The parts of a spec that define the search; a change in them refuses a resume.

    Budgets may grow (resume with more trials), the output/device may move and the steps
    after the search (refit, ensemble) may change without invalidating what was learned,
    so they are left out.
    """
    data = json.loads(spec.model_dump_json())
    for key in ("output", "execution", "plugins_dirs", "refit", "ensemble"):  # after the search: free to change
        data.pop(key, None)
    data["budget"] = {k: v for k, v in data["budget"].items()
                      if k not in ("max_trials", "max_time", "max_failed", "max_trial_time", "max_consecutive_failures")}
    data["strategy"] = {k: v for k, v in data["strategy"].items() if k not in ("timeout", "fallback")}
    return data


def json_schema() -> dict[str, Any]:
    return TaskSpec.model_json_schema()
