"""Where a family class lives, so a worker can import just that class.

Discovery (automl.plugins) runs in the driver only. A worker gets a `FamilyRef` per
family it trains: an installed module and attribute (an entry point's value), or a file
of a plugins folder the user named. Nothing else is imported there: no other plugin
file, and no strategy.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from automl.families.base import Family


def import_plugin_file(path: Path) -> ModuleType:
    """Import one plugin file under a name stable per path (the same in the driver and every worker)."""
    module_name = f"automl_plugins_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


@dataclass(frozen=True)
class FamilyRef:
    """A family class by location: `module` ("automl.families.mlp") or `path` (a plugin file), and `attr`."""

    name: str
    attr: str
    module: str | None = None
    path: Path | None = None

    @classmethod
    def from_target(cls, name: str, target: str) -> "FamilyRef":
        """From an entry point's value, "package.module:Class"."""
        module, _, attr = target.partition(":")
        return cls(name, attr, module=module)

    def load(self) -> Family:
        """An instance of the family."""
        module = import_plugin_file(self.path) if self.path is not None else importlib.import_module(self.module)
        family_cls = module
        for part in self.attr.split("."):
            family_cls = getattr(family_cls, part)
        return family_cls()
