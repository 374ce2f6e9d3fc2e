"""The run spec: one JSON document, validated by pydantic, frozen once loaded.

Every model forbids unknown keys so a typo is an error, not a silently ignored field.
Paths are resolved relative to the spec file by `load_spec`.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from automl.errors import SpecError
from automl.metrics import DEFAULT_METRIC
from automl.metrics import METRICS as METRIC_DEFINITIONS
from automl.spec_checks import FieldProblems, SpecModel, read_spec, validate_all

# metric name -> (direction, tasks it applies to); the definitions live in automl.metrics
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {name: (m.direction, (m.task,)) for name, m in METRIC_DEFINITIONS.items()}
MetricName = Literal[tuple(METRIC_DEFINITIONS)]  # type: ignore[valid-type]


_Model = SpecModel  # extra="forbid", frozen


TestPath = Annotated[Optional[Path], Field(description=(
    "A separate test file (a folder for images) read like path: its rows are the test set, split.test is "
    "not used, validation still comes from path."))]


class BuiltinData(_Model):
    source: Literal["builtin"]
    name: Literal["sklearn:digits", "sklearn:breast_cancer", "sklearn:wine", "sklearn:iris", "sklearn:diabetes"]


class CsvData(_Model):
    source: Literal["csv"]
    path: Path
    test_path: TestPath = None
    target: str = Field(min_length=1, description="Name of the column to predict.")
    delimiter: str = Field(",", min_length=1, max_length=1)
    drop: tuple[str, ...] = Field((), description="Columns to ignore (ids, leaks).")
    id_column: Optional[str] = Field(None, min_length=1, description=(
        "A column naming each row (never a feature): `automl predict` writes its values as the first column."))

    @model_validator(mode="after")
    def _id_is_no_target(self) -> "CsvData":
        if self.id_column is not None and self.id_column == self.target:
            raise ValueError(f"id_column {self.id_column!r} is the target; name the column that identifies each row")
        return self


class NpzData(_Model):
    source: Literal["npz"]
    path: Path
    test_path: TestPath = None
    x_key: str = "X"
    y_key: str = "y"
    kind: Literal["auto", "tabular", "image", "sequence"] = Field(
        "auto", description="What X holds. auto: (n, features) tabular, (n, C, H, W) image, (n, H, W) image when "
                            "H == W, else a sequence (n, length, channels); (n, length) is a sequence only when "
                            "kind is 'sequence'.")


class ImageFolderData(_Model):
    source: Literal["images"]
    path: Path = Field(description="Folder with one sub-folder of PNG/JPEG files per class.")
    test_path: TestPath = None
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
    test_path: TestPath = None
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
    test_path: TestPath = None
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


# upper bounds: far beyond any real search, low enough that a typo (1e23) is refused, not run
MAX_COUNT = 1_000_000
MAX_SECONDS = 30 * 24 * 3600  # 30 days
MAX_EPOCHS = 100_000


class BudgetSpec(_Model):
    max_trials: Optional[int] = Field(20, ge=1, le=MAX_COUNT, description=f"Trials to run, 1 to {MAX_COUNT}.")
    max_time: Optional[float] = Field(
        None, gt=0, le=MAX_SECONDS, description=f"Wall-clock seconds for the whole search, at most {MAX_SECONDS} (30 days).")
    max_epochs: int = Field(30, ge=1, le=MAX_EPOCHS, description=f"Epochs per trial at full budget, 1 to {MAX_EPOCHS}.")
    max_failed: int = Field(5, ge=1, le=MAX_COUNT, description="Stop the search after this many failed trials.")
    patience: Optional[int] = Field(8, ge=1, le=MAX_EPOCHS,
                                    description="Early stopping patience in epochs; null disables it.")
    max_trial_time: Optional[float] = Field(
        None, gt=0, le=MAX_SECONDS, description="Seconds one trial may run before it is killed, at most 30 days.")
    max_consecutive_failures: Optional[int] = Field(
        10, ge=1, le=MAX_COUNT,
        description="Abort after this many trials failed in a row (something is systematically wrong).")

    @model_validator(mode="after")
    def _some_limit(self) -> "BudgetSpec":
        if self.max_trials is None and self.max_time is None:
            raise ValueError("set max_trials or max_time (or both): otherwise the search never ends")
        return self


class StrategySpec(_Model):
    name: str = Field("auto", min_length=1, description="A strategy's name, or auto: the agent picks one from the "
                                                        "budget, the epochs and the search space (docs/strategies.md).")
    options: dict[str, Any] = Field(default_factory=dict, description="Validated by the strategy's own options model.")
    timeout: float = Field(600, gt=0, le=MAX_SECONDS,
                           description="Seconds one call of the strategy may take before it counts as hung.")
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


_RAY_FIELDS = ("address", "gpus_per_trial", "cpus_per_trial", "namespace", "runtime_env", "node_ip_address")


class ExecutionSpec(_Model):
    backend: Literal["local", "ray"] = Field("local", description="Worker processes on this machine, or a Ray cluster.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps")
    workers: Optional[int] = Field(
        None, ge=1, le=1024, description="Trials run in parallel, 1 to 1024 (default: one per GPU x trials_per_gpu, "
                                         "else 1).")
    trials_per_gpu: int = Field(1, ge=1, le=1024, description="Trials sharing one GPU.")
    isolation: Literal["processes", "threads"] = Field(
        "processes", description="Worker processes survive a crashing or hung trial and are killed at "
                                 "max_trial_time; threads start faster, but a crash ends the run and a thread past "
                                 "max_trial_time is abandoned (its trial fails, its CPU is freed when it returns).")
    retries: int = Field(1, ge=0, le=100, description="Runs again of a trial whose worker crashed (0 to 100).")
    keep_checkpoints: Literal["best", "all"] = Field("best", description="Trial checkpoints kept: 'best' (what resume "
        "and promotions need, and the ensemble.candidates best trials without optimizer state) or 'all'.")
    address: Optional[str] = Field(None, description="Ray: 'auto', 'ray://host:port' or none for a local Ray.")
    gpus_per_trial: Optional[float] = Field(
        None, ge=0, le=1024, description="Ray: GPUs per trial (fractions share a GPU).")
    cpus_per_trial: Optional[float] = Field(None, gt=0, le=1024, description="Ray: CPUs per trial.")
    namespace: Optional[str] = Field(None, min_length=1, description="Ray: the namespace of the run's actors.")
    runtime_env: Optional[dict[str, Any]] = Field(
        None, description="Ray: the runtime environment of the workers (a JSON object, as ray.init takes it).")
    node_ip_address: Optional[str] = Field(
        None, description="Ray: this machine's IP address for Ray (default for a local Ray: 127.0.0.1, reachable "
                          "from this machine only).")

    @model_validator(mode="after")
    def _ray_fields(self) -> "ExecutionSpec":
        if self.backend != "ray":
            given = [f for f in _RAY_FIELDS if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to backend 'ray'; set \"backend\": \"ray\" "
                                 "or remove them")
        if self.node_ip_address is not None and (self.address or "").startswith("ray://"):
            # Ray Client runs ray.init on the cluster, which has its own node addresses
            raise ValueError("node_ip_address does not apply with a 'ray://' address (Ray Client)")
        return self

    @field_validator("node_ip_address")
    @classmethod
    def _ip_address(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address, e.g. 127.0.0.1 or 10.0.0.5") from None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"unknown device {value!r}; allowed: auto, cpu, cuda, cuda:N, mps")
        return value


class EnsembleSpec(_Model):
    enabled: bool = Field(True, description="Build a greedy ensemble (Caruana et al. 2004) of the best trials.")
    candidates: int = Field(10, ge=2, le=MAX_COUNT,
                            description="The best trials by validation score the ensemble draws from.")
    rounds: int = Field(25, ge=1, le=MAX_COUNT,
                        description="Greedy selection steps (with replacement): the ensemble's size.")


class TaskSpec(_Model):
    """The whole run spec."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds every random choice; 0 to 4294967295.")
    data: DataSource
    task: Optional[Literal["classification", "regression"]] = Field(None, description="Inferred from the target when omitted.")
    metric: Optional[MetricName] = Field(None, description="Selection metric; default accuracy / rmse.")
    direction: Optional[Literal["maximize", "minimize"]] = Field(None, description="Implied by the metric; checked if given.")
    metrics: tuple[MetricName, ...] = Field((), description="Extra metrics to report.")
    loss: Literal["auto", "mse", "mae", "huber"] = Field(
        "auto", description="Regression training loss (auto: mse); classification always trains with cross-entropy.")
    refit: Union[bool, Literal["auto"]] = Field(
        "auto", description="Retrain the best configuration on train+validation after the search; auto: when the "
                            "non-test rows number at most 20000 and the refit is worth its time (docs/time.md).")
    ensemble: EnsembleSpec = EnsembleSpec()
    split: SplitSpec = SplitSpec()
    budget: BudgetSpec = BudgetSpec()
    strategy: StrategySpec = StrategySpec()
    families: FamiliesSpec = FamiliesSpec()
    execution: ExecutionSpec = ExecutionSpec()
    output: Optional[Path] = Field(None, description="Run directory; default runs/<name> beside the spec.")
    plugins_dirs: tuple[Path, ...] = Field((), description="Folders of plugin files to load.")

    # one check per validator: automl.spec_checks runs each on the fields that are valid, so one wrong
    # field does not hide the others' problems
    @model_validator(mode="after")
    def _metric_fits_task(self) -> TaskSpec:
        if self.metric is not None and self.task is not None and self.task not in METRICS[self.metric][1]:
            fitting = ", ".join(m for m, (_, t) in METRICS.items() if self.task in t)
            raise FieldProblems(("metric", f"{self.metric!r} does not apply to {self.task}; use one of {fitting}"))
        return self

    @model_validator(mode="after")
    def _direction_fits_metric(self) -> TaskSpec:
        if self.metric is not None and self.direction is not None and self.direction != METRICS[self.metric][0]:
            raise FieldProblems(("direction", (f"metric {self.metric!r} is to {METRICS[self.metric][0]}, but "
                                               f"direction says {self.direction}; remove direction")))
        return self

    @model_validator(mode="after")
    def _loss_fits_task(self) -> TaskSpec:
        if self.task == "classification" and self.loss != "auto":
            raise FieldProblems(("loss", (f"{self.loss!r} is for regression; classification trains with "
                                          "cross-entropy (remove loss or set task to regression)")))
        return self

    @model_validator(mode="after")
    def _metrics_fit_task(self) -> TaskSpec:
        if self.task is not None:
            bad = [extra for extra in self.metrics if self.task not in METRICS[extra][1]]
            if bad:
                raise FieldProblems(("metrics", f"{', '.join(map(repr, bad))} do(es) not apply to {self.task}"))
        return self

    def resolved_metric(self, task: str) -> tuple[str, str]:
        """(metric, direction) once the task is known."""
        metric = self.metric or DEFAULT_METRIC[task]
        return metric, METRICS[metric][0]


def parse_spec(raw: Any, source: str | None = None, base_dir: Path | None = None,
               problems: Sequence[tuple[str, str]] = ()) -> TaskSpec:
    """Validate a decoded JSON document; paths are resolved against base_dir.

    Raises one SpecError with every problem: `problems` found before (decoding the file), then
    each field's, then the cross-field checks'."""
    found = list(problems)
    spec, invalid = validate_all(TaskSpec, raw)
    given = {path for path, _ in found}  # a value already reported (e.g. NaN) is not reported twice
    found += [p for p in invalid if p[0] not in given]
    if spec is None or found:
        raise SpecError(found, source)
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
        updates["data"] = spec.data.model_copy(update={"path": absolute(spec.data.path),
                                                       "test_path": absolute(spec.data.test_path)})
    return spec.model_copy(update=updates)


def load_spec(path: str | Path) -> TaskSpec:
    """Read, decode and validate a spec file."""
    raw, problems = read_spec(path)
    return parse_spec(raw, str(path), Path(path).resolve().parent, problems)


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
    if data["data"].get("test_path", 0) is None:
        del data["data"]["test_path"]  # as in runs made before the field existed, so they still resume
    if data["data"]["source"] == "csv" and data["data"].get("id_column", 0) is None:
        del data["data"]["id_column"]  # likewise
    return data


def json_schema() -> dict[str, Any]:
    return TaskSpec.model_json_schema()
