"""Typed errors. Each says what was wrong, where, and what to do.

The CLI turns them into messages and exit codes; nothing below the CLI prints or exits.
"""
from __future__ import annotations

from errno import ENOSPC


class AutoMLError(Exception):
    """Base of every error a user can cause or meet."""

    exit_code = 1


class SpecError(AutoMLError):
    """The spec is invalid. Carries every problem found, each with its JSON path."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"  {path or '<root>'}: {message}" for path, message in self.problems]
        super().__init__(f"invalid spec{where} ({len(self.problems)} problem(s)):\n" + "\n".join(lines))


class DataError(AutoMLError):
    """The data cannot be used: names the file, column or row."""


class PluginError(AutoMLError):
    """A plugin failed to load or broke the protocol: names the plugin and its source."""


class RunDirError(AutoMLError):
    """The run directory cannot be used as asked (changed spec, in use, ...)."""


class BudgetExhausted(AutoMLError):
    """Too many failed trials: the search cannot go on."""


class CheckpointError(AutoMLError):
    """A trial checkpoint cannot be read (missing, damaged, or not safely loadable): names the file."""

    def __init__(self, path, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.path, self.problem)


class DiskFullError(AutoMLError):
    """No space left on the device (or quota) while writing a file of the run: names the file.

    Nothing is lost: writes are atomic and every committed trial stays, so the same command
    resumes once space is freed. `errno` lets `files.disk_full` recognise it like an OSError."""

    errno = ENOSPC
    RESUME = "free space and run the same command again to resume"

    def __init__(self, path, advice: str = RESUME):
        self.path, self.advice = path, advice
        super().__init__(f"no space left on device while writing {path}: {advice}")

    def __reduce__(self):  # picklable across worker processes despite the two-argument constructor
        return type(self), (self.path, self.advice)
