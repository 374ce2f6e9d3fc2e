"""Values as the report's text: numbers, durations, times, search-space parameters."""
from __future__ import annotations

import datetime as dt
from typing import Any

from automl.reporting.results import finite

MAX_ITEMS = 20  # of a list or dict shown in one cell; the rest is counted


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, dict):
        items = list(value.items())
        return ", ".join(f"{k}: {format_value(v)}" for k, v in items[:MAX_ITEMS]) + _more(len(items))
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value[:MAX_ITEMS]) + _more(len(value))
    return str(value)


def _more(n: int) -> str:
    return f", … ({n - MAX_ITEMS} more)" if n > MAX_ITEMS else ""


def format_duration(seconds: float | None) -> str:
    if not finite(seconds):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def format_time(timestamp: float | None) -> str:
    if not finite(timestamp):
        return "—"
    return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(sep=" ", timespec="seconds")


def format_param(param: dict[str, Any]) -> tuple[str, str, str]:
    """A search-space parameter as (name, range, active when)."""
    if "choices" in param:
        values = format_value(param["choices"])
    else:
        values = f"[{format_value(param.get('low'))}, {format_value(param.get('high'))}]"
        if param.get("log"):
            values += " log"
        if param.get("step"):
            values += f" step {format_value(param['step'])}"
    return str(param.get("name")), f"{param.get('type', '')} {values}".strip(), _condition(param.get("condition"))


def _condition(condition: Any) -> str:
    if not isinstance(condition, dict):
        return ""
    allowed = list(condition.get("values") or [])
    if len(allowed) == 1:
        return f"{condition.get('parent')} = {format_value(allowed[0])}"
    return f"{condition.get('parent')} in {{{format_value(allowed)}}}"
