"""Every hook is documented with an example that works. README.md holds, per hook, either
- a plugin module and a block that uses it (parts, commands, pages): the plugin block is executed
  as a module, registered with `diffsde.register_plugin`, must implement its hook and add what the
  hook adds (a part, a dashboard page, a subcommand); the usage block then runs against it; or
- a `# try it: ENTRY_POINT` block (the component kinds), which uses the example plugin of
  `examples/` installed under that entry point: the entry point must exist in the group
  `diffsde`, its module must implement the hook, the registry must hold a component of that kind
  from it, and the block must run (its own assertions check the behaviour).

Mutation: doubling CosineVP's σ_t in examples/diffsde_examples/sde.py, or registering the page
under another title, makes the matching case fail; deleting a hook's example, or naming an entry
point that is not installed, fails the coverage test.
"""

import argparse
import importlib.metadata
import inspect
import pathlib
import re
import types

import pytest

import diffsde
import diffsde.cli
from diffsde import _plugins, hookspecs

DOC = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
TRY_INSTALLED = "# try it: "


def _blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def _examples() -> dict[str, tuple[str, str]]:
    """hook -> (plugin source, usage source) for the plugins written out in the README."""
    blocks = _blocks()
    out = {}
    for i, block in enumerate(blocks):
        first = block.splitlines()[0]
        if first.startswith("# plugin: "):
            usage = blocks[i + 1]
            assert usage.startswith("# try it"), f"{first}: the next block must be `# try it`"
            out[first.removeprefix("# plugin: ").strip()] = (block, usage)
    return out


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=_plugins.ENTRY_POINT_GROUP)}


def _installed_examples() -> dict[str, str]:
    """entry point name -> usage source, for the `# try it: NAME` blocks."""
    out = {}
    for block in _blocks():
        first = block.splitlines()[0]
        if first.startswith(TRY_INSTALLED):
            out[first.removeprefix(TRY_INSTALLED).strip()] = block
    return out


def _hooks_of(ep: importlib.metadata.EntryPoint) -> list[str]:
    module = ep.load()
    return [h for h in HOOKS if callable(getattr(module, h, None))]


HOOKS = sorted(
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")
)


def test_every_hook_has_an_example():
    eps = _entry_points()
    missing = [n for n in _installed_examples() if n not in eps]
    assert not missing, f"no installed entry point {missing}: `pip install -e examples`"
    documented = set(_examples())
    for name in _installed_examples():
        hooks = _hooks_of(eps[name])
        assert len(hooks) == 1, f"entry point {name} implements {hooks}, not one hook"
        documented |= set(hooks)
    assert sorted(documented) == HOOKS
    for hook in HOOKS:
        assert getattr(hookspecs, hook).__doc__, f"{hook} has no docstring"


def _added(hook: str, registry, plugin: str) -> bool:
    """Whether the plugin ``plugin`` added what ``hook`` adds."""
    kinds = {v: k for k, v in _plugins.HOOKS.items()}
    if hook in kinds:
        return any(c.plugin == plugin for c in registry.components[kinds[hook]].values())
    if hook == _plugins.PART_HOOK:
        return any(p == plugin for table in registry.parts.values() for _, p, _ in table.values())
    if hook == "register_pages":
        return any(p.plugin == plugin for p in registry.pages)
    raise AssertionError(f"no check for {hook}")


@pytest.mark.parametrize("hook", sorted(_examples()))
def test_example_plugin_works(hook):
    plugin_source, usage = _examples()[hook]
    module = types.ModuleType(f"docs_example_{hook}")
    exec(compile(plugin_source, f"README.md ({hook})", "exec"), module.__dict__)
    assert callable(getattr(module, hook, None)), f"the {hook} example does not implement it"
    name = f"docs-{hook}"
    diffsde.register_plugin(module, name, "docs")
    try:
        registry = diffsde.get_registry()
        assert not [e for e in registry.errors if e.plugin == name], registry.errors
        if hook == "register_commands":
            parser = diffsde.cli.parser()
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            assert sub.choices["count-runs"].get_default("diffsde_plugin") == name
        else:
            assert _added(hook, registry, name), f"the {hook} example registered nothing"
        exec(compile(usage, f"README.md ({hook}, usage)", "exec"), dict(module.__dict__))
    finally:
        diffsde.unregister_plugin(name)


@pytest.mark.parametrize("name", sorted(_installed_examples()))
def test_installed_example_works(name):
    """The README's `# try it: NAME` block, against the example plugin installed as NAME."""
    (hook,) = _hooks_of(_entry_points()[name])
    registry = diffsde.get_registry()
    assert not [e for e in registry.errors if e.plugin == name], registry.errors
    assert _added(hook, registry, name), (
        f"entry point {name} registered nothing: is it excluded by DIFFSDE_PLUGINS?"
    )
    usage = _installed_examples()[name]
    exec(compile(usage, f"README.md (try it: {name})", "exec"), {})
