"""Every problem of a spec document in one pass, each as (JSON path, what to do).

pydantic skips a model's cross-field checks (its `mode="after"` validators) while any of
its fields is wrong, so `all_problems` runs them again on the fields that are valid. The
spec file is decoded here too: bytes that are not UTF-8, a key given twice, NaN/Infinity
and absurd nesting are problems with a place, never tracebacks.
"""
from __future__ import annotations

import json
import types
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import (
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
)

from automl.errors import SpecError

Problem = tuple[str, str]
MAX_DEPTH = 64  # a spec nests a handful of levels; deeper is a generated or broken file


class FieldProblems(ValueError):
    """Raised by a cross-field check: each problem names the field (relative to its model) to change."""

    def __init__(self, *problems: Problem):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


# --- reading the file --------------------------------------------------------------------------

class _NonFinite:
    """NaN / Infinity: Python's json reads them, JSON has no such numbers."""

    def __init__(self, text: str):
        self.text = text


def read_spec(path: str | Path) -> tuple[dict[str, Any], list[Problem]]:
    """The spec file's JSON object and the problems found decoding it (a key given twice,
    NaN/Infinity); SpecError for a file that is no JSON object at all (missing, not UTF-8,
    not JSON, nested absurdly deep)."""
    path = Path(path)

    def fail(message: str):
        raise SpecError([("", message)], str(path))

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        fail(f"spec file {path} does not exist")
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror}")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")  # the byte-order mark some editors write
    except UnicodeDecodeError as error:
        fail(f"not UTF-8 text: byte 0x{data[error.start]:02x} at byte offset {error.start} cannot be decoded; "
             "save the file as UTF-8")
    repeated: list[tuple[dict, str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in items:
            if key in obj:
                repeated.append((obj, key))
            obj[key] = value
        return obj

    try:
        raw = json.loads(text, object_pairs_hook=pairs, parse_constant=_NonFinite)
    except json.JSONDecodeError as error:
        fail(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}")
    except RecursionError:
        fail(f"nested too deeply to read; a spec nests a few levels, at most {MAX_DEPTH}")
    if not isinstance(raw, dict):
        fail("the spec must be a JSON object")
    return raw, _document_problems(raw, repeated, str(path))


def _document_problems(raw: Any, repeated: list[tuple[dict, str]], source: str) -> list[Problem]:
    paths: dict[int, str] = {}
    problems: list[Problem] = []
    stack = [(raw, "", 0)]
    while stack:  # iterative: a deep document must not exhaust Python's stack here either
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            shown = path if len(path) <= 60 else f"{path[:60]}..."
            raise SpecError([(shown, f"nested more than {MAX_DEPTH} levels deep; a spec nests a few")], source)
        if isinstance(value, dict):
            paths[id(value)] = path
            items = [(key, f"{path}.{key}" if path else str(key)) for key in value]
        elif isinstance(value, list):
            items = [(i, f"{path}[{i}]") for i in range(len(value))]
        else:
            continue
        for key, child_path in items:
            child = value[key]
            if isinstance(child, _NonFinite):
                problems.append((child_path, f"{child.text} is not a JSON number; give a finite number"))
                value[key] = float("nan")
            else:
                stack.append((child, child_path, depth + 1))
    for obj, key in dict.fromkeys((id(o), k) for o, k in repeated):
        where = paths[obj]
        problems.append((f"{where}.{key}" if where else key,
                         "given more than once; JSON would silently keep only the last, so keep one"))
    return sorted(problems)


# --- JSON kinds: true/false are no numbers, numbers and strings no booleans ---------------------

def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _fit(annotation: Any, value: Any) -> str | None:
    """'' where `annotation` takes `value` as it is; a message where pydantic's lax mode would
    quietly convert it (true -> 1, 1 -> true, "5" -> 5); None where pydantic judges it itself."""
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if annotation is Any:
        return ""
    if origin in (Union, types.UnionType):
        fits = [_fit(member, value) for member in get_args(annotation)]
        return "" if "" in fits else next((f for f in fits if f), None)
    if origin in (tuple, list) and isinstance(value, (list, tuple)):
        args = [a for a in get_args(annotation) if a is not Ellipsis] or [Any]
        return next((m for i, item in enumerate(value) if (m := _fit(args[min(i, len(args) - 1)], item))), "")
    if origin is dict and isinstance(value, dict):
        return next((m for item in value.values() if (m := _fit(get_args(annotation)[1], item))), "")
    kind = _kind(value)
    if annotation is bool:
        return "" if kind == "bool" else (f"{json.dumps(value)} is not a boolean; give true or false"
                                          if kind in ("number", "string") else None)
    if annotation in (int, float):
        if kind == "bool":
            return f"{json.dumps(value)} is a boolean, not a number; give a number"
        if kind == "string":
            return f"{json.dumps(value)} is a string; give a number without quotes"
        return "" if kind == "number" else None
    if annotation is type(None):
        return "" if value is None else None
    if origin is Literal:
        return "" if any(value == a and type(value) is type(a) for a in get_args(annotation)) else None
    return "" if annotation in (str, Path) and kind == "string" else None


class SpecModel(BaseModel):
    """A part of the spec: an unknown key is an error, not an ignored typo; frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _kind_problems(model: type[BaseModel], raw: Any, loc: tuple) -> list[tuple[tuple, str]]:
    """Checked before pydantic, which in lax mode reads true as 1 and "5" as 5 (a field validator
    cannot do it: pydantic refuses one on a union's tag). An integral number (5.0) is a valid int."""
    if not isinstance(raw, dict):
        return []
    found = []
    for name, info in model.model_fields.items():
        if name in raw:
            problem = _fit(info.annotation, raw[name])
            if problem:
                found.append((loc + (name,), problem))
            for inner, value, inner_loc in _submodels(info, raw[name], loc + (name,)):
                found += _kind_problems(inner, value, inner_loc)
    return found


# --- pydantic's errors as (path, message) -------------------------------------------------------

def _unwrap(annotation: Any) -> Any:
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        members = [m for m in get_args(annotation) if m is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _member(annotation: Any, discriminator: str | None, tag: Any) -> type[BaseModel] | None:
    """The model of a discriminated union whose tag is `tag`."""
    if discriminator is None or get_origin(annotation) not in (Union, types.UnionType):
        return None
    for member in get_args(annotation):
        field = member.model_fields.get(discriminator) if _is_model(member) else None
        if field is not None and get_origin(_strip(field.annotation)) is Literal and tag in get_args(field.annotation):
            return member
    return None


def _steps(model: type[BaseModel] | None, loc: tuple) -> tuple[str, Any]:
    """The path the user wrote for pydantic's `loc` (without the union tags pydantic adds) and the
    FieldInfo its last item names, if any."""
    annotation, discriminator, info, path = model, None, None, ""
    for item in loc:
        annotation, info = _unwrap(annotation), None
        member = _member(annotation, discriminator, item)
        if member is not None:  # pydantic's tag of a discriminated union: not a key in the document
            annotation, discriminator = member, None
            continue
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
        if _is_model(annotation) and isinstance(item, str) and item in annotation.model_fields:
            info = annotation.model_fields[item]
            annotation, discriminator = info.annotation, info.discriminator
        elif get_origin(annotation) is dict:
            annotation, discriminator = get_args(annotation)[1], None
        elif get_origin(annotation) in (tuple, list):
            args = [a for a in get_args(annotation) if a is not Ellipsis] or [Any]
            annotation = args[min(item, len(args) - 1)] if isinstance(item, int) else Any
            discriminator = None
        else:
            annotation, discriminator = Any, None
    return path, info


def _range(info: Any) -> str | None:
    bounds = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in getattr(info, "metadata", ())
              if isinstance(m, (annotated_types.Gt, annotated_types.Ge, annotated_types.Lt, annotated_types.Le))}
    low = f"more than {bounds['Gt']}" if "Gt" in bounds else (f"at least {bounds['Ge']}" if "Ge" in bounds else "")
    high = f"less than {bounds['Lt']}" if "Lt" in bounds else (f"at most {bounds['Le']}" if "Le" in bounds else "")
    if "Ge" in bounds and "Le" in bounds:
        return f"from {bounds['Ge']} to {bounds['Le']}"
    return " and ".join(part for part in (low, high) if part) or None


def _shown(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing_size")


def _problems_of(item: dict, model: type[BaseModel] | None) -> list[Problem]:
    loc, kind, ctx = tuple(item["loc"]), item["type"], item.get("ctx") or {}
    path, info = _steps(model, loc)
    error = ctx.get("error")
    if isinstance(error, FieldProblems):
        return [(f"{path}.{field}" if path else field, message) for field, message in error.problems]
    message = item["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown field; check its spelling (see `automl schema` for allowed fields)"
    elif kind == "missing":
        message = "required field is missing"
    elif kind in ("union_tag_not_found", "union_tag_invalid"):
        key = str(ctx.get("discriminator", "")).strip("'")
        path = f"{path}.{key}" if path else key
        allowed = ", ".join(tag.strip().strip("'") for tag in str(ctx.get("expected_tags", "")).split(",") if tag.strip())
        if kind == "union_tag_not_found":
            allowed = allowed or ", ".join(_tags(model, loc, key))
            message = f"required; one of {allowed}"
        else:
            message = f"unknown {key} {_shown(ctx.get('tag'))}; one of {allowed}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"must be a JSON object, not {_shown(item.get('input'))}"
    elif kind in RANGE_ERRORS and _range(info):
        message = f"{_shown(item.get('input'))} is out of range; allowed: {_range(info)}"
    return [(path, message)]


def _tags(model: type[BaseModel] | None, loc: tuple, key: str) -> list[str]:
    _, info = _steps(model, loc)
    members = get_args(_strip(info.annotation)) if info is not None else ()
    return [str(tag) for m in members if _is_model(m) and key in m.model_fields
            for tag in get_args(m.model_fields[key].annotation)]


def problems_from_validation_error(error: ValidationError, model: type[BaseModel] | None = None) -> list[Problem]:
    """(path, message) for each of pydantic's errors; `model` (the validated class) adds the allowed
    range to a number out of it and drops the union tags from the paths."""
    return list(dict.fromkeys(p for item in error.errors() for p in _problems_of(item, model)))


# --- cross-field checks on the valid part of an invalid document --------------------------------

class _Unusable(Exception):
    pass


class _Invalid:
    """Stands for a field that is itself wrong: a check that looks at it is skipped."""

    def _refuse(self, *args: Any) -> Any:
        raise _Unusable()

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __len__ = __iter__ = __contains__ = _refuse
    __hash__ = __getattr__ = __getitem__ = _refuse


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter:
    info = model.model_fields[name]
    return TypeAdapter(Annotated[info.annotation, info])


def _model_checks(model: type[BaseModel], raw: Any, loc: tuple, failed: list[tuple]) -> list[tuple[tuple, Any]]:
    if not isinstance(raw, dict):
        return []
    found: list[tuple[tuple, Any]] = []
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        here = loc + (name,)
        if any(f[:len(here)] == here for f in failed):
            values[name] = _Invalid()
            if name in raw:
                found += _nested_checks(info, raw[name], here, failed)
        elif name in raw:
            try:
                values[name] = _adapter(model, name).validate_python(raw[name])
            except ValidationError:
                values[name] = _Invalid()
    instance = model.model_construct(**values)
    for decorator in model.__pydantic_decorators__.model_validators.values():
        if decorator.info.mode != "after":
            continue
        try:
            decorator.func(instance)
        except FieldProblems as error:
            found += [(loc + tuple(field.split(".")), message) for field, message in error.problems]
        except (ValueError, AssertionError) as error:
            found.append((loc, str(error)))
        except (_Unusable, TypeError, LookupError, AttributeError):
            continue  # the check needs a field that is itself wrong: it runs once that is fixed
    return found


def kind_problems(model: type[BaseModel], raw: Any) -> list[Problem]:
    """(path, message) for each value pydantic's lax mode would read as another JSON kind."""
    return [(_steps(model, loc)[0], message) for loc, message in _kind_problems(model, raw, ())]


def _submodels(info: Any, value: Any, loc: tuple) -> list[tuple[type[BaseModel], Any, tuple]]:
    """The models inside a field's value, each with its raw value and pydantic's loc."""
    annotation = _unwrap(info.annotation)
    if _is_model(annotation):
        return [(annotation, value, loc)]
    member = _member(annotation, info.discriminator, value.get(info.discriminator) if isinstance(value, dict) else None)
    if member is not None:
        return [(member, value, loc + (value[info.discriminator],))]
    if get_origin(annotation) is dict and isinstance(value, dict) and _is_model(_unwrap(get_args(annotation)[1])):
        return [(_unwrap(get_args(annotation)[1]), item, loc + (key,)) for key, item in value.items()]
    return []


def _nested_checks(info: Any, value: Any, loc: tuple, failed: list[tuple]) -> list[tuple[tuple, Any]]:
    return [p for inner, raw, inner_loc in _submodels(info, value, loc) for p in _model_checks(inner, raw, inner_loc, failed)]


def validate_all(model: type[BaseModel], raw: Any) -> tuple[BaseModel | None, list[Problem]]:
    """The validated model, or None and every problem: the JSON kinds', pydantic's, then those of
    the cross-field checks pydantic skipped."""
    kinds = _kind_problems(model, raw, ())
    try:
        instance, errors = model.model_validate(raw), []
    except ValidationError as error:
        instance, errors = None, error.errors()
    if not kinds and not errors:
        return instance, []
    problems = [(_steps(model, loc)[0], message) for loc, message in kinds]
    given = {path for path, _ in problems}  # true -> 1 may fail a bound too: the kind is what to fix
    problems += [p for item in errors for p in _problems_of(item, model) if p[0] not in given]
    failed = [loc for loc, _ in kinds] + [tuple(item["loc"]) for item in errors]
    problems += [(_steps(model, loc)[0], message) for loc, message in _model_checks(model, raw, (), failed)]
    return None, list(dict.fromkeys(problems))

