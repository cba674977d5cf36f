"""The conformance kit: checks of a built component against theory, by kind (``_sde``,
``_sampler``, ``_objective``, ``_data``), each result a :class:`CheckResult` (``_report``).
``diffsde check`` (``diffsde/_check.py``) builds registered components for it."""

from ._data import check_dataset, check_metric, check_model, check_transform
from ._objective import check_objective
from ._report import CheckReport, CheckResult
from ._sampler import check_sampler, mixture
from ._sde import check_sde, kernel_warning

__all__ = [
    "CheckReport",
    "CheckResult",
    "check_dataset",
    "check_metric",
    "check_model",
    "check_objective",
    "check_sampler",
    "check_sde",
    "check_transform",
    "kernel_warning",
    "mixture",
]
