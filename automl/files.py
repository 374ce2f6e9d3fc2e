"""Writing run-directory files: atomically, and JSON strictly (NaN and infinity become null);
and the one test of what counts as a finite number."""
from __future__ import annotations

import json
import math
import os
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


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write then rename: a reader, or a crash, never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
