"""Conformance checks for a plugin's own test suite: the checks of ``diffsde check``, as pytest
helpers.

    import diffsde.testing

    def test_my_sde_conforms():
        diffsde.testing.assert_passes("sde", "my_sde", quick=True)

    def test_an_instance():  # any object, not only a registered tag
        diffsde.testing.assert_ok(diffsde.testing.check_sde(MySDE(dim=2)))

Each check reports what it compared, the measured deviation (in standard errors of a
Monte-Carlo estimate, relative, or in order) and its tolerance; a failing one raises
AssertionError with the whole report.
"""

from ._check import KINDS, check
from ._conformance import (
    CheckReport,
    CheckResult,
    check_dataset,
    check_metric,
    check_model,
    check_objective,
    check_sampler,
    check_sde,
    check_transform,
)


def assert_passes(kind: str, tag: str, **options) -> CheckReport:
    """:func:`check` the registered component and raise AssertionError unless every check
    passes; ``options`` as for :func:`check` (``settings``, ``quick``, ``sde``, ``dim``,
    ``seed``)."""
    return check(kind, tag, **options).assert_ok()


def assert_ok(results: list[CheckResult], label: str = "component") -> CheckReport:
    """Raise AssertionError unless every result passed (for the ``check_*`` functions, which
    take built objects)."""
    return CheckReport("checked", label, list(results)).assert_ok()


__all__ = [
    "KINDS",
    "CheckReport",
    "CheckResult",
    "assert_ok",
    "assert_passes",
    "check",
    "check_dataset",
    "check_metric",
    "check_model",
    "check_objective",
    "check_sampler",
    "check_sde",
    "check_transform",
]
