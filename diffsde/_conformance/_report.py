"""What a conformance check reports: each comparison, its measured deviation and tolerance."""

import dataclasses

from .._errors import first_line


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One comparison: ``deviation`` measured against ``tolerance``, both in ``unit``
    ("SE": standard errors of a Monte-Carlo estimate; "relative": |a − b| / scale; "order":
    |fitted − declared| order; "count": a discrepancy in a count). ``skipped`` says why a
    check did not apply (it then passes)."""

    name: str
    compared: str
    deviation: float = 0.0
    tolerance: float = 0.0
    unit: str = ""
    passed: bool = True
    skipped: str | None = None
    at_least: bool = False
    """The deviation must reach the tolerance (a significance), not stay within it."""

    def line(self) -> str:
        if self.skipped is not None:
            return f"skip  {self.name}: {self.skipped}"
        mark = "ok  " if self.passed else "FAIL"
        if not self.unit:  # a yes/no check: what was compared says it all
            return f"{mark}  {self.name}: {self.compared}"
        if self.at_least:
            verdict = "at least" if self.passed else "below"
        else:
            verdict = "within" if self.passed else "beyond"
        return (
            f"{mark}  {self.name}: {self.compared}: {self.deviation:.3g} {self.unit} "
            f"({verdict} {self.tolerance:.3g} {self.unit})"
        )


def measured(name: str, compared: str, deviation: float | int, tolerance: float | int, unit: str):
    """A result that passes when ``deviation`` ≤ ``tolerance`` (a NaN fails)."""
    deviation, tolerance = float(deviation), float(tolerance)
    return CheckResult(name, compared, deviation, tolerance, unit, bool(deviation <= tolerance))


def passed(name: str, compared: str) -> CheckResult:
    """A yes/no check that passed; ``compared`` says what held."""
    return CheckResult(name, compared, 0.0, 0.0, "", True)


def failed(name: str, compared: str) -> CheckResult:
    """A yes/no check that failed; ``compared`` says what was wrong."""
    return CheckResult(name, compared, 1.0, 0.0, "", False)


def guarded(name: str, check, *args) -> list[CheckResult]:
    """``check(*args)`` (one result or a list); what it raises — a bug in the component under
    check, met while checking — is one failed result naming the exception, not a traceback."""
    try:
        out = check(*args)
    except Exception as err:  # noqa: BLE001  (reported, and the other checks still run)
        return [failed(name, f"raised {type(err).__name__}: {first_line(err, '')[:300]}")]
    return out if isinstance(out, list) else [out]


def skipped(name: str, why: str) -> CheckResult:
    return CheckResult(name, "", skipped=why)


@dataclasses.dataclass
class CheckReport:
    """Every result of checking one component."""

    kind: str
    tag: str
    results: list[CheckResult] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def text(self) -> str:
        lines = [r.line() for r in self.results]
        ran = sum(r.skipped is None for r in self.results)
        verdict = "passed" if self.passed else f"FAILED ({len(self.failures)} of {ran})"
        lines.append(f"{self.kind} '{self.tag}': {ran} checks {verdict}")
        return "\n".join(lines)

    def assert_ok(self) -> "CheckReport":
        if not self.passed:
            raise AssertionError(self.text())
        return self
