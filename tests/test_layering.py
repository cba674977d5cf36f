"""The import layering, checked mechanically on the source (``ast``, nothing imported).

1. The numerical core does not import the spec layer: no core module imports
   ``diffsde._spec``, the pydantic config modules (``diffsde._config``, ``diffsde._component``,
   ``diffsde._builtin``), the glue that drives a spec (``diffsde._run``, ``diffsde._cli``,
   ``diffsde.spec``), or any other glue module below.
2. No module of diffsde imports an underscore-prefixed *name* from another diffsde module
   (``from ._metrics import _subsample``, ``module._helper``); importing a private *module*
   (``from . import _faults``, ``from ._sde._base import AbstractSDE``) is how the package is
   organised and is allowed inside diffsde.
3. ``bench/``, ``app/``, ``examples/`` and ``plugins/`` use the public API only: no
   ``diffsde._…`` module, no ``_`` name.

Glue (allowed to import the spec layer), each for a reason:
``diffsde/_spec/`` (the spec layer itself), ``_config.py``/``_component.py`` (the pydantic
section bases and the generator of spec models from components: the spec layer's foundation),
``_builtin/`` (registers the built-ins' spec sections), ``_plugins.py`` (the registry collects
spec sections), ``_run.py`` (builds core objects from a validated spec and runs them),
``_lineage.py`` (builds a parent run's model from the parent's stored spec, as ``_run.py``
does), ``_check.py``/``testing.py`` (build registered components from spec settings for the
conformance kit), ``_cli.py``/``cli.py`` and ``_jobs.py``/``jobs.py`` (front ends: they
validate specs before running or queueing them), ``spec.py`` and ``__init__.py`` (public lists that
re-export the spec layer), ``hookspecs.py`` (the plugin interface, which names the spec sections
it registers).

Known offences that are other people's files are listed in ``KNOWN``; the test fails when one
is fixed (remove it from the list) as well as when a new one appears, so the list only shrinks.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "diffsde"

SPEC_LAYER = (
    "diffsde._spec",
    "diffsde._config",
    "diffsde._component",
    "diffsde._builtin",
    "diffsde._run",
    "diffsde._cli",
    "diffsde.spec",
    "diffsde.pipeline",
)
GLUE = (
    "diffsde._spec",
    "diffsde._config",
    "diffsde._component",
    "diffsde._builtin",
    "diffsde._plugins",
    "diffsde._run",
    "diffsde._lineage",
    "diffsde._cli",
    "diffsde.cli",
    "diffsde.__main__",
    "diffsde._jobs",
    "diffsde.jobs",
    "diffsde.spec",
    "diffsde.pipeline",
    "diffsde.hookspecs",
    "diffsde._check",
    "diffsde.testing",
)
GLUE_MODULES = {"diffsde"}  # __init__.py alone, not the package below it
PUBLIC_MODULES = {
    "diffsde",
    "diffsde.runs",
    "diffsde.jobs",
    "diffsde.spec",
    "diffsde.pipeline",
    "diffsde.expression",
    "diffsde.training",
    "diffsde.cli",
    "diffsde.hookspecs",
    "diffsde.testing",
}

KNOWN: set[str] = set()  # every known offence is fixed; a new one fails the test


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether the dotted ``name`` is a module or package of diffsde (a file on disk)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    """The absolute module of a ``from … import`` in module ``here``."""
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: pathlib.Path):
    """``(imported module, imported name or None, line)`` for every import in ``path``
    (nested ones too: a lazy import is still a dependency) and every ``alias._name``
    attribute on a diffsde module alias (as ``(module, _name, line)``)."""
    here = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, None, node.lineno))
                if alias.name.startswith("diffsde"):
                    aliases[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom):
            module = resolve(node, here, path.name == "__init__.py")
            for alias in node.names:
                full = f"{module}.{alias.name}"
                if module.startswith("diffsde") and is_module(full):
                    found.append((full, None, node.lineno))  # a submodule, imported by name
                    aliases[alias.asname or alias.name] = full
                else:
                    found.append((module, alias.name, node.lineno))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            module = aliases[node.value.id]
            full = f"{module}.{node.attr}"
            found.append((full, None, node.lineno) if is_module(full) else (module, node.attr, 0))
    return here, found


def offences(paths, *, public_only: bool) -> set[str]:
    out = set()
    for path in paths:
        here, found = imports(path)
        rel = path.relative_to(ROOT).as_posix()
        core = not public_only and not under(here, GLUE) and here not in GLUE_MODULES
        for module, name, _ in found:
            if not module.startswith("diffsde"):
                continue
            if public_only and module not in PUBLIC_MODULES:
                out.add(f"{rel} imports non-public module {module}")
            if name is not None and name.startswith("_") and not name.startswith("__"):
                if module != here:
                    out.add(f"{rel} imports private name {module}.{name}")
            if core and under(module, SPEC_LAYER):
                out.add(f"{rel} (core) imports the spec layer {module}")
            elif core and (under(module, GLUE) or module in GLUE_MODULES):
                out.add(f"{rel} (core) imports the glue module {module}")
    return out


def test_the_checker_sees_each_kind_of_offence(tmp_path, monkeypatch):
    """The checker itself: each rule fires on a file that breaks it, and not on one that keeps
    it. Mutation: dropping the ``under(module, SPEC_LAYER)`` or the glue rule, resolving
    relative imports one level too high, or treating every ``_name`` as a module each make this
    fail."""
    pkg = tmp_path / "diffsde"
    (pkg / "_spec").mkdir(parents=True)
    for name in ("__init__.py", "_spec/__init__.py", "_spec/_model.py", "_faults.py", "_jobs.py"):
        (pkg / name).write_text("")
    (pkg / "_metrics.py").write_text("def _subsample(): ...\ndef mmd(): ...\n")
    (pkg / "_core.py").write_text(
        "from . import _faults\nfrom ._metrics import mmd, _subsample\n"
        "from ._spec._model import TrainingConfig\nimport diffsde._metrics as m\nm._subsample\n"
        "from ._jobs import submit\n"
    )
    (pkg / "_clean.py").write_text("from . import _faults\nfrom ._metrics import mmd\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "b.py").write_text("import diffsde\nfrom diffsde._metrics import mmd\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = offences([pkg / "_core.py", pkg / "_clean.py"], public_only=False)
    assert found == {
        "diffsde/_core.py imports private name diffsde._metrics._subsample",
        "diffsde/_core.py (core) imports the spec layer diffsde._spec._model",
        "diffsde/_core.py (core) imports the glue module diffsde._jobs",
    }
    found = offences([tmp_path / "bench" / "b.py"], public_only=True)
    assert found == {"bench/b.py imports non-public module diffsde._metrics"}


def test_layering():
    """Every rule above on the real tree; ``KNOWN`` is exactly what still offends.
    Mutation: re-adding ``from ._spec._model import TrainingConfig`` to _train.py, or
    ``from ._metrics import _subsample`` to _likelihood.py, makes this fail."""
    package = offences(sorted(PACKAGE.rglob("*.py")), public_only=False)
    outside = offences(
        sorted(
            p for d in ("bench", "app", "examples", "plugins") for p in (ROOT / d).rglob("*.py")
        ),
        public_only=True,
    )
    found = package | outside
    new, fixed = sorted(found - KNOWN), sorted(KNOWN - found)
    assert not new and not fixed, f"new offences: {new}; fixed (remove from KNOWN): {fixed}"
