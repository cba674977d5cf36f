"""The README's result picture: generated samples next to held-out data, one panel per run.

    .venv/bin/pip install matplotlib            # only this script needs it
    .venv/bin/python bench/figure_samples.py --runs-dir runs -o bench/figures/samples.png

Reads only what the run store holds (samples, reference, eval); 2-D runs are scatter plots,
image runs (digits) a grid of generated images.
"""

import argparse
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import diffsde  # noqa: E402


def _panel(ax, record):
    samples, reference = record.samples["samples"], record.samples["reference"]
    title = f"{record.name}\nsliced W2² {record.eval.get('sliced_w2', float('nan')):.3g}"
    if samples.shape[1] == 2:
        ax.scatter(*reference[:2000].T, s=1, c="0.75", label="held-out data")
        ax.scatter(*samples[:2000].T, s=1, c="C0", label="samples")
        ax.set_aspect("equal")
    else:
        side = int(math.isqrt(samples.shape[1]))
        tiles = np.clip(samples[:36].reshape(6, 6, side, side), -1, 1)
        ax.imshow(tiles.transpose(0, 2, 1, 3).reshape(6 * side, 6 * side), cmap="gray_r")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("-o", "--output", default="bench/figures/samples.png")
    args = parser.parse_args()
    records = [r for r in diffsde.runs.list_runs(args.runs_dir) if "samples" in r.samples]
    if not records:
        raise SystemExit(f"no finished runs with samples in {args.runs_dir}")
    cols = min(4, len(records))
    rows = math.ceil(len(records) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax, record in zip(axes.flat, records, strict=False):
        _panel(ax, record)
    for ax in axes.flat[len(records) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
