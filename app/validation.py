"""New run's validation: the CLI's own (`diffsde.validate_text`, then that the spec is
runnable), so the editor shows the very ``file:line dotted.key: message`` lines that
``diffsde run`` would print, and those lines marked under the text. Pure functions."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from diffsde.spec import Setup, SpecError, SpecIssue, require_runnable, validate_text

EDITOR_FILE = "editor.yaml"  # the file name the editor's issues carry, as a CLI path would


@dataclasses.dataclass(frozen=True)
class Validation:
    """The outcome of validating the editor text: the CLI's issues, or a one-line summary."""

    issues: tuple[SpecIssue, ...]
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.issues

    def lines(self) -> list[str]:
        """Each issue exactly as ``diffsde validate`` prints it."""
        return [str(issue) for issue in self.issues]


def describe(setup: Setup) -> str:
    """One line saying what a valid spec will train, for the ✓ under the editor."""
    spec = setup.spec
    return (
        f"{spec.name}: {spec.sde.type} SDE on {spec.data.type} data (dim {setup.dim}), "
        f"{spec.model.type} model, {spec.objective.type} objective, {spec.sampler.type} sampler; "
        f"{spec.training.steps} steps of batch {spec.training.batch_size}, "
        f"evaluated on {spec.eval.n_samples} samples"
    )


def validate(
    text: str, file: str = EDITOR_FILE, *, base_dir: str | os.PathLike[str] | None = None
) -> Validation:
    """Validate ``text`` as ``diffsde run`` would (the spec, then that it is runnable)."""
    try:
        setup = validate_text(text, file, (), base_dir=base_dir)
        require_runnable(setup)
    except SpecError as err:
        return Validation(tuple(err.issues))
    return Validation((), describe(setup))


def annotate(
    text: str, issues: Sequence[SpecIssue], *, file: str = EDITOR_FILE, context: int = 1
) -> str:
    """The lines of ``text`` that carry issues, numbered, each followed by a caret under the
    issue's column and its message; ``context`` lines around each, ``…`` for the gaps.

    Issues located elsewhere (a ``--set`` override) are left out, and an issue past the end (a
    YAML error at the end of the stream) is shown on an empty last line. Empty when no issue is
    located in ``file``.
    """
    lines = text.splitlines()
    marks: dict[int, list[SpecIssue]] = {}
    for issue in issues:
        if issue.location.file == file:
            line = min(max(issue.location.line, 1), len(lines) + 1)
            marks.setdefault(line, []).append(issue)
    if not marks:
        return ""
    if max(marks) > len(lines):
        lines.append("")
    shown = sorted(
        {
            n
            for line in marks
            for n in range(line - context, line + context + 1)
            if 1 <= n <= len(lines)
        }
    )
    width = len(str(shown[-1]))
    out: list[str] = []
    for i, n in enumerate(shown):
        if i and n != shown[i - 1] + 1:
            out.append(f"{'…':>{width}}")
        source = lines[n - 1]
        out.append(f"{n:>{width}} | {source}")
        for issue in sorted(marks.get(n, []), key=lambda i: i.location.column):
            # keep tabs so the caret lines up under the same character
            lead = "".join(c if c == "\t" else " " for c in source[: issue.location.column - 1])
            label = f"{issue.key}: {issue.message}" if issue.key else issue.message
            out.append(f"{'':>{width}} | {lead}^ {label}")
    return "\n".join(out)
