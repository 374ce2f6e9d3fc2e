"""The trial database's file: opened, checked whole, and its damage said in one line that names it.

`PRAGMA quick_check` reads every page once (about 20 ms for 2,000 trials of 50 epochs), so a
damaged trials.db is refused when it is opened, before a trial trains, rather than met by some
read halfway through a run. Garbage in free pages is not damage: SQLite never reads them.
"""
from __future__ import annotations

import shlex
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from automl.errors import RunDirError

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+; the message before
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return "file is not a database" in str(error) or "malformed" in str(error)


def damaged(path: Path, detail: str) -> RunDirError:
    return RunDirError(f"{path} is not a readable trial database ({detail}): restore it from a backup, or rebuild it "
                       f"with `sqlite3 {shlex.quote(str(path))} .recover | sqlite3 recovered.db` and put recovered.db "
                       "in its place, or start a new run with another --out (or --overwrite to discard it)")


@contextmanager
def guarded(path: Path) -> Iterator[None]:
    """A damaged file surfaces as a RunDirError that says what to do, not a bare sqlite3 error."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        if not _is_damage(error):
            raise
        raise damaged(path, str(error)) from error


def connect(path: Path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
    except sqlite3.OperationalError as error:
        raise RunDirError(f"cannot open the trial database {path}: {error}") from error


def quick_check(db: sqlite3.Connection, path: Path) -> None:
    """Raise RunDirError naming the file unless SQLite finds every page of it sound."""
    found = [line for row in db.execute("PRAGMA quick_check(3)").fetchall() for line in row[0].splitlines()
             if not line.startswith("***")]  # "*** in database main ***" heads the list
    if found != ["ok"]:
        raise damaged(path, "integrity check: " + "; ".join(found[:3]))


def check_database(path: str | Path) -> None:
    """Refuse a damaged trial database at `path` (none there is fine), reading only: a run calls it before
    it loads its data. Raises RunDirError naming the file."""
    path = Path(path)
    if not path.exists():
        return
    db = connect(path, readonly=True)
    try:
        with guarded(path):
            quick_check(db, path)
    except sqlite3.Error as error:  # not damage as such (an I/O error...), yet no traceback either
        raise RunDirError(f"cannot read the trial database {path}: {error}") from error
    finally:
        db.close()
