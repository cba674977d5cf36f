"""Every hook is documented with a complete example that works: README.md holds, per hook,
a plugin module and a block that uses it. Each pair is run here: the plugin block is executed as
a module, registered with `diffsde.register_plugin`, and must implement its hook and add what
the hook adds (a component of its kind, a part, a dashboard page, a subcommand); the usage block
then runs against it (its own assertions check the behaviour).

Mutation: doubling the Brownian SDE's kernel σ_t, or registering the page under
another title, makes the matching case fail; deleting a hook's example fails the coverage test.
"""

import argparse
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


def _examples() -> dict[str, tuple[str, str]]:
    """hook -> (plugin source, usage source), in the order of the document."""
    blocks = BLOCK.findall(DOC.read_text())
    out = {}
    for i, block in enumerate(blocks):
        first = block.splitlines()[0]
        if first.startswith("# plugin: "):
            usage = blocks[i + 1]
            assert usage.startswith("# try it"), f"{first}: the next block must be `# try it`"
            out[first.removeprefix("# plugin: ").strip()] = (block, usage)
    return out


HOOKS = sorted(
    n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("register_")
)


def test_every_hook_has_an_example():
    assert sorted(_examples()) == HOOKS
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


@pytest.mark.parametrize("hook", HOOKS)
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
