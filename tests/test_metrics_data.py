"""Datasets (held-out splits, shipped digits, user files) and metrics, checked against theory.

Tolerances are stated next to each check: k standard errors of the estimator, computed from its
known variance (or estimated from repeated draws).
"""

import math

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import diffsde
from diffsde._builtin.datasets import DigitsConfig, FileConfig
from diffsde._metrics import mmd2_unbiased, sliced_w2

MU = jnp.array([1.5, 1.0])  # |μ|² = 3.25, so E_v (vᵀμ)² = |μ|²/d = 1.625 in d = 2
STANDARD = diffsde.GaussianMixture(1.0, [[0.0, 0.0]], 1.0)
MIXTURE = diffsde.GaussianMixture([1.0, 2.0, 1.0], [[-2.0, 0.0], [1.0, 1.0], [0.0, -1.5]], 0.5)
N_MIXTURE = 20_000  # one sample size for all mixture draws: one compilation of the sampler


def _context(x, y, *, key=jr.key(0), dataset=STANDARD, score=None, sde=None):
    return diffsde.EvalContext(x, y, dataset, sde or diffsde.VP(x.shape[1]), score, key)


def _pair(seed, n, m, shift):
    """n draws of N(0, I) and m of N(shift, I) in R^2 (numpy: no RNG compilation per shape)."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, 2)), rng.standard_normal((m, 2)) + np.asarray(shift)
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def _half_circle(p):
    """p directions at angles πk/p: the average of (vᵀμ)² over them is exactly |μ|²/2."""
    theta = jnp.pi * jnp.arange(p) / p
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], -1)


# sliced W2 ------------------------------------------------------------------------------------


def test_sliced_w2_of_shifted_gaussians_is_shift_squared_over_dim():
    # With exact quadrature over directions only the sample noise is left: the cross term
    # 2 μᵀδ/d with δ ~ N(0, 2I/n) has variance 2|μ|²/n (sd 0.040, 2.5% of 1.625, at n = 4000).
    n = 4000
    x, y = _pair(0, n, n, MU)
    target = float(MU @ MU) / 2
    sd = math.sqrt(2 * float(MU @ MU) / n)
    value = float(sliced_w2(x, y, _half_circle(32)))
    assert abs(value - target) < 4 * sd + 1e-2, (value, target, sd)  # + floor bias ~ 1/n


def test_sliced_w2_metric_random_directions_and_unequal_sizes():
    # Random unit directions add Var (vᵀμ)² / P = |μ|⁴/(8P) in 2-D; n ≠ m uses quantile matching.
    n, m, p = 3000, 2000, 256
    x, y = _pair(1, n, m, MU)
    mu2 = float(MU @ MU)
    sd = math.sqrt(mu2**2 / (8 * p) + mu2 * (1 / n + 1 / m))
    metric = diffsde.SlicedWasserstein(projections=p)
    value = metric(_context(x, y, key=jr.key(2)))["sliced_w2"]
    assert abs(value - mu2 / 2) < 4 * sd, (value, mu2 / 2, sd)


def test_sliced_w2_floor_for_the_same_law_shrinks_with_n():
    floors = [float(sliced_w2(*_pair(3, n, n, 0.0), _half_circle(32))) for n in (200, 4000)]
    # E W2² between two n-samples of N(0, 1) is O(log n / n): 0.03 at n = 200, 0.002 at 4000
    assert floors[1] < floors[0] / 4 and floors[1] < 0.01, floors


def test_sliced_w2_equal_sizes_is_sorted_matching():
    x, y = _pair(4, 200, 200, 0.3)
    v = _half_circle(32)
    exact = np.mean((np.sort(x @ v.T, 0) - np.sort(y @ v.T, 0)) ** 2)
    assert float(sliced_w2(x, y, v)) == pytest.approx(exact, rel=1e-5)


# MMD -----------------------------------------------------------------------------------------


def _rbf_mmd2_gaussians(shift, h, d):
    """MMD² between N(0, I) and N(shift, I) in R^d for k = exp(−|a−b|²/(2h²))."""
    c = (h**2 / (h**2 + 2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-(shift**2) / (2 * (h**2 + 2))))


def test_mmd_unbiased_matches_the_closed_form_and_is_zero_under_the_null():
    # 64 independent repetitions for each of shift 0 and 1: mean ± standard error
    z = np.random.default_rng(10).standard_normal((2, 64, 2, 400, 2)).astype(np.float32)
    z[1, :, 1, :, 0] += 1.0
    values = jax.jit(jax.vmap(jax.vmap(lambda xy: mmd2_unbiased(xy[0], xy[1], 1.0))))(z)
    (null, shifted), (null_se, se) = values.mean(1).tolist(), (values.std(1) / 8).tolist()
    assert abs(null) < 4 * null_se, (null, null_se)  # the U-statistic is unbiased: E = 0
    target = _rbf_mmd2_gaussians(1.0, 1.0, 2)  # 0.1023
    assert abs(shifted - target) < 4 * se, (shifted, target, se)
    assert shifted > 20 * null_se


def test_mmd_metric_with_median_bandwidth():
    metric = diffsde.MMD(max_points=300)  # subsamples 500 -> 300 points
    same = metric(_context(*_pair(5, 500, 500, 0.0), key=jr.key(5)))["mmd"]
    shifted = metric(_context(*_pair(7, 500, 500, MU), key=jr.key(7)))["mmd"]
    # null: sd ≈ 0.002 at 300 points (measured), so |MMD²| < 0.01 is ~5 sd; shifted ≈ 0.3
    assert abs(same) < 0.01 and shifted > 0.1, (same, shifted)


# exact score error ---------------------------------------------------------------------------


def _score_plus(dataset, sde, c, x, t):
    return dataset.score(x, t, sde) + c


def test_esm_is_zero_for_the_exact_score_and_c_squared_for_a_shifted_one():
    sde = diffsde.VP(2)
    metric = diffsde.ExactScoreError(n_times=8, n_points=128)
    x = jnp.zeros((4, 2))  # the metric draws its own x_t

    def esm(c):  # the score as a pytree (eqx.Partial): one compilation for both calls
        score = eqx.Partial(_score_plus, MIXTURE, sde, jnp.asarray(c))
        return metric(_context(x, x, dataset=MIXTURE, sde=sde, score=score))["esm"]

    assert esm([0.0, 0.0]) < 1e-10
    assert esm([0.3, -0.4]) == pytest.approx(0.25, rel=1e-4)  # |c|²


def test_esm_reports_nothing_where_the_score_is_unknown():
    metric = diffsde.ExactScoreError()
    x = jnp.zeros((4, 2))
    toy = diffsde.TwoDToy("moons")
    assert metric(_context(x, x, dataset=toy, score=lambda x, t: x)) == {}
    assert metric(_context(x, x, dataset=MIXTURE, score=None)) == {}


# moments --------------------------------------------------------------------------------------


def test_mixture_moments_are_exact():
    w = np.array([0.25, 0.5, 0.25])
    m = np.array([[-2.0, 0.0], [1.0, 1.0], [0.0, -1.5]])
    mean = w @ m
    cov = (w[:, None] * m).T @ m - np.outer(mean, mean) + 0.25 * np.eye(2)
    np.testing.assert_allclose(MIXTURE.mean(), mean, atol=1e-6)
    np.testing.assert_allclose(MIXTURE.covariance(), cov, atol=1e-5)


def test_moments_metric_against_exact_mixture_moments():
    n = N_MIXTURE
    x = MIXTURE.sample(key=jr.key(8), n=n)
    errors = diffsde.Moments()(_context(x, x[:10], dataset=MIXTURE))
    # the sample mean has covariance C/n; Ĉ_ij has variance Var(z_i z_j)/n (z centred)
    cov = np.asarray(MIXTURE.covariance())
    z = np.asarray(x) - np.asarray(MIXTURE.mean())
    product_var = np.var(z[:, :, None] * z[:, None, :], axis=0).sum()
    assert errors["mean_error"] < 4 * math.sqrt(np.trace(cov) / n), errors
    assert errors["cov_error"] < 4 * math.sqrt(product_var / n), errors
    # without exact moments the reference set is the target: identical sets give 0
    ref = diffsde.ArrayDataset(np.zeros((3, 2)), np.zeros((3, 2)))
    same = diffsde.Moments()(_context(x[:100], x[:100], dataset=ref))
    assert same["mean_error"] < 1e-6 and same["cov_error"] < 1e-5


# held-out data --------------------------------------------------------------------------------


def test_generative_held_out_draws_are_not_training_draws():
    key = jr.key(9)
    train = MIXTURE.sample(key=key, n=N_MIXTURE)
    held = MIXTURE.held_out(key=key, n=N_MIXTURE)
    assert not {tuple(r) for r in np.asarray(train).tolist()} & {
        tuple(r) for r in np.asarray(held).tolist()
    }
    np.testing.assert_array_equal(held, MIXTURE.sample(key=jr.fold_in(key, 1), n=N_MIXTURE))


def test_array_dataset_splits_deterministically_and_never_trains_on_test_rows():
    rows = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ds = diffsde.ArrayDataset.from_array(rows, test_fraction=0.2, seed=3)
    assert ds.train.shape == (80, 3) and ds.test.shape == (20, 3)
    again = diffsde.ArrayDataset.from_array(rows, test_fraction=0.2, seed=3)
    np.testing.assert_array_equal(ds.test, again.test)
    assert not np.array_equal(
        ds.test, diffsde.ArrayDataset.from_array(rows, test_fraction=0.2, seed=4).test
    )
    test_ids = set(np.asarray(ds.test[:, 0]).tolist())
    drawn = set(np.asarray(ds.sample(key=jr.key(0), n=500)[:, 0]).tolist())
    assert not drawn & test_ids and len(drawn) > 60  # with replacement, only training rows
    held = ds.held_out(key=jr.key(1), n=5)
    assert held.shape == (5, 3) and set(np.asarray(held[:, 0]).tolist()) <= test_ids
    assert ds.held_out(key=jr.key(1), n=1000).shape == (20, 3)  # up to n rows


def test_shipped_digits():
    ds = DigitsConfig().build()
    assert ds.dim == 64 and ds.image_shape == (8, 8)
    assert ds.train.shape == (1617, 64) and ds.test.shape == (180, 64)  # 1797 rows, 10% held out
    both = np.concatenate([ds.train, ds.test])
    assert both.min() == -1.0 and both.max() == 1.0
    assert np.allclose((both + 1) * 8, np.round((both + 1) * 8))  # pixels 0..16 mapped x/8 − 1
    np.testing.assert_array_equal(ds.test, DigitsConfig().build().test)
    assert not np.array_equal(ds.test, DigitsConfig(seed=1).build().test)
    raw = DigitsConfig(scale="raw", test_fraction=0.25).build()
    assert raw.test.shape == (449, 64) and raw.train.max() == 16.0  # round(1797 / 4)
    setup = diffsde.validate_text("sde: {type: vp}\ndata: {type: digits}\n")
    assert setup.dim == 64


# user files -----------------------------------------------------------------------------------

ROWS = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)


def _save(path, kind, arrays):
    if kind == "npy":
        np.save(path, next(iter(arrays.values())))
    elif kind == "npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for name, value in arrays.items():
                f.create_dataset(name, data=value)
    return str(path)


@pytest.mark.parametrize(
    "name, key", [("d.npy", None), ("d.npz", None), ("d.npz", "b"), ("d.h5", "grp/x")]
)
def test_file_dataset_round_trips(tmp_path, name, key):
    kind = name.split(".")[1]
    arrays = {"grp/x" if kind == "h5" else "b": ROWS}
    if key == "b":
        arrays["a"] = np.zeros((5, 2))
    ds = FileConfig(path=_save(tmp_path / name, kind, arrays), key=key).build()
    got = np.concatenate([ds.train, ds.test])
    assert ds.train.shape == (36, 3) and ds.image_shape is None
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(ROWS, axis=0))


def test_file_dataset_of_images_is_flattened(tmp_path):
    images = np.random.default_rng(1).integers(0, 255, size=(30, 4, 5), dtype=np.uint8)
    ds = FileConfig(path=_save(tmp_path / "im.hdf5", "h5", {"im": images})).build()
    assert ds.dim == 20 and ds.image_shape == (4, 5) and ds.train.dtype == jnp.float32


NAN_ROWS = ROWS.copy()
NAN_ROWS[7, 1] = np.nan
INF_ROWS = ROWS.copy()
INF_ROWS[3, 0] = np.inf

BAD_FILES = [
    ("missing", "gone.npy", None, None, "path", "file not found"),
    ("extension", "d.csv", None, None, "path", "unsupported file type '.csv'"),
    ("1-D", "d.npy", {"x": ROWS[:, 0]}, None, "path", "has shape (40,); expected rows"),
    ("4-D", "d.npz", {"x": ROWS.reshape(40, 3, 1, 1)}, None, "path", "has shape (40, 3, 1, 1)"),
    ("strings", "d.npy", {"x": np.array([["a"] * 3] * 40)}, None, "path", "has dtype <U1"),
    ("bool", "d.h5", {"x": ROWS > 0}, "x", "key", "has dtype bool"),
    (
        "NaN",
        "d.npy",
        {"x": NAN_ROWS},
        None,
        "path",
        "NaN or infinite values in 1 rows (first: row 7)",
    ),
    ("inf", "d.h5", {"x": INF_ROWS}, "x", "key", "NaN or infinite values in 1 rows (first: row 3)"),
    ("too few rows", "d.npy", {"x": ROWS[:3]}, None, "path", "3 rows are too few"),
    ("which array", "d.npz", {"a": ROWS, "b": ROWS}, None, "key", "holds 2 arrays (a, b)"),
    ("wrong key", "d.h5", {"a": ROWS}, "b", "key", "no array 'b'"),
    ("key on npy", "d.npy", {"x": ROWS}, "x", "key", "a .npy file, which holds a single array"),
    ("corrupt", "d.npz", "garbage", None, "path", "cannot read"),
    # float64 data beyond float32's range: finite in the file, infinite where the model computes
    (
        "beyond float32",
        "d.npy",
        {"x": ROWS.astype(np.float64) * 1e39},
        None,
        "path",
        "beyond ±3.4e38",
    ),
]


def test_hdf5_data_kept_in_another_file_is_not_read(tmp_path):
    """An HDF5 dataset whose bytes live in an external file (which could be a FIFO that never
    answers) is refused before it is read. Mutation: dropping the external-storage check reads
    the external file (a plain one here, so nothing hangs) and no error is raised."""
    (tmp_path / "raw.bin").write_bytes(np.zeros((10, 2)).tobytes())
    with h5py.File(tmp_path / "ext.h5", "w") as f:
        f.create_dataset(
            "x", shape=(10, 2), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 160)]
        )
    with pytest.raises(diffsde.SpecFieldError, match="keeps its data in other files"):
        FileConfig(path=str(tmp_path / "ext.h5")).build()


def test_encrypted_npz_is_a_located_error(tmp_path):
    path = tmp_path / "enc.npz"
    np.savez(path, x=ROWS)
    data = bytearray(path.read_bytes())
    data[6] |= 1  # the local header's "encrypted" flag
    start = data.rfind(b"PK\x01\x02")
    data[start + 8] |= 1  # and the central directory's
    path.write_bytes(bytes(data))
    with pytest.raises(diffsde.SpecFieldError, match="cannot read"):
        FileConfig(path=str(path)).build()


@pytest.mark.parametrize(
    "name, arrays, key, field, fragment",
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_files_say_what_is_wrong(tmp_path, name, arrays, key, field, fragment):
    path = tmp_path / name
    if isinstance(arrays, str):
        path.write_text(arrays)
    elif arrays is not None:
        _save(path, name.split(".")[1], arrays)
    with pytest.raises(diffsde.SpecFieldError) as err:
        FileConfig(path=str(path), key=key).build()
    assert err.value.field == field and fragment in err.value.message, err.value.message
    if name != "d.csv":
        assert str(path) in err.value.message  # the file is named


def test_spec_file_paths_resolve_against_the_spec_directory(tmp_path, monkeypatch):
    with pytest.raises(diffsde.SpecError) as err:
        diffsde.validate_text("sde: {type: vp}\ndata: {type: file, path: missing.npy}\n", "s.yaml")
    (issue,) = err.value.issues
    assert str(issue).startswith("s.yaml:2:26 data.path: file not found: ")
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "x.npy", ROWS)
    spec = tmp_path / "sub" / "spec.yaml"
    spec.write_text("sde: {type: vp}\ndata: {type: file, path: x.npy}\n")
    monkeypatch.chdir(tmp_path)
    setup = diffsde.load_spec("sub/spec.yaml")
    assert setup.dim == 3 and setup.spec.data.path == str(tmp_path / "sub" / "x.npy")


def test_metrics_in_a_spec():
    setup = diffsde.validate_text(
        "sde: {type: vp}\ndata: {type: gmm}\neval:\n  metrics:\n"
        "    - {type: sliced_w2, projections: 16}\n    - {type: mmd}\n    - {type: esm}\n"
        "    - {type: moments}\n"
    )
    metrics = [m.build() for m in setup.spec.eval.metrics]
    assert isinstance(metrics[0], diffsde.SlicedWasserstein) and metrics[0].projections == 16
    assert all(isinstance(m, diffsde.AbstractMetric) for m in metrics)
    with pytest.raises(diffsde.SpecError, match="5:38 eval.metrics.0.projections"):
        diffsde.validate_text(
            "sde: {type: vp}\ndata: {type: gmm}\neval:\n  metrics:\n"
            "    - {type: sliced_w2, projections: 0}\n"
        )
