"""Plugin discovery: entry points, plugin folders, and the errors a plugin author meets."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from automl.errors import PluginError
from automl.families.base import Family
from automl.plugins import Plugin, check_protocol, discover
from automl.space import Choice, Float, SearchSpace
from automl.strategies.base import Strategy, Suggestion
from automl.strategies.random import RandomStrategy

SPACE = SearchSpace((Choice("family", ("mlp",)), Float("lr", 1e-4, 1e-1, log=True)))
BUILTIN_STRATEGIES = ("asha", "bayesian", "evolutionary", "grid", "hyperband", "random", "tpe")


BUILTIN_FAMILIES = ("cnn", "cnn1d", "embedding_bag", "fcn", "mlp", "resmlp", "resnet", "rnn", "rocket",
                    "transformer")


def with_builtins(names: list[str]) -> list[str]:
    """What discovery lists: the built-in strategies plus the test's own."""
    return sorted(set(BUILTIN_STRATEGIES) | set(names))


def families_with_builtins(names: list[str]) -> list[str]:
    return sorted(set(BUILTIN_FAMILIES) | set(names))

GOOD_STRATEGY = '''
from pydantic import BaseModel

from automl.strategies import Strategy, Suggestion
from automl.strategies.random import RandomStrategy   # imported, not defined here: must not register again
from automl.families.mlp import MLPFamily             # same for a family


class Helper:                                         # not a plugin at all
    name = "helper"


class FirstPoint(Strategy):
    """Suggests the middle of the space, then the same point again with a new id."""

    name = "middle"

    class Options(BaseModel):
        label: str = "t"

    def __init__(self, space, *, seed, max_budget, options=None):
        super().__init__(space, seed=seed, max_budget=max_budget, options=options)
        self.count = 0
        self.told = []

    def ask(self):
        self.count += 1
        return Suggestion(f"{self.options.label}{self.count}", self.space.from_unit({}), budget=self.max_budget)

    def tell(self, observation):
        self.told.append(observation)
'''


def write(folder: Path, name: str, code: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return path


def strategy_code(name: str, body: str = "", options: str = "") -> str:
    """A minimal Strategy subclass source named `name`."""
    return (
        "from automl.strategies import Strategy, Suggestion\n\n"
        f"class S_{name.replace('-', '_')}(Strategy):\n"
        f"    name = {name!r}\n"
        f"{options}"
        "    def ask(self):\n"
        "        return Suggestion('0', {})\n"
        "    def tell(self, observation):\n"
        "        pass\n"
        f"{body}"
    )


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    """Install a throw-away distribution with entry points by putting a dist-info folder on sys.path."""
    created: list[str] = []

    def install(module_code: str, entry_points: dict[str, dict[str, str]], dist: str = "automl-test-plugin"):
        site = tmp_path / "site"
        module = f"automl_test_plugin_{abs(hash(str(tmp_path))) % 10**8}"
        write(site, f"{module}.py", module_code)
        info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = []
        for group, items in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {module}:{attr}" for name, attr in items.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        created.append(module)
        return module

    yield install
    for module in created:
        sys.modules.pop(module, None)


# --- built-ins ------------------------------------------------------------------------

def test_builtins_are_discovered_through_their_entry_points():
    registry = discover()
    assert registry.names("strategies") == with_builtins(["random"])
    assert registry.names("families") == families_with_builtins([])
    for plugin in registry.all():
        assert plugin.source.startswith(f"entry point automl.{plugin.kind}:{plugin.name} = ")
        assert "(automl " in plugin.source  # names the distribution that provides it
    assert registry.strategy("random") is RandomStrategy
    assert registry.family("mlp").name == "mlp"
    assert registry.family("cnn").name == "cnn"


def test_builtin_random_strategy_asks_reproducible_suggestions():
    strategy = discover().strategy("random")(SPACE, seed=3, max_budget=5)
    again = discover().strategy("random")(SPACE, seed=3, max_budget=5)
    first = [strategy.ask() for _ in range(3)]
    assert first == [again.ask() for _ in range(3)]
    assert [s.trial_id for s in first] == ["0000", "0001", "0002"]
    assert all(SPACE.problems(s.config) == [] and s.budget == 5 for s in first)


# --- plugin folders ------------------------------------------------------------------------

def test_a_plugin_file_strategy_is_discovered_and_usable(tmp_path, caplog):
    from automl.plugins import declared_names

    path = write(tmp_path / "plugins", "middle.py", GOOD_STRATEGY)
    assert "middle" in declared_names(path)  # read off the syntax tree, before any import
    with caplog.at_level("INFO", logger="automl.plugins"):
        registry = discover([tmp_path / "plugins"])
    assert f"importing plugin file {path}" in caplog.text  # named before its code runs
    assert registry.names("strategies") == with_builtins(["middle", "random"])
    assert registry.names("families") == families_with_builtins([])  # the imported MLPFamily is not a second "mlp"
    plugin = registry.get("strategies", "middle")
    assert plugin.source == str(path)

    cls = registry.strategy("middle")
    assert issubclass(cls, Strategy)
    strategy = cls(SPACE, seed=0, max_budget=4, options=cls.Options(label="x"))
    suggestion = strategy.ask()
    assert isinstance(suggestion, Suggestion)
    assert suggestion.trial_id == "x1"
    assert suggestion.budget == 4
    assert SPACE.problems(suggestion.config) == []
    assert strategy.ask().trial_id == "x2"
    assert registry.strategy("middle") is cls  # loaded once


def test_a_plugin_file_family_is_discovered_and_usable(tmp_path):
    write(tmp_path / "plugins", "linear.py", '''
        from torch import nn
        from automl.families import Family
        from automl.space import Int

        class Linear(Family):
            name = "linear"
            modalities = ("tabular",)

            def space(self, profile):
                return [Int("unused", 1, 2)]

            def build(self, config, profile):
                return nn.Linear(profile.input_shape[0], 1)
    ''')
    registry = discover([str(tmp_path / "plugins")])  # a str folder works too
    assert registry.names("families") == families_with_builtins(["linear"])
    family = registry.family("linear")
    assert isinstance(family, Family)
    assert [p.name for p in family.space(None)] == ["unused"]


def test_several_plugin_folders_are_all_read(tmp_path):
    write(tmp_path / "one", "a.py", strategy_code("alpha"))
    write(tmp_path / "two", "b.py", strategy_code("beta"))
    registry = discover([tmp_path / "one", tmp_path / "two"])
    assert registry.names("strategies") == with_builtins(["alpha", "beta", "random"])


def test_a_plugin_file_that_fails_to_import_names_the_file(tmp_path):
    path = write(tmp_path / "plugins", "broken.py", "import math\nraise RuntimeError('boom at import')\n")
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "plugins"])
    message = str(info.value)
    assert str(path) in message
    assert "boom at import" in message and "RuntimeError" in message


def test_a_plugin_file_with_a_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path / "plugins", "typo.py", "def oops(:\n    pass\n")
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "plugins"])
    assert str(path) in str(info.value)
    assert "SyntaxError" in str(info.value)


def test_two_plugin_files_with_the_same_name_name_both_sources(tmp_path):
    first = write(tmp_path / "plugins", "a_first.py", strategy_code("twin"))
    second = write(tmp_path / "plugins", "b_second.py", strategy_code("twin"))
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "plugins"])
    message = str(info.value)
    assert "'twin'" in message
    assert str(first) in message and str(second) in message


def test_a_plugin_file_reusing_a_builtin_name_names_both_sources(tmp_path):
    path = write(tmp_path / "plugins", "mine.py", strategy_code("random"))
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "plugins"])
    message = str(info.value)
    assert "'random'" in message
    assert "entry point automl.strategies:random" in message
    assert str(path) in message


def test_options_that_are_not_a_pydantic_model_fail_on_load_naming_the_plugin(tmp_path):
    path = write(tmp_path / "plugins", "badopts.py", strategy_code("badopts", options="    Options = dict\n"))
    registry = discover([tmp_path / "plugins"])  # discovery is lazy: nothing is checked yet
    with pytest.raises(PluginError) as info:
        registry.strategy("badopts")
    message = str(info.value)
    assert "'badopts'" in message and str(path) in message
    assert "Options" in message and "pydantic" in message


def test_a_dataclass_options_is_rejected_too(tmp_path):
    options = ("    from dataclasses import dataclass as _dc\n"
               "    @_dc\n"
               "    class Options:\n"
               "        x: int = 1\n")
    write(tmp_path / "plugins", "dcopts.py", strategy_code("dcopts", options=options))
    with pytest.raises(PluginError, match="Options"):
        discover([tmp_path / "plugins"]).strategy("dcopts")


def test_a_strategy_whose_init_cannot_take_the_standard_arguments_is_rejected(tmp_path):
    body = "    def __init__(self, space):\n        self.space = space\n"
    path = write(tmp_path / "plugins", "narrow.py", strategy_code("narrow", body=body))
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "plugins"]).strategy("narrow")
    assert "'narrow'" in str(info.value) and str(path) in str(info.value)
    assert "__init__" in str(info.value)


def test_a_missing_plugins_folder_is_an_error(tmp_path):
    with pytest.raises(PluginError) as info:
        discover([tmp_path / "nowhere"])
    assert str(tmp_path / "nowhere") in str(info.value)


def test_a_file_given_as_plugins_folder_is_an_error(tmp_path):
    path = write(tmp_path, "single.py", strategy_code("single"))
    with pytest.raises(PluginError):
        discover([path])


def test_unknown_names_are_errors_listing_the_known_ones(tmp_path):
    write(tmp_path / "plugins", "middle.py", GOOD_STRATEGY)
    registry = discover([tmp_path / "plugins"])
    with pytest.raises(PluginError) as info:
        registry.strategy("bayes")
    message = str(info.value)
    assert "'bayes'" in message
    assert "middle" in message and "random" in message
    with pytest.raises(PluginError) as info:
        registry.family("xgboost")
    assert "'xgboost'" in str(info.value) and "cnn" in str(info.value) and "mlp" in str(info.value)


def test_files_starting_with_underscore_are_skipped(tmp_path):
    # would fail if imported, and defines a strategy that must not appear
    write(tmp_path / "plugins", "_private.py", strategy_code("hidden") + "raise RuntimeError('must not import')\n")
    write(tmp_path / "plugins", "__init__.py", "raise RuntimeError('must not import')\n")
    write(tmp_path / "plugins", "visible.py", strategy_code("visible"))
    write(tmp_path / "plugins", "notes.txt", "not python")
    registry = discover([tmp_path / "plugins"])
    assert registry.names("strategies") == with_builtins(["random", "visible"])


def test_classes_imported_into_a_plugin_file_are_not_registered_again(tmp_path):
    write(tmp_path / "plugins", "reexport.py", '''
        from automl.strategies import Strategy
        from automl.strategies.random import RandomStrategy
        from automl.families import Family
        from automl.families.mlp import MLPFamily
        from automl.families.cnn import CNNFamily
    ''')
    registry = discover([tmp_path / "plugins"])  # would raise "two ... named 'random'" otherwise
    assert registry.names("strategies") == with_builtins(["random"])
    assert registry.names("families") == families_with_builtins([])
    assert all(p.source.startswith("entry point") for p in registry.all())


def test_a_base_class_without_a_name_is_not_a_plugin(tmp_path):
    write(tmp_path / "plugins", "layered.py", strategy_code("concrete").replace(
        "class S_concrete(Strategy):", "class Abstract(Strategy):\n    pass\n\nclass S_concrete(Abstract):"))
    registry = discover([tmp_path / "plugins"])
    assert registry.names("strategies") == with_builtins(["concrete", "random"])


def test_discovering_the_same_folder_twice_gives_independent_registries(tmp_path):
    write(tmp_path / "plugins", "middle.py", GOOD_STRATEGY)
    first = discover([tmp_path / "plugins"])
    second = discover([tmp_path / "plugins"])
    assert first.names("strategies") == second.names("strategies") == with_builtins(["middle", "random"])


# --- entry points of third-party packages --------------------------------------------------

def test_an_entry_point_strategy_missing_ask_fails_on_load_naming_the_plugin(fake_dist):
    module = fake_dist('''
        class NoAsk:
            name = "noask"
            def tell(self, observation):
                pass
    ''', {"automl.strategies": {"noask": "NoAsk"}})
    registry = discover()
    assert registry.names("strategies") == with_builtins(["noask", "random"])
    plugin = registry.get("strategies", "noask")
    assert plugin.source.startswith("entry point automl.strategies:noask")
    assert "automl-test-plugin 0.1" in plugin.source
    with pytest.raises(PluginError) as info:
        registry.strategy("noask")
    message = str(info.value)
    assert "'noask'" in message and f"{module}:NoAsk" in message
    assert "ask" in message and "Strategy" in message


def test_an_entry_point_that_fails_to_import_names_the_plugin(fake_dist):
    fake_dist("raise ImportError('needs a missing dependency')\n", {"automl.families": {"fancy": "Fancy"}})
    registry = discover()
    with pytest.raises(PluginError) as info:
        registry.family("fancy")
    message = str(info.value)
    assert "'fancy'" in message and "entry point automl.families:fancy" in message
    assert "needs a missing dependency" in message


def test_an_entry_point_whose_class_name_differs_from_its_registered_name_is_rejected(fake_dist):
    fake_dist("from automl.strategies.random import RandomStrategy\n",
              {"automl.strategies": {"alias": "RandomStrategy"}})
    with pytest.raises(PluginError) as info:
        discover().strategy("alias")
    assert "'alias'" in str(info.value) and "'random'" in str(info.value)


def test_an_entry_point_reusing_a_builtin_name_names_both_sources(fake_dist):
    fake_dist(strategy_code("random"), {"automl.strategies": {"random": "S_random"}})
    with pytest.raises(PluginError) as info:
        discover()
    message = str(info.value)
    assert "(automl 0.1.0)" in message and "(automl-test-plugin 0.1)" in message


def test_check_protocol_rejects_non_classes_and_families_missing_methods():
    plugin = Plugin("strategies", "thing", "somewhere.py", lambda: RandomStrategy())
    with pytest.raises(PluginError, match="not a class"):
        check_protocol(plugin, RandomStrategy(SPACE, seed=0, max_budget=1))

    class HalfFamily:
        name = "half"

        def suits(self, profile):
            return True, ""

    family_plugin = Plugin("families", "half", "half.py", lambda: HalfFamily)
    with pytest.raises(PluginError) as info:
        family_plugin.load()
    assert "'half'" in str(info.value) and "half.py" in str(info.value)
    assert "space" in str(info.value) and "build" in str(info.value)


def test_a_plugin_that_raises_on_load_is_reported_with_its_source():
    def explode():
        raise ValueError("bad config")

    plugin = Plugin("strategies", "exploding", "entry point x", explode)
    with pytest.raises(PluginError) as info:
        plugin.load()
    assert "'exploding'" in str(info.value) and "entry point x" in str(info.value)
    assert "bad config" in str(info.value)


def test_random_strategy_suggestions_stay_in_a_builtin_space():
    space = SearchSpace((Choice("family", ("a", "b")), Float("x", 0.0, 1.0)))
    strategy = RandomStrategy(space, seed=1, max_budget=2)
    xs = [strategy.ask().config["x"] for _ in range(20)]
    assert len(set(xs)) == 20
    assert np.all((np.array(xs) >= 0) & (np.array(xs) <= 1))
