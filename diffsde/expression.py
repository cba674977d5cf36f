"""Spec expressions: strings such as ``"-0.5 * beta(t) * x"`` compiled, against a whitelist of
``jax.numpy`` functions and without ``eval``, into :class:`Expression` modules.

``compile_expression(source, variables, params)`` compiles (or raises :class:`ExpressionError`
with the column of the offending token); ``check_syntax(source)`` checks syntax and whitelist
alone. ``FUNCTIONS``, ``CONSTANTS`` and ``COMPARISONS`` are what an expression may use; an
expression is bounded by ``MAX_SOURCE_CHARS``, ``MAX_NODES`` and ``MAX_DEPTH``.
"""

from ._expression import (
    COMPARISONS as COMPARISONS,
    CONSTANTS as CONSTANTS,
    FUNCTIONS as FUNCTIONS,
    MAX_DEPTH as MAX_DEPTH,
    MAX_NODES as MAX_NODES,
    MAX_SOURCE_CHARS as MAX_SOURCE_CHARS,
    Expression as Expression,
    ExpressionError as ExpressionError,
    check_syntax as check_syntax,
    compile_expression as compile_expression,
)
