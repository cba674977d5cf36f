"""What a spec will need in memory, estimated at validation from shapes alone (nothing is
allocated), so a spec that cannot fit is a located error rather than RESOURCE_EXHAUSTED from XLA.

The estimates count float32 arrays that must be alive at once, with rounded factors (stated per
term below); they are meant to be right within a small factor, which is what separates a spec
that fits from ``n_samples: 1000000000000``.
"""

import dataclasses
import math
from typing import Any

import jax

from .._config import device_memory, format_bytes
from .._data import AbstractDataset
from .._sde._base import AbstractSDE
from ._model import SpecBase
from ._source import Path

FLOAT = 4
"""Bytes of a float32."""
TRAIN_STATE_COPIES = 6
"""Copies of the parameters alive while training: weights, gradients, Adam's two moments, EMA
weights and one temporary of the update."""
BACKWARD_FACTOR = 3
"""Activation memory of a gradient step relative to a forward pass (saved activations plus
their cotangents)."""
SOLVER_COPIES = 10
"""Copies of the state an ODE/SDE solver keeps (RK stages, error estimate, dense output)."""


@dataclasses.dataclass(frozen=True)
class Term:
    """One array of a phase: its bytes, the spec key that sets its size, and what it is."""

    key: Path
    bytes: int
    what: str


@dataclasses.dataclass(frozen=True)
class Phase:
    """What is alive at once during one phase of a run (training, sampling, a metric)."""

    name: str
    terms: list[Term]

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.terms)

    def dominant(self) -> Term:
        return max(self.terms, key=lambda t: t.bytes)


SAMPLING_CHUNK = 10_000
"""Rows the sampler evaluates the model on at once (`diffsde._sampler.sample` chunks x_T)."""


def _trained_leaves(model_shape: Any) -> list:
    """The array leaves of a model, less the SDE (and prior) it carries: those are constants of
    the parameterisation (an affine SDE's kernel tables), not weights with activations."""
    found = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(model_shape):
        names = {getattr(key, "name", None) for key in path}
        if hasattr(leaf, "shape") and not names & {"sde", "prior"}:
            found.append(leaf)
    return found


def model_sizes(model_shape: Any) -> tuple[int, int]:
    """(parameters, activations per point) of a model given as shapes (``eqx.filter_eval_shape``
    output): activations are the output rows of every weight matrix (one per layer), all of
    which a gradient step keeps."""
    leaves = _trained_leaves(model_shape)
    params = sum(math.prod(x.shape) for x in leaves)
    activations = sum(x.shape[0] for x in leaves if len(x.shape) == 2)
    return params, max(activations, 1)


def phases(
    spec: SpecBase, sde: AbstractSDE, data: AbstractDataset, model_shape: Any | None
) -> list[Phase]:
    """The phases of a run of ``spec`` and their memory."""
    dim = data.dim
    params, act = model_sizes(model_shape) if model_shape is not None else (0, 1)
    weights = Term(("model",) + _size_key(spec.model), params * FLOAT, "model parameters")
    out = []
    objective = spec.objective
    if spec.model is not None and objective is not None:
        batch = spec.training.batch_size
        source = getattr(objective, "source", None)
        paths = 1 if sde.has_gaussian_kernel else getattr(source, "times_per_path", 1)
        points = batch * paths
        divergence = {"ism": dim, "ssm": getattr(objective, "n_projections", 1) + 1}.get(
            objective.type, 1
        )
        terms = [
            Term(
                weights.key,
                params * FLOAT * TRAIN_STATE_COPIES,
                f"{params:,} parameters with gradients, optimiser state and EMA",
            ),
            Term(
                ("training", "batch_size"),
                points * act * FLOAT * BACKWARD_FACTOR * divergence,
                f"a batch of {batch:,} points through {act:,} activations"
                + (f" × {divergence} for the divergence" if divergence > 1 else ""),
            ),
        ]
        exact = _exact_score_width(data)
        if objective.type == "esm" and exact:
            terms.append(
                Term(
                    ("training", "batch_size"),
                    batch * exact * FLOAT * BACKWARD_FACTOR,
                    f"the exact mixture score of {batch:,} points (components × dim = {exact:,})",
                )
            )
        steps = getattr(source, "steps", 0)
        if not sde.has_gaussian_kernel and steps:
            terms.append(
                Term(
                    ("objective", "source", "steps"),
                    batch * steps * dim * FLOAT,
                    f"{batch:,} forward paths of {steps:,} steps",
                )
            )
        out.append(Phase("training", terms))
    n = spec.eval.n_samples
    samples = [
        weights,
        Term(
            ("eval", "n_samples"),
            (n * dim * SOLVER_COPIES + min(n, SAMPLING_CHUNK) * act) * FLOAT,
            f"{n:,} samples of dim {dim} with solver state, the model's activations per chunk",
        ),
        Term(("eval", "n_samples"), n * dim * FLOAT, "the held-out reference"),
    ]
    if spec.eval.save_times:
        samples.append(
            Term(
                ("eval", "save_times"),
                len(set(spec.eval.save_times)) * n * dim * FLOAT,
                f"{len(set(spec.eval.save_times))} saved trajectory times of {n:,} samples",
            )
        )
    if spec.sampler is not None:
        out.append(Phase("sampling", samples))
    for i, metric in enumerate(spec.eval.metrics):
        terms = _metric_terms(
            metric, ("eval", "metrics", i), n, dim, act + _exact_score_width(data)
        )
        if terms:
            out.append(Phase(f"metric '{metric.type}'", [weights, *samples[1:], *terms]))
    return out


def _exact_score_width(data: AbstractDataset) -> int:
    """Numbers per point the exact score of a Gaussian mixture holds (components × dim), 0 for
    data without one."""
    means = getattr(data, "means", None)
    return math.prod(means.shape) if means is not None and len(means.shape) == 2 else 0


def _size_key(model) -> Path:
    return ("width",) if model is not None and "width" in type(model).model_fields else ()


def _metric_terms(metric, key: Path, n: int, dim: int, act: int) -> list[Term]:
    kind = metric.type
    if kind == "mmd":
        m = min(n, metric.max_points)
        return [Term((*key, "max_points"), 3 * m * m * FLOAT, f"3 kernel matrices of {m:,}²")]
    if kind == "sliced_w2":
        p = metric.projections
        return [Term((*key, "projections"), 4 * p * n * FLOAT, f"{p:,} sorted projections")]
    if kind == "esm":
        points = metric.n_times * metric.n_points
        return [
            Term((*key, "n_points"), points * (act + 4 * dim) * FLOAT, f"{points:,} score points")
        ]
    if kind == "log_likelihood":
        b = min(metric.batch_size, metric.n)
        estimator = metric.estimator
        probes = dim if estimator.divergence == "exact" else max(estimator.probes, 1)
        return [
            Term((*key, "n"), metric.n * dim * FLOAT, f"{metric.n:,} held-out points"),
            Term(
                (*key, "batch_size"),
                b * (probes + 1) * (act * BACKWARD_FACTOR + dim * SOLVER_COPIES) * FLOAT,
                f"ODE solves of {b:,} points with {probes} divergence probes",
            ),
        ]
    return []


def memory_problems(
    spec: SpecBase, sde: AbstractSDE, data: AbstractDataset, model_shape: Any | None
) -> list[tuple[Path, str]]:
    """(key, message) for each phase that needs more memory than JAX's device has; one message
    per key, the phase that needs the most."""
    limit, owner = device_memory()
    worst: dict[Path, tuple[int, str]] = {}
    for phase in phases(spec, sde, data, model_shape):
        need = phase.bytes
        if need <= limit:
            continue
        term = phase.dominant()
        message = (
            f"{phase.name} needs ~{format_bytes(need)} ({term.what}: "
            f"~{format_bytes(term.bytes)}); {owner} {format_bytes(limit)}: lower "
            f"{'.'.join(str(p) for p in term.key)}"
        )
        if need > worst.get(term.key, (0, ""))[0]:
            worst[term.key] = (need, message)
    return [(key, message) for key, (_, message) in worst.items()]
