"""How long the run store takes: appending a dispatch's rows, listing a store, reading one run,
summarising the listing, and what the dashboard's Monitor reads on each refresh.

    .venv/bin/python bench/run_store.py [--runs 200] [--rows 5000] [--repeats 5]

Builds a store in a temporary directory: ``--runs`` runs of ``--rows`` metric rows each (in
dispatches of 100 rows, with a result of 4000×2 samples), plus one damaged entry of each kind
the listing must pass over (truncated, empty, random bytes, a directory named run.json, a
symbolic link out of the store, a format-1 file). Prints medians of ``--repeats`` repeats.
"""

import argparse
import os
import pathlib
import statistics
import tempfile
import time

import numpy as np

from diffsde import runs

SPEC = "name: bench\nseed: 0\nsde: {type: vp}\ndata: {type: toy, name: moons}\n"
METRICS = ("step", "wall_time", "loss", "lr", "grad_norm")


def rows(start: int, n: int) -> dict[str, np.ndarray]:
    step = np.arange(start, start + n, dtype=np.float64)
    return {"step": step, "wall_time": step, "loss": 1 / step, "lr": step * 0, "grad_norm": step}


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = pathlib.Path(tmp) / "runs"
        append_times = []
        for i in range(args.runs):
            with runs.RunWriter.create(store, f"run{i}", SPEC, {}, metrics=METRICS) as writer:
                for start in range(1, args.rows + 1, 100):
                    t = time.perf_counter()
                    writer.append_metrics(rows(start, min(100, args.rows + 1 - start)))
                    append_times.append(time.perf_counter() - t)
                samples = np.random.default_rng(i).normal(size=(4000, 2))
                writer.write_results({"sliced_w2": 0.1}, {"samples": samples}, step=args.rows)
        for name in ("truncated", "empty", "random", "dir"):
            (store / name).mkdir()
        (store / "truncated" / "run.json").write_text('{"format": "diffsde-r')
        (store / "empty" / "run.json").write_bytes(b"")
        (store / "random" / "run.json").write_bytes(os.urandom(4096))
        (store / "dir" / "run.json").mkdir()
        (store / "old").mkdir()
        (store / "old" / "run.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
        (store / "link").symlink_to(pathlib.Path(tmp))

        problems: list = []
        listed = runs.list_runs(store, problems=problems)
        assert len(listed) == args.runs and len(problems) == 6, (len(listed), problems)
        listing = median_seconds(lambda: runs.list_runs(store), args.repeats)
        one = listed[0].path
        read = median_seconds(lambda: runs.open_run(one), args.repeats)
        arrays = median_seconds(lambda: runs.open_run(one).samples["samples"], args.repeats)
        summaries = median_seconds(lambda: [runs.summarise(r) for r in listed], args.repeats)
        # What the dashboard's Monitor reads every 2 s while a run trains: each entry's state
        # (its status file) and the watched run, not the whole listing.
        refresh = median_seconds(
            lambda: ([runs.run_state(e.path) for e in runs.scan_store(store)], runs.open_run(one)),
            args.repeats,
        )
    append = 1e3 * statistics.median(append_times)
    print(f"append 100 rows (median of {len(append_times)}): {append:.3f} ms")
    print(f"list_runs, {args.runs} runs of {args.rows} rows + 6 damaged entries: {listing:.3f} s")
    print(f"open_run, one run: {1e3 * read:.2f} ms; with its 4000x2 samples: {1e3 * arrays:.2f} ms")
    print(f"summarise, {args.runs} listed runs: {1e3 * summaries:.2f} ms")
    print(f"a Monitor refresh (run_state of every entry, one open_run): {1e3 * refresh:.2f} ms")


if __name__ == "__main__":
    main()
