"""The command line: the only place that prints for humans and chooses exit codes.

Exit codes: 0 done, 1 a run or data problem, 2 a bad spec or usage, 130 interrupted.
"""
from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

COMMAND_STARTED = time.time()  # before the heavy imports a command makes: max_time bounds them too

from automl.errors import AutoMLError, DiskFullError, SpecError
from automl.files import disk_full


def _fail(error: AutoMLError) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(error.exit_code)


def _load(spec_path: str, overrides: dict, plugin_dirs=()):
    """The spec with the command line's overrides; one SpecError lists every problem of both and
    of the named built-in strategy's options."""
    from automl.spec import parse_spec, read_spec
    from automl.strategy_builder import builtin_strategy_problems  # no torch: `validate --no-data` answers at once

    raw, problems = read_spec(spec_path)
    for dotted, value in overrides.items():
        target = raw
        *parents, last = dotted.split(".")
        for key in parents:
            target = target.setdefault(key, {}) if isinstance(target, dict) else None
        if isinstance(target, dict):  # else the spec's own problem at that field is reported
            target[last] = value
    after = builtin_strategy_problems(raw, plugin_dirs)  # listed after the spec's own problems
    try:
        spec = parse_spec(raw, spec_path, Path(spec_path).resolve().parent, problems)
    except SpecError as error:
        raise SpecError(error.problems + after, spec_path) from None
    if after:
        raise SpecError(after, spec_path)
    return spec


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="automl")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """automl: give it a JSON spec and your data, get a tuned PyTorch model and a report."""
    from automl.execution.slots import set_thread_env

    set_thread_env()  # before anything loads torch: its OpenMP reads the environment once
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: the spec's output).")
@click.option("--strategy", "strategy_name", help="Use this strategy instead of the spec's (its default options).")
@click.option("--max-trials", type=int, help="Override budget.max_trials.")
@click.option("--max-time", type=float, help="Override budget.max_time (seconds).")
@click.option("--device", help="Override execution.device (auto, cpu, cuda, cuda:N, mps).")
@click.option("--workers", type=int, help="Override execution.workers.")
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Load strategy / family plugins from the .py files in this folder (repeatable).")
@click.option("--overwrite", is_flag=True, help="Start over in a run directory made by a different spec.")
@click.option("--quiet", is_flag=True, help="No live progress view.")
def run(spec_path, out, strategy_name, max_trials, max_time, device, workers, plugins_dirs, overwrite, quiet):
    """Run the search a spec describes; run it again to resume."""
    from automl import interrupts
    from automl.execution.prestart import early_workers_for_file

    started = COMMAND_STARTED  # the whole command: imports, the data load and the report too
    overrides = {}
    if out:
        overrides["output"] = str(Path(out).resolve())
    if strategy_name:
        overrides["strategy"] = {"name": strategy_name, "options": {}}
    for key, value in (("budget.max_trials", max_trials), ("budget.max_time", max_time),
                       ("execution.device", device), ("execution.workers", workers)):
        if value is not None:
            overrides[key] = value
    # SIGTERM and Ctrl-C: raised at once, or at the search loop's next safe point (automl/interrupts.py)
    previous = {signum: signal.signal(signum, interrupts.handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    workers = None
    try:
        # they import torch while this process validates the spec, loads the data and plans
        workers = early_workers_for_file(spec_path, overrides)
        spec = _load(spec_path, overrides, plugins_dirs)
        from automl.agent import Agent
        from automl.reporting.console import make_console_observer

        observers = [] if quiet else [make_console_observer()]
        agent = Agent(spec, overwrite=overwrite, observers=observers,
                      plugin_dirs=[Path(p).resolve() for p in plugins_dirs], started_at=started, prestarted=workers)
        summary = agent.run()
    except AutoMLError as error:
        _fail(error)
    except Exception as error:  # a bug stays a traceback; a full disk (an export, the run lock) is one line
        full = disk_full(error)
        if full is None:
            raise
        _fail(DiskFullError(getattr(full, "filename", None) or out or "the run directory"))
    except (KeyboardInterrupt, interrupts.Terminated):
        click.echo("interrupted: finished trials are saved; run the same command again to resume", err=True)
        sys.exit(130)
    finally:
        if workers is not None:  # a no-op once the run's executor took them
            workers.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    from automl.reporting.headline import headline

    for line in headline(summary, time.time() - started):
        click.echo(line)
    gc.freeze()  # exit without a last scan of every object torch made: 7 s of a loaded machine, for nothing


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False))
@click.option("--no-data", is_flag=True, help="Check the spec (and a built-in strategy's options) only, without "
                                              "loading the data or plugin files.")
@click.option("--trust-plugins", is_flag=True, help="Import the plugin files of the spec's plugins_dirs to check "
                                                    "them too (this runs their code). Folders given with "
                                                    "--plugins-dir are imported without it.")
def validate(spec_path, plugins_dirs, no_data, trust_plugins):
    """Check a spec (and its data and plugins); print every problem; run nothing."""
    try:
        spec = _load(spec_path, {}, plugins_dirs)
        if no_data:
            click.echo(f"{spec_path}: the spec is valid")
            return
        untrusted = [] if trust_plugins else _untrusted_plugin_files(spec)
        needed = _plugins_the_spec_names(spec, untrusted)
        if needed:
            click.echo(f"{spec_path}: the spec is valid; its data and plugins were not checked")
            click.echo(f"  {', '.join(sorted(needed))} come(s) from plugin files of plugins_dirs, which validate "
                       f"does not import: a spec's plugin files are code ({', '.join(map(str, untrusted))}). "
                       "Read them, then pass --trust-plugins to check everything.")
            return
        from automl.planning import make_plan  # scikit-learn (no torch): only the plan with the data needs it
        plan = make_plan(spec.model_copy(update={"plugins_dirs": ()}) if untrusted else spec,
                         [Path(p).resolve() for p in plugins_dirs])
    except AutoMLError as error:
        _fail(error)
    if untrusted:
        click.echo(f"  note: {len(untrusted)} plugin file(s) of plugins_dirs not imported, so the plan above "
                   "leaves out what they define (--trust-plugins to import them): " + ", ".join(map(str, untrusted)))
    profile = plan.data.profile
    click.echo(f"{spec_path}: valid")
    click.echo(f"  data: {profile.source}, {profile.modality} {profile.task}, {profile.n_samples} rows "
               f"({profile.n_train} train / {profile.n_val} validation / {profile.n_test} test)")
    if profile.test_source:
        click.echo(f"  test rows: {profile.n_test} from {profile.test_source} (data.test_path; split.test is not used)")
    click.echo(f"  metric: {plan.metric} ({plan.direction})")
    for choice in plan.choices:
        click.echo(f"  family {choice.family}: {'chosen' if choice.chosen else 'not used'} - {choice.reason}")
    click.echo(f"  search space: {len(plan.space)} parameters")
    click.echo(f"  strategy {plan.strategy.name}: {plan.strategy.reason}")
    if plan.budget_note:
        click.echo(f"  {'warning: ' if plan.budget_too_small else ''}budget: {plan.budget_note}")
    for finding in plan.checks.findings:
        click.echo(f"  warning: {finding.message}")
    click.echo(f"  run directory: {spec.output}")


def _untrusted_plugin_files(spec) -> list[Path]:
    from automl.plugins import plugin_files

    return [path for folder in spec.plugins_dirs for path in plugin_files(Path(folder))]


def _plugins_the_spec_names(spec, files: list[Path]) -> set[str]:
    """The strategy and families the spec names that only these files (unimported) declare."""
    from automl.plugins import declared_names, discover

    if not files:
        return set()
    declared = set().union(*(declared_names(path) for path in files))
    registry = discover()  # entry points: installed packages, which the user chose to install
    known = set(registry.names("strategies")) | set(registry.names("families"))
    named = {spec.strategy.name, *(spec.families.include or ()), *spec.families.exclude,
             *(key.split(".")[0] for key in spec.families.overrides if "." in key)}
    return (named & declared) - known


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the Markdown report (without plots) instead of writing files; works on a full disk.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Write the report files into this folder instead of RUN_DIR.")
def report(run_dir, to_stdout, out_dir):
    """(Re)build report.html, report.md and results.json from a run's trial database."""
    from automl.reporting.report import markdown_report, write_report
    from automl.store import TrialStore

    if to_stdout and out_dir:
        raise click.UsageError("--stdout and --out exclude each other")
    if not (Path(run_dir) / TrialStore.FILENAME).exists():
        click.echo(f"error: {run_dir} holds no {TrialStore.FILENAME}; is it a run directory?", err=True)
        sys.exit(1)
    try:
        if to_stdout:
            click.echo(markdown_report(Path(run_dir)), nl=False)
            return
        paths = write_report(Path(run_dir), out_dir)
    except DiskFullError as error:
        _fail(DiskFullError(error.path, f"free space, or print the report with `automl report {run_dir} --stdout` "
                                        "or write it elsewhere with --out DIR"))
    except AutoMLError as error:  # a damaged or newer trials.db
        _fail(error)
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


@main.command()
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False))
def plugins(plugins_dirs):
    """List every strategy and model family, and where each comes from."""
    from automl.plugins import SINGULAR, discover

    try:
        registry = discover([Path(p).resolve() for p in plugins_dirs])
        for plugin in registry.all():
            if not plugin.builtin:  # another package's or a folder's code is checked; automl's own is listed unloaded
                plugin.load()
            click.echo(f"{SINGULAR[plugin.kind]:9} {plugin.name:14} {plugin.source}")
    except AutoMLError as error:
        _fail(error)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default="predictions.csv", show_default=True,
              help="CSV to write: id, prediction and, for classification, one probability column per class.")
@click.option("--model", "which", type=click.Choice(["default", "single", "ensemble", "baseline"]), default="default",
              show_default=True, help="default: the model the run chose on validation (the ensemble when it beat "
                                      "the best single model, the baseline when it beat the deep one); baseline: the "
                                      "simple scikit-learn model the run saved.")
@click.option("--id-column", help="A column of INPUT whose values name the rows: the output's first column "
                                  "(default: the spec's data.id_column, else the file lines).")
def predict(run_dir, input_path, out, which, id_column):
    """Predict INPUT (a CSV, an .npz or an image folder, like the training data) with a run's model."""
    from automl.final.predict import predict_file

    try:
        table = predict_file(Path(run_dir), Path(input_path), which, id_column)
    except AutoMLError as error:
        _fail(error)
    table.to_csv(out, index=False)
    click.echo(f"{len(table)} prediction(s) written to {out}")
    click.echo(f"model: {table.attrs.get('model', which)}")


@main.command()
@click.argument("data", type=click.Path(exists=True))
@click.option("--target", help="Column to predict (CSV); default: a column named target/label/class/y, "
                               "else the last one.")
@click.option("--out", type=click.Path(dir_okay=False), default="spec.json", show_default=True)
@click.option("--name", help="Run name (default: from the file name).")
@click.option("--test", "test", type=click.Path(exists=True),
              help="The data set's own test file (or folder), read like DATA: data.test_path.")
@click.option("--force", is_flag=True, help="Replace an existing spec file.")
def init(data, target, out, name, test, force):
    """Profile DATA (a CSV, an .npz or an image folder) and write a starter spec with the agent's choices."""
    import os

    from automl.init_spec import draft_spec

    out_path = Path(out)
    if out_path.exists() and not force:
        click.echo(f"error: {out} exists; choose another --out or add --force to replace it", err=True)
        sys.exit(2)
    try:
        document, reasons = draft_spec(Path(data), target, name, Path(test) if test else None)
    except AutoMLError as error:
        _fail(error)
    # the data path relative to the spec, as load_spec resolves it, so the pair can move together
    folder = out_path.resolve().parent
    for key in ("path", "test_path"):
        if key in document["data"]:
            document["data"][key] = os.path.relpath(document["data"][key], folder)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(document, indent=2) + "\n")
    for reason in reasons:
        click.echo(f"  {reason}")
    click.echo(f"spec written to {out}; run it with: automl run {out}")


@main.command()
@click.argument("strategy")
@click.option("--plugins-dir", "plugins_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Load strategy plugins from the .py files in this folder (repeatable).")
@click.option("--suite", type=click.Choice(["blackbox", "multifidelity", "both"]), default="both", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), help="Seeds per problem (default 5; 2 with --quick).")
@click.option("--quick", is_flag=True, help="Tiny budgets and few problems: a check that it runs, not a result.")
@click.option("--against", help="Comma-separated strategies to compare with (default: random, bayesian and "
                                "evolutionary on blackbox; random, hyperband and asha on multifidelity).")
@click.option("--out", type=click.Path(file_okay=False), help="Also write bench.json and bench.md here.")
def bench(strategy, plugins_dirs, suite, seeds, quick, against, out):
    """Compare STRATEGY with the built-in strategies on problems with a known optimum."""
    import dataclasses

    from automl.benchmark import (
        QUICK,
        SUITES,
        Settings,
        format_results,
        run_bench,
        save,
    )

    settings = QUICK if quick else Settings()
    if seeds is not None:
        settings = dataclasses.replace(settings, seeds=seeds)
    suites = SUITES if suite == "both" else (suite,)
    try:
        results = run_bench(strategy, [Path(p).resolve() for p in plugins_dirs], suites, settings,
                            against=[n.strip() for n in against.split(",") if n.strip()] if against else None,
                            progress=lambda line: click.echo(line, err=True))
    except AutoMLError as error:
        _fail(error)
    click.echo(format_results(results, settings))
    failures = [line for result in results for line in result.failures]
    for line in failures:
        click.echo(f"failed: {line}", err=True)
    if out:
        for path in save(Path(out), strategy, results, settings):
            click.echo(f"written: {path}")
    failed = sum(result.failed(strategy) for result in results)
    if failed:
        click.echo(f"error: {strategy} failed in {failed} run(s); see above", err=True)
        sys.exit(1)


@main.command()
def schema():
    """Print the JSON schema of the spec (for editors)."""
    from automl.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--port", type=int, default=6006, show_default=True, help="0: any free port.")
@click.option("--verbose", is_flag=True, help="Show TensorBoard's own logs and every request.")
def tensorboard(run_dir, port, verbose):
    """Serve the run's TensorBoard logs on 127.0.0.1."""
    import contextlib
    import io

    from tensorboard import program

    logdir = Path(run_dir) / "tensorboard"
    if not logdir.is_dir():
        click.echo(f"error: {logdir} does not exist; is {run_dir} a run directory?", err=True)
        sys.exit(1)
    # warnings and errors only: TensorBoard logs its start-up at INFO, werkzeug each request at the root's level
    for name in () if verbose else ("", "tensorboard", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)
    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)])
    with contextlib.redirect_stderr(io.StringIO()) as launch_output:  # it writes its notes to stderr itself
        url = board.launch()
    note = "" if verbose else getattr(program, "_DATA_SERVER_ADVISORY_MESSAGE", "")  # "fast data loading"
    if rest := launch_output.getvalue().replace(note, "").strip():
        click.echo(rest, err=True)  # anything else it said, errors among them
    click.echo(f"TensorBoard at {url} (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


if __name__ == "__main__":
    main()
