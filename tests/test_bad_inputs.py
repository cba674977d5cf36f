"""The corpus of bad specs and data files (tests/bad_inputs/): each gives exactly one located
`file:line:col key: message` at validation, within a time bound, without a traceback, hang or
unbounded memory.

tests/bad_inputs/expected.yaml maps each entry to where its error is and a fragment of the
message. Data files and the two specs over a megabyte are generated here (DATA_FILES,
GENERATED_SPECS) rather than committed; the corpus on disk stays small.
"""

import io
import os
import pathlib
import resource
import shutil
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import h5py
import numpy as np
import pytest
import yaml

from diffsde._spec._validate import SpecError, load_spec

CORPUS = pathlib.Path(__file__).parent / "bad_inputs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
SECONDS = 20.0
"""The most one entry may take to validate in-process (the slowest, cold, takes a few)."""
MAX_RSS_GROWTH = 1 << 30
"""The most the process's peak memory may grow while validating one entry."""


def _npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def deflate_bomb(path: pathlib.Path, member_bytes: int) -> None:
    """A real .npz deflate bomb: one member of ``member_bytes`` (an .npy header and zeros),
    compressed by repeating one fully flushed deflate block of 1 MiB of zeros, so writing it
    takes milliseconds. The archive is valid: zipfile would decompress it, CRC and all."""
    block = 1 << 20
    count = member_bytes // block
    header = _npy_header((count * block // 16, 2))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    data = head + zeros * count + compressor.flush()
    crc = zlib.crc32(header)
    for _ in range(count):
        crc = zlib.crc32(bytes(block), crc)
    size = len(header) + count * block
    # a stored member of the right length, then its method, CRC and sizes patched to deflate's
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.npy", data)
    raw = bytearray(path.read_bytes())
    for signature, method_at, crc_at in ((b"PK\x03\x04", 8, 14), (b"PK\x01\x02", 10, 16)):
        at = raw.index(signature)
        struct.pack_into("<H", raw, at + method_at, zipfile.ZIP_DEFLATED)
        struct.pack_into("<3L", raw, at + crc_at, crc, len(data), size)
    path.write_bytes(bytes(raw))


def _h5(path: pathlib.Path, build) -> None:
    with h5py.File(path, "w") as f:
        build(f)


rng = np.random.default_rng(0)
DATA_FILES = {
    "good.npy": lambda p: np.save(p, rng.normal(size=(40, 2))),
    "huge_header.npy": lambda p: p.write_bytes(_npy_header((10**12, 2)) + bytes(64)),
    "truncated.npy": lambda p: p.write_bytes(_npy_header((1000, 2)) + bytes(800)),
    "object.npy": lambda p: np.save(p, np.array([[{}, 1]], dtype=object), allow_pickle=True),
    "complex.npy": lambda p: np.save(p, np.ones((10, 2), complex)),
    "strings.npy": lambda p: np.save(p, np.array([["abc", "def"]] * 10)),
    "structured.npy": lambda p: np.save(p, np.zeros((10, 2), dtype=[("a", "<f4"), ("b", "<i4")])),
    "vector.npy": lambda p: np.save(p, np.ones(10)),
    "four_d.npy": lambda p: np.save(p, np.ones((4, 2, 2, 2))),
    "empty.npy": lambda p: p.write_bytes(b""),
    "random.npy": lambda p: p.write_bytes(rng.bytes(4096)),
    "bad_header.npy": lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8'  }\n"),
    "nan_rows.npy": lambda p: np.save(
        p, np.where(np.arange(40)[:, None] % 13 == 1, np.nan, 1.0) * np.ones((40, 2))
    ),
    "two_rows.npy": lambda p: np.save(p, np.ones((2, 2))),
    "bomb.npz": lambda p: deflate_bomb(p, 1 << 30),
    "header_bomb.npz": lambda p: np.savez(p.with_suffix(""), a=np.zeros(1)) or _patch_npz_shape(p),
    "not_zip.npz": lambda p: p.write_bytes(b"PK\x03\x04 not really a zip file"),
    "truncated.npz": lambda p: _truncated_npz(p),
    "two.npz": lambda p: np.savez(p.with_suffix(""), a=np.ones((10, 2)), b=np.ones((10, 2))),
    "object.npz": lambda p: np.savez(p.with_suffix(""), a=np.array([[{}, 1]], dtype=object)),
    "huge.h5": lambda p: _h5(
        p, lambda f: f.create_dataset("x", shape=(10**9, 1000), chunks=(1, 1000), dtype="f4")
    ),
    "truncated.h5": lambda p: _truncated_h5(p),
    "strings.h5": lambda p: _h5(
        p, lambda f: f.create_dataset("x", data=np.array([[b"ab", b"cd"]] * 10))
    ),
    "a_directory.npy": lambda p: p.mkdir(),
    "fifo.npy": lambda p: os.mkfifo(p),
    "zero.npy": lambda p: p.symlink_to("/dev/zero"),
    "rows.csv": lambda p: p.write_text("1,2\n3,4\n"),
}
"""Data files of the data_* entries, written into the directory the specs are copied to."""


def _patch_npz_shape(path: pathlib.Path) -> None:
    """An .npz whose member's .npy header claims 10¹² rows (its zip sizes are honest)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.npy", _npy_header((10**12, 2)) + bytes(64))


def _truncated_npz(path: pathlib.Path) -> None:
    np.savez_compressed(path.with_suffix(""), a=rng.normal(size=(100, 2)))
    path.write_bytes(path.read_bytes()[:300])


def _truncated_h5(path: pathlib.Path) -> None:
    _h5(path, lambda f: f.create_dataset("x", data=rng.normal(size=(1000, 2))))
    path.write_bytes(path.read_bytes()[:3000])


GENERATED_SPECS = {
    "yaml_over_one_mebibyte": (
        lambda: "sde: {type: vp}\ndata: {type: toy, name: moons}\n" + "# padding\n" * 120_000,
        "1:1",
        "over 1,048,576 bytes (1 MiB)",
    ),
    "expr_one_megabyte": (
        lambda: (
            "sde: {type: affine, f: '" + "t+" * 500_000 + "t', g: '1.0'}\n"
            "data: {type: toy, name: moons}\n"
        ),
        "1:25 sde.f:",
        "the limit is 10,000",
    ),
}
"""Specs too large to commit: name -> (text, at, says)."""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
    """The corpus specs and their data files, together in one directory."""
    root = tmp_path_factory.mktemp("bad_inputs")
    for spec in CORPUS.glob("*.yaml"):
        if spec.name != "expected.yaml":
            shutil.copy(spec, root / spec.name)
    for name, make in DATA_FILES.items():
        make(root / name)
    for name, (make, _, _) in GENERATED_SPECS.items():
        (root / f"{name}.yaml").write_text(make())
    return root


ENTRIES = {name: (e["at"], e["says"]) for name, e in EXPECTED.items()}
ENTRIES.update({name: (at, says) for name, (_, at, says) in GENERATED_SPECS.items()})


def test_the_corpus_is_large_small_and_complete():
    """At least 100 entries, every committed spec has an expectation, under 1 MB on disk."""
    specs = {p.stem for p in CORPUS.glob("*.yaml")} - {"expected"}
    assert specs == set(EXPECTED)
    assert len(ENTRIES) >= 100
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 1_000_000


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_bad_input_gives_one_located_line(corpus, monkeypatch, name):
    """Validating the entry raises SpecError with one line `file:line:col key: message` that
    starts with the expected location and holds the expected fragment, within SECONDS and
    without the peak memory growing by more than MAX_RSS_GROWTH.

    Mutation: dropping `strict=True` from STRICT lets num_learning_rate_yes validate; skipping
    the truncation check of _npy_header turns data_npy_truncated into numpy's own "Failed to
    read" message; skipping the member-size check of _read_npz leaves data_npz_bomb to the
    header check (no "decompresses to"). Both fail here. (Removing the alias budget or the
    power check makes validation hang: test_the_cli_reports_it_in_bounded_memory catches that
    with its timeout.)"""
    import diffsde._builtin.datasets as datasets
    import diffsde._spec._memory as memory

    monkeypatch.setattr(datasets, "MAX_DATA_BYTES", 64 << 20)  # so a 1 GiB bomb is over it
    # The same limit on every machine (a GPU host has more than 89 GiB, this one 23 GiB):
    monkeypatch.setattr(memory, "device_memory", lambda: (16 << 30, "this machine has"))
    at, says = ENTRIES[name]
    path = corpus / f"{name}.yaml"
    before, start = _peak_rss(), time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_spec(path)
    elapsed = time.perf_counter() - start
    lines = str(err.value).splitlines()
    assert len(lines) == 1, str(err.value)
    assert lines[0].startswith(f"{path}:{at}"), lines[0]
    assert says in lines[0], lines[0]
    assert elapsed < SECONDS, f"{elapsed:.1f} s"
    assert _peak_rss() - before < MAX_RSS_GROWTH


CLI_ENTRIES = [
    "yaml_alias_bomb",
    "yaml_recursive_alias",
    "expr_power_tower",
    "expr_one_megabyte",
    "data_npy_huge_header",
    "data_npz_bomb",
    "mem_n_samples",
]
ADDRESS_SPACE = 6 << 30
"""The address-space limit (ulimit -v) of the CLI subprocesses: JAX reserves a few GiB of
virtual memory on start; an input that allocated its claimed size would exceed this."""


@pytest.mark.parametrize("name", CLI_ENTRIES)
def test_the_cli_reports_it_in_bounded_memory(corpus, name):
    """`diffsde validate` in a subprocess under an address-space limit: exit code 2, the located
    line and the summary on stderr, no traceback, within a minute.

    Mutation: without the alias budget of BoundedLoader (`if size > MAX_NODES`) the
    yaml_alias_bomb entry runs past the 60 s timeout (checked); without the power bound of
    _fold, expr_power_tower does too."""
    at, says = ENTRIES[name]
    path = corpus / f"{name}.yaml"
    code = (
        "import sys, resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))\n"
        "import diffsde._builtin.datasets as d\n"
        "d.MAX_DATA_BYTES = 64 << 20\n"
        "from diffsde._cli import main\n"
        "sys.exit(main(['validate', sys.argv[1]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"{path}:{at}") and says in lines[0], result.stderr
    assert lines[-1] == f"{path}: 1 problem"


def test_many_bad_values_are_reported_in_bounded_time_and_size(tmp_path):
    """60 000 bad list items, and one 200 kB string aliased 4 000 times: at most MAX_ISSUES
    lines and a count of the rest, each line short, in seconds. Mutation: quoting the whole value
    (`!r` instead of `_brief`) fails the line-length check (checked); the pairwise comparison
    `_one_error_per_union` had before took over 60 s on the first (the review's measurement)."""
    from diffsde._spec._validate import MAX_ISSUES

    head = "sde: {type: vp}\ndata: {type: toy, name: moons}\neval:\n  save_times: ["
    many = tmp_path / "many.yaml"
    many.write_text(head + ", ".join(["a"] * 60_000) + "]\n")
    long = tmp_path / "long.yaml"
    long.write_text(head + f"&s '{'x' * 200_000}', " + ", ".join(["*s"] * 4000) + "]\n")
    for path in (many, long):
        start = time.perf_counter()
        with pytest.raises(SpecError) as err:
            load_spec(path)
        assert time.perf_counter() - start < SECONDS
        lines = str(err.value).splitlines()
        assert len(lines) == MAX_ISSUES + 1 and "more problems" in lines[-1]
        assert max(len(line) for line in lines) < 400
