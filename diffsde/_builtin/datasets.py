"""Spec sections of the built-in datasets."""

import math
import os
import pathlib
import zipfile
import zlib
from typing import Annotated, Literal

import h5py
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pydantic

from .._config import DatasetConfig, Seed, SpecFieldError, format_bytes, host_memory
from .._data import (
    DIGIT_SCALES,
    TOYS,
    ArrayDataset,
    GaussianMixture,
    TwoDToy,
    load_digits,
    split_sizes,
)

MAX_GMM_DIM = 100_000
"""The largest dimension of a Gaussian mixture."""
MAX_GMM_COMPONENTS = 10_000
"""The most components of a Gaussian mixture (its exact score sums over all of them)."""
MAX_GMM_NUMBERS = 10_000_000
"""The most numbers components × dim the means of a mixture may hold (40 MB of float32)."""
TestFraction = Annotated[float, pydantic.Field(gt=0.0, lt=1.0)]


class GMMConfig(DatasetConfig):
    """Gaussian mixture in R^dim with exact scores at every t (given or random means).

    ``labels: true`` gives each point its component's index as a condition (classes 0 to
    components − 1), for a conditional model (``model: {classes: components}``)."""

    type: Literal["gmm"] = "gmm"
    dim: int = pydantic.Field(2, gt=0, le=MAX_GMM_DIM)
    components: int = pydantic.Field(5, gt=0, le=MAX_GMM_COMPONENTS)
    means: list[list[float]] | None = None
    std: pydantic.PositiveFloat | list[pydantic.PositiveFloat] = 0.2
    weights: list[pydantic.PositiveFloat] | None = None
    radius: pydantic.PositiveFloat = 2.0
    seed: Seed = 0
    labels: bool = False

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.components * self.dim > MAX_GMM_NUMBERS:
            raise ValueError(
                f"components × dim = {self.components:,} × {self.dim:,} means is over "
                f"{MAX_GMM_NUMBERS:,} numbers: lower components or dim"
            )
        if self.means is not None:
            if len(self.means) != self.components:
                raise ValueError(
                    f"means has {len(self.means)} rows but components is {self.components}"
                )
            bad = [i for i, m in enumerate(self.means) if len(m) != self.dim]
            if bad:
                raise ValueError(
                    f"means[{bad[0]}] has {len(self.means[bad[0]])} entries, dim is {self.dim}"
                )
        for name in ("weights", "std"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != self.components:
                raise ValueError(
                    f"{name} has {len(value)} entries, components is {self.components}"
                )
        return self

    def build(self) -> GaussianMixture:
        if self.means is None:
            # random means on the sphere of the given radius, reproducible from seed
            z = jr.normal(jr.key(self.seed), (self.components, self.dim))
            means = self.radius * z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        else:
            means = jnp.asarray(self.means)
        weights = 1.0 if self.weights is None else jnp.asarray(self.weights)
        return GaussianMixture(weights, means, jnp.asarray(self.std), labelled=self.labels)


class ToyConfig(DatasetConfig):
    """A 2-D toy: eight_gaussians, moons, swiss_roll, checkerboard or rings."""

    type: Literal["toy"] = "toy"
    name: Literal[tuple(TOYS)]  # type: ignore[valid-type]
    noise: pydantic.NonNegativeFloat = 0.05

    @property
    def dim(self) -> int:
        return 2

    def build(self) -> TwoDToy:
        return TwoDToy(self.name, self.noise)


def _collect_dataset(names: list[str], name: str, obj) -> None:
    if isinstance(obj, h5py.Dataset):
        names.append(name)


class DigitsConfig(DatasetConfig):
    """scikit-learn's 8×8 handwritten digits (1797 images, 64 dims), shipped with diffsde."""

    type: Literal["digits"] = "digits"
    scale: Literal[tuple(DIGIT_SCALES)] = "signed"  # type: ignore[valid-type]
    test_fraction: TestFraction = 0.1
    seed: Seed = 0

    def build(self) -> ArrayDataset:
        return load_digits(scale=self.scale, test_fraction=self.test_fraction, seed=self.seed)


FILE_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
MAX_DATA_BYTES = 4 << 30
"""The largest array a data file may hold (4 GiB), and never more than a quarter of the memory
available (the rows are copied to float32 and split)."""
MAX_ARCHIVE_MEMBERS = 1000
"""The most arrays a .npz file may hold."""


def _numeric(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)


def _check_array(field: str, where: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Check what a header declares before anything is read; return the bytes of the data."""
    if dtype.hasobject or not _numeric(dtype):
        raise SpecFieldError(
            field, f"{where} has dtype {dtype}; expected integer or floating numbers"
        )
    if len(shape) not in (2, 3) or 0 in shape[1:]:
        raise SpecFieldError(
            field,
            f"{where} has shape {shape}; expected rows (n, dim) or images (n, height, width)",
        )
    nbytes = math.prod(shape) * dtype.itemsize
    limit = min(MAX_DATA_BYTES, host_memory() // 4)
    if nbytes > limit:
        raise SpecFieldError(
            field,
            f"{where} has shape {shape} of {dtype}, {format_bytes(nbytes)}; the limit is "
            f"{format_bytes(limit)} (4 GiB, and a quarter of the {format_bytes(host_memory())} "
            "of memory available): use fewer rows",
        )
    return nbytes


def _npy_header(f, field: str, where: str, size: int) -> tuple[tuple[int, ...], np.dtype]:
    """Read and check the header of the .npy stream ``f`` holding ``size`` bytes in all."""
    try:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0}.get(
            version, np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    except Exception as err:  # numpy's header parser raises ValueError, SyntaxError, TokenError…
        raise SpecFieldError(
            field, f"{where} is not a valid .npy array ({str(err).splitlines()[0]})"
        ) from None
    nbytes = _check_array(field, where, tuple(shape), dtype)
    held = size - f.tell()
    if held < nbytes:
        raise SpecFieldError(
            field,
            f"{where} is truncated: its header declares shape {tuple(shape)} of {dtype}, "
            f"{format_bytes(nbytes)}, but it holds {format_bytes(held)} of data: write the "
            "file again",
        )
    return tuple(shape), dtype


class FileConfig(DatasetConfig):
    """Rows of a numeric array in a .npy, .npz or .h5/.hdf5 file (n, dim), or images (n, h, w).

    ``key`` names the array in a .npz file or the dataset path in an HDF5 file (optional when
    the file holds exactly one). A relative ``path`` is resolved against the directory of the spec
    file when the spec is read with ``diffsde.load_spec`` (or against ``base_dir`` given to
    ``diffsde.validate_text``, by default the current working directory); the resolved spec
    stores the absolute path. A config built directly in Python resolves it against the current
    working directory. Integer data are converted to float32; images are flattened to rows and
    their (h, w) kept as ``image_shape``.
    """

    type: Literal["file"] = "file"
    path: str
    key: str | None = None
    test_fraction: TestFraction = 0.1
    seed: Seed = 0

    @pydantic.field_validator("path")
    @classmethod
    def _resolve(cls, value: str, info) -> str:  # info: pydantic.ValidationInfo
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is None:
            return value
        return os.path.abspath(pathlib.Path(base_dir) / pathlib.Path(value).expanduser())

    def build(self) -> ArrayDataset:
        path = pathlib.Path(self.path).expanduser()
        suffix = path.suffix.lower()
        if suffix not in FILE_SUFFIXES:
            raise SpecFieldError(
                "path",
                f"unsupported file type '{path.suffix or path.name}'; use one of "
                f"{', '.join(FILE_SUFFIXES)}",
            )
        if path.exists() and not path.is_file():  # never opened: a FIFO would block
            raise SpecFieldError(
                "path", f"{path} is not a regular file (a directory, FIFO or device): give a file"
            )
        if not path.is_file():
            raise SpecFieldError(
                "path",
                f"file not found: {path} (a relative path is resolved against the spec file's "
                "directory)",
            )
        array, where = self._read(path, suffix)
        field = "key" if self.key is not None else "path"
        _check_array(field, where, array.shape, array.dtype)
        if np.issubdtype(array.dtype, np.floating):
            # Finite in float32 too, as the model computes: 1e39 in a float64 file is inf there.
            flat = array.reshape(array.shape[0], -1)
            bad = ~(np.isfinite(flat) & (np.abs(flat) <= np.finfo(np.float32).max)).all(axis=1)
            if bad.any():
                raise SpecFieldError(
                    field,
                    f"{where} has NaN or infinite values in {int(bad.sum())} rows "
                    f"(first: row {int(np.argmax(bad))}); values beyond ±3.4e38 are infinite in "
                    "the float32 the model computes in: clean the data first",
                )
        try:
            split_sizes(array.shape[0], self.test_fraction)
        except ValueError as err:
            raise SpecFieldError(field, f"{where}: {err}") from None
        image_shape = array.shape[1:] if array.ndim == 3 else None
        rows = array.reshape(array.shape[0], -1)
        return ArrayDataset.from_array(
            rows, test_fraction=self.test_fraction, seed=self.seed, image_shape=image_shape
        )

    def _read(self, path: pathlib.Path, suffix: str) -> tuple[np.ndarray, str]:
        """The array and a description of where it came from, for messages."""
        try:
            if suffix == ".npy":
                if self.key is not None:
                    raise SpecFieldError(
                        "key",
                        f"{path} is a .npy file, which holds a single array; "
                        f"remove key ({self.key!r})",
                    )
                with open(path, "rb") as f:
                    _npy_header(f, "path", str(path), os.fstat(f.fileno()).st_size)
                return np.load(path, allow_pickle=False), str(path)
            if suffix == ".npz":
                return self._read_npz(path)
            with h5py.File(path, "r") as f:
                names: list[str] = []
                f.visititems(lambda n, obj: _collect_dataset(names, n, obj))
                name = self._pick(path, names)
                where = f"dataset '{name}' of {path}"
                field = "key" if self.key is not None else "path"
                dataset = f[name]
                _check_array(field, where, dataset.shape, dataset.dtype)
                if dataset.is_virtual or dataset.id.get_create_plist().get_external_count():
                    raise SpecFieldError(  # its data lie in other files (even a FIFO): not read
                        field,
                        f"{where} keeps its data in other files (external or virtual "
                        "storage); copy the array into the file (create_dataset(name, data=a))",
                    )
                return np.asarray(dataset[()]), where
        except SpecFieldError:
            raise
        except ValueError as err:  # numpy refuses object (pickled) arrays
            raise SpecFieldError(
                "key" if self.key is not None else "path",
                f"cannot read {path}: {err} (only numeric arrays are supported)",
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise SpecFieldError("path", f"cannot read {path} as {suffix}: {err}") from None
        except (RuntimeError, NotImplementedError) as err:  # zipfile: encrypted, unknown method
            raise SpecFieldError(
                "path", f"cannot read {path}: {err}; save it with numpy.savez"
            ) from None

    def _read_npz(self, path: pathlib.Path) -> tuple[np.ndarray, str]:
        """One array of a .npz archive, its header and declared sizes checked before it is
        decompressed (a member decompresses to at most its ZipInfo.file_size bytes, which is
        bounded first)."""
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_ARCHIVE_MEMBERS:
                raise SpecFieldError(
                    "path", f"{path} holds {len(members):,} files; at most {MAX_ARCHIVE_MEMBERS}"
                )
            by_name = {m.filename.removesuffix(".npy"): m for m in members}
            name = self._pick(path, list(by_name))
            member, where = by_name[name], f"array '{name}' of {path}"
            field = "key" if self.key is not None else "path"
            limit = min(MAX_DATA_BYTES, host_memory() // 4)
            if member.file_size > limit:
                raise SpecFieldError(
                    field,
                    f"{where} decompresses to {format_bytes(member.file_size)} (from "
                    f"{format_bytes(member.compress_size)}); the limit is {format_bytes(limit)}: "
                    "use fewer rows",
                )
            with archive.open(member) as f:
                _npy_header(f, field, where, member.file_size)
            with archive.open(member) as f:
                return np.lib.format.read_array(f, allow_pickle=False), where

    def _pick(self, path: pathlib.Path, names: list[str]) -> str:
        if self.key is not None:
            if self.key not in names:
                raise SpecFieldError(
                    "key",
                    f"no array '{self.key}' in {path}; it holds: {', '.join(names) or 'none'}",
                )
            return self.key
        if len(names) != 1:
            raise SpecFieldError(
                "key",
                f"{path} holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                "choose one with key",
            )
        return names[0]


DATASET_CONFIGS = (GMMConfig, ToyConfig, DigitsConfig, FileConfig)
