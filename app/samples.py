"""Compare's sample views: which stored sample sets to draw, and how (a square scatter, an image
grid, marginal histograms). Pure functions, no Streamlit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from diffsde.runs import RunRecord

REFERENCE = "reference"


def sample_sets(record: RunRecord) -> list[str]:
    """The run's stored sample sets that can be shown: 2-D arrays (points × dim) other than the
    held-out reference; ``samples`` first, then labelled `diffsde sample` sets by name."""
    shapes = {k: record.samples.shape(k) for k in record.samples}  # stored shapes: no array read
    names = [k for k, shape in shapes.items() if k != REFERENCE and len(shape) == 2 and shape[0]]
    return sorted(names, key=lambda k: (k != "samples", k))


def sample_view(dim: int) -> str:
    """How to draw points of dimension ``dim``: ``scatter`` (2-D), ``image`` (a perfect square
    of at least 16, e.g. 8×8 digits) or ``histogram`` (marginals of the first coordinates)."""
    side = int(round(dim**0.5))
    if dim == 2:
        return "scatter"
    if dim >= 16 and side * side == dim:
        return "image"
    return "histogram"


def _head(array: Any, max_points: int) -> Any:
    return np.asarray(array, dtype=float)[:max_points]


def scatter_frame(samples: Any, reference: Any = None, *, max_points: int = 1000) -> pd.DataFrame:
    """Long frame (``x``, ``y``, ``set``) of the first two coordinates: reference then samples."""
    parts = []
    for name, array in ((REFERENCE, reference), ("samples", samples)):
        if array is not None and len(array):
            head = _head(array, max_points)
            parts.append(pd.DataFrame({"x": head[:, 0], "y": head[:, 1], "set": name}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["x", "y", "set"])


def marginal_frame(
    samples: Any, reference: Any = None, *, coordinates: int = 4, max_points: int = 1000
) -> pd.DataFrame:
    """Long frame (``coordinate``, ``value``, ``set``) of the first ``coordinates`` columns."""
    parts = []
    for name, array in ((REFERENCE, reference), ("samples", samples)):
        if array is None or not len(array):
            continue
        head = _head(array, max_points)
        for j in range(min(coordinates, head.shape[1])):
            parts.append(pd.DataFrame({"coordinate": f"x{j}", "value": head[:, j], "set": name}))
    if not parts:
        return pd.DataFrame(columns=["coordinate", "value", "set"])
    return pd.concat(parts, ignore_index=True)


def image_tile(
    samples: Any,
    *,
    count: int = 16,
    columns: int = 4,
    gap: int = 1,
    bounds: tuple[float, float] | None = None,
) -> Any:
    """The first ``count`` samples (each a flattened square image) as one grid in [0, 1], with a
    ``gap`` of pixels between images; scaled by ``bounds`` (low, high), by default the min and
    max of the shown images (pass the reference's to show samples and reference alike)."""
    images = np.asarray(samples, dtype=float)[:count]
    n, dim = images.shape
    side = int(round(dim**0.5))
    if side * side != dim:
        raise ValueError(f"dimension {dim} is not a square image")
    low, high = bounds or (float(images.min()), float(images.max()))
    images = np.clip(images, low, high)
    images = (images - low) / (high - low) if high > low else np.zeros_like(images)
    rows = -(-n // columns)
    step = side + gap
    tile = np.ones((rows * step - gap, columns * step - gap))
    for i, image in enumerate(images.reshape(n, side, side)):
        r, c = divmod(i, columns)
        tile[r * step : r * step + side, c * step : c * step + side] = image
    return tile


def upscale(tile: Any, factor: int) -> Any:
    """``tile`` with each pixel repeated ``factor`` × ``factor`` times (nearest neighbour): an
    8×8 digit stays crisp when shown large, where the browser's resampling would blur it."""
    if factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor}")
    return np.kron(np.asarray(tile, dtype=float), np.ones((factor, factor)))


def image_bounds(array: Any) -> tuple[float, float]:
    """(min, max) of ``array``: the grey scale both image grids of one run share."""
    values = np.asarray(array, dtype=float)
    return float(values.min()), float(values.max())


def square_domains(points: pd.DataFrame, margin: float = 0.05) -> tuple[list, list]:
    """The x and y domains of a 2-D scatter: both as long as the larger extent of the points
    (reference and samples), plus a ``margin``, each centred on its data. Drawn on a square
    chart, one unit is as long on x as on y."""
    values = points[["x", "y"]].to_numpy(dtype=float) if len(points) else np.zeros((0, 2))
    values = values[np.isfinite(values).all(axis=1)]
    if not len(values):
        return [-1.0, 1.0], [-1.0, 1.0]
    low, high = values.min(axis=0), values.max(axis=0)
    centre = (low + high) / 2
    half = max(float((high - low).max()) / 2, 1e-9) * (1 + margin)
    return [float(centre[0] - half), float(centre[0] + half)], [
        float(centre[1] - half),
        float(centre[1] + half),
    ]
