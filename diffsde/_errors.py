"""Errors a component raises about a value of its spec section (core: no pydantic)."""


class SpecFieldError(ValueError):
    """A semantic error in one field of a spec section, found while building it.

    ``field`` is the key inside the section (dotted for nested keys), ``column`` an offset inside
    the field's string value (for expressions), or None.
    """

    def __init__(self, field: str, message: str, column: int | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.column = column


class SpecFieldErrors(ValueError):
    """Several :class:`SpecFieldError` of one section, reported together."""

    def __init__(self, errors: list[SpecFieldError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def first_line(err: BaseException, default: str | None = None) -> str:
    """The first line of ``str(err)`` — what a one-line report of an exception shows — or
    ``default`` when the message is empty (the exception's type name if None)."""
    lines = str(err).strip().splitlines()
    if lines:
        return lines[0]
    return type(err).__name__ if default is None else default


REQUIREMENTS: dict[type, str] = {}
"""Readable names of what a component's context parameter requires, by its annotation
(``AbstractGaussianSDE`` → "an SDE with a Gaussian transition kernel"), for the located error a
spec gets when the requirement fails; filled by the modules that define those types."""
