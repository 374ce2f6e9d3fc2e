"""Plugin discovery: strategies and model families, built-in or third-party, one path.

Discover, then load, then check (the way flake8 finds its plugins): installed
packages register entry points in the groups `automl.strategies` and
`automl.families` (the built-ins do too); a file in a plugins folder is imported
explicitly and each Strategy / Family subclass it defines becomes a plugin of the
same shape. Nothing is ever imported from the current directory by default. Every
failure is a PluginError that names the plugin and where it came from.
"""
from __future__ import annotations

import ast
import inspect
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel

from automl.errors import PluginError
from automl.families.base import Family
from automl.families.loading import FamilyRef, import_plugin_file
from automl.strategies.base import Strategy

log = logging.getLogger(__name__)

GROUPS = {"strategies": "automl.strategies", "families": "automl.families"}
BASES = {"strategies": Strategy, "families": Family}
SINGULAR = {"strategies": "strategy", "families": "family"}


@dataclass
class Plugin:
    kind: str  # "strategies" | "families"
    name: str
    source: str  # "entry point automl.strategies:random (automl 0.1.0)" or the file path
    _load: Callable[[], Any]
    _loaded: Any = field(default=None, repr=False)
    target: str | None = None  # an entry point's value, "package.module:Class"
    path: Path | None = None  # or the plugin file that defines it
    builtin: bool = False  # registered by automl's own distribution: tested with it, listed without loading

    def load(self) -> Any:
        """The plugin's class, imported once and checked against the protocol."""
        if self._loaded is None:
            try:
                obj = self._load()
            except Exception as error:
                raise PluginError(f"{SINGULAR[self.kind]} plugin {self.name!r} from {self.source} failed to load: "
                                  f"{type(error).__name__}: {error}") from error
            check_protocol(self, obj)
            self._loaded = obj
        return self._loaded


def check_protocol(plugin: Plugin, obj: Any) -> None:
    where = f"{SINGULAR[plugin.kind]} plugin {plugin.name!r} from {plugin.source}"
    if not inspect.isclass(obj):
        raise PluginError(f"{where} is {type(obj).__name__}, not a class")
    if plugin.kind == "strategies":
        missing = [m for m in ("ask", "tell", "should_stop") if not callable(getattr(obj, m, None))]
        if missing:
            raise PluginError(f"{where} lacks the method(s) {', '.join(missing)}; subclass automl.strategies.Strategy")
        options = getattr(obj, "Options", None)
        if not (inspect.isclass(options) and issubclass(options, BaseModel)):
            raise PluginError(f"{where}: `Options` must be a pydantic BaseModel subclass, got {options!r}")
        try:
            params = inspect.signature(obj).parameters
        except (TypeError, ValueError):
            params = {}
        needed = {"space", "seed", "max_budget", "options"}
        if params and not needed <= set(params) and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            raise PluginError(f"{where}: __init__ must accept (space, *, seed, max_budget, options); "
                              f"it accepts ({', '.join(params)})")
    else:
        missing = [m for m in ("suits", "space", "build") if not callable(getattr(obj, m, None))]
        if missing:
            raise PluginError(f"{where} lacks the method(s) {', '.join(missing)}; subclass automl.families.Family")
    if getattr(obj, "name", None) != plugin.name:
        raise PluginError(f"{where}: its class attribute `name` is {getattr(obj, 'name', None)!r}, "
                          f"but it is registered as {plugin.name!r}")


class Registry:
    """Every known strategy and family by name; refuses a name given twice."""

    def __init__(self) -> None:
        self.plugins: dict[str, dict[str, Plugin]] = {kind: {} for kind in GROUPS}

    def add(self, plugin: Plugin) -> None:
        if plugin.kind == "strategies" and plugin.name == "auto":  # the spec's name for the agent's own choice
            raise PluginError(f"a strategy from {plugin.source} is named 'auto', which is reserved for the agent's "
                              "own choice of strategy; rename it")
        existing = self.plugins[plugin.kind].get(plugin.name)
        if existing is not None:
            raise PluginError(f"two {plugin.kind} are named {plugin.name!r}: one from {existing.source}, "
                              f"one from {plugin.source}; rename or remove one of them")
        self.plugins[plugin.kind][plugin.name] = plugin

    def names(self, kind: str) -> list[str]:
        return sorted(self.plugins[kind])

    def get(self, kind: str, name: str) -> Plugin:
        try:
            return self.plugins[kind][name]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"no {SINGULAR[kind]} named {name!r}; known: {known}") from None

    def strategy(self, name: str) -> type[Strategy]:
        return self.get("strategies", name).load()

    def family(self, name: str) -> Family:
        return self.get("families", name).load()()

    def family_ref(self, name: str) -> FamilyRef:
        """Where family `name` lives, for a worker to import that class alone."""
        plugin = self.get("families", name)
        cls = plugin.load()  # checked here, in the driver, so a broken plugin fails before any worker starts
        if plugin.path is not None:
            return FamilyRef(name, cls.__qualname__, path=plugin.path)
        if plugin.target:
            return FamilyRef.from_target(name, plugin.target)
        return FamilyRef(name, cls.__qualname__, module=cls.__module__)

    def all(self) -> list[Plugin]:
        return [p for kind in GROUPS for p in sorted(self.plugins[kind].values(), key=lambda p: p.name)]


def _entry_point_plugins() -> list[Plugin]:
    found = []
    for kind, group in GROUPS.items():
        seen: set[tuple[str, str]] = set()
        for ep in entry_points(group=group):
            dist = f"{ep.dist.name} {ep.dist.version}" if getattr(ep, "dist", None) else "unknown package"
            if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            found.append(Plugin(kind, ep.name, f"entry point {group}:{ep.name} = {ep.value} ({dist})", ep.load,
                                target=ep.value, builtin=_is_automl_own(ep)))
    return found


def _is_automl_own(ep) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name == "automl" and ep.value.startswith("automl.")


def _import_file(path: Path):
    try:
        return import_plugin_file(path)
    except Exception as error:
        raise PluginError(f"plugin file {path} failed to import: {type(error).__name__}: {error}") from error


def plugin_files(folder: Path) -> list[Path]:
    """The files of a plugins folder that discovery imports, in the order it imports them."""
    if not folder.is_dir():
        raise PluginError(f"plugins folder {folder} does not exist or is not a folder")
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def declared_names(path: Path) -> set[str]:
    """The `name = "..."` of each top-level class in a plugin file, read from its syntax tree:
    what the file would provide, found without running any of it."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return set()
    return {statement.value.value for node in tree.body if isinstance(node, ast.ClassDef)
            for statement in node.body if isinstance(statement, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "name" for t in statement.targets)
            and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)}


def _file_plugins(folder: Path) -> list[Plugin]:
    found = []
    for path in plugin_files(folder):
        log.info("importing plugin file %s", path)  # code runs: say whose, before it does
        module = _import_file(path)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ != module.__name__:
                continue  # imported into the file, not defined by it
            for kind, base in BASES.items():
                if issubclass(obj, base) and obj is not base and getattr(obj, "name", ""):
                    found.append(Plugin(kind, obj.name, str(path), (lambda o=obj: o), path=path))
    return found


def discover(plugin_dirs=()) -> Registry:
    registry = Registry()
    for plugin in _entry_point_plugins():
        registry.add(plugin)
    for folder in plugin_dirs:
        for plugin in _file_plugins(Path(folder)):
            registry.add(plugin)
    return registry
