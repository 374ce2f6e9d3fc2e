"""Writing run-directory files: atomically, and JSON strictly (NaN and infinity become null);
the one test of what counts as a finite number, and of what says the disk is full."""
from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any


def finite_number(value: Any) -> float | None:
    """`value` as a float when it is a real, finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, recursively (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """Strict JSON of `value` (non-finite floats as null)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space left; the user's quota is spent
_SQLITE_FULL = 13


def disk_full(error: BaseException | None) -> BaseException | None:
    """The error, of `error` and those it was raised from or while handling, that says the disk is
    full: an OSError (or anything with an `errno`, as DiskFullError) ENOSPC / EDQUOT, or SQLite's
    "database or disk is full"; None when none does."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if getattr(error, "errno", None) in FULL_ERRNOS or isinstance(error, sqlite3.Error) and (
                (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL
                or "database or disk is full" in str(error)):
            return error
        error = error.__cause__ or error.__context__
    return None


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write then rename: a reader, or a crash, never sees half a file, and a failed write
    (a full disk) leaves no temporary behind. An OSError names `path`, not the temporary."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError as error:
        if error.filename not in (None, str(tmp)):
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        tmp.unlink(missing_ok=True)
