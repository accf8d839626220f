"""Does the ranking of architectures survive another training seed, or a deeper network? (`001_*` §5.3,
Figs. 8-9.)

    python experiments/ranking_stability.py            # CPU size: a few minutes on 2 cores

`--archs` architectures are sampled uniformly from a ConvNet space and trained from scratch three times
with the same protocol: with training seed A, with seed B, and as the *deep* network with seed A. The
deep network repeats every layer `--depth-multiplier` times (same width and kernel) and pools after the
same layers, the ConvNet analogue of `001_*`'s stacking more cells of the same cell. Each run trains
`--epochs` epochs on the first `--train-images` images of the training set (search train +
validation) and is tested on `--test-images` test images. Reported: Kendall tau of the test-accuracy
rankings (seed A vs seed B; shallow vs deep, both seed A), the mean, std and max of the per-architecture
accuracy change, and the largest rank shift; the plot draws every architecture's rank in both runs.

Why this space: `001_*` uses 32 DARTS architectures trained for 600 epochs, out of reach of a 2-core CPU
(a small DARTS network costs seconds per step there). Plain ConvNets train on the layer-wise CPU engine
whose compiled programs are shared by every architecture (`nasjax.train.layered`), so three trainings
of 16 networks take minutes; by default the space is LaNAS's motivating space at half its widths
(C in {16, 32}, K in {3, 5}, depth 1-4), which keeps the deep (doubled) networks affordable too.

Outputs in --out (default runs/ranking_stability): accuracies.csv (one row per architecture),
summary.csv, summary.md, rank_changes.png. Same --seed, same numbers.

Full CIFAR-10 on an accelerator (001_*'s 32 architectures, the motivating space at full width):

    python experiments/ranking_stability.py --out runs/ranking_full --archs 32 --channels 32 64 \\
        --max-depth 5 --epochs 50 --train-images 0 --test-images 0 --cutout 16
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import jax
import numpy as np


from nasjax import metrics
from nasjax.data import load_cifar10
from nasjax.experiment import final_data
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.outputs import publish, pyplot, save_figure
from nasjax.spaces import ConvNetSpace
from nasjax.train import TrainConfig, arch_key, train_population

COMPARISONS = (("seed", "acc_seed_a", "acc_seed_b"), ("depth", "acc_seed_a", "acc_deep"))
LABELS = {"acc_seed_a": "seed A", "acc_seed_b": "seed B", "acc_deep": "deep, seed A"}


def deepen(space: ConvNetSpace, archs: np.ndarray, multiplier: int) -> tuple[ConvNetSpace, np.ndarray]:
    """The deep space and encodings: every layer repeated `multiplier` times, pooling after the same
    original layers (pool_every scaled by the multiplier)."""
    deep = dataclasses.replace(space, min_depth=space.min_depth * multiplier,
                               max_depth=space.max_depth * multiplier, pool_every=space.pool_every * multiplier)
    return deep, np.stack([deep.encode([layer for layer in space.layers(a) for _ in range(multiplier)])
                           for a in archs])


def test_accuracies(space, archs, data, config: TrainConfig, key) -> np.ndarray:
    """float64 (n,) test accuracy (%) of each architecture trained with training key arch_key(key, 0)
    (the same for every architecture); NaN for a failed (diverged) run."""
    keys = [arch_key(jax.random.key_data(key), 0)] * len(archs)
    results, _ = train_population(space, archs, data, config, keys=keys)
    return np.array([np.nan if r.failed else 100 * r.test_acc for r in results])


def rank(accs: np.ndarray) -> np.ndarray:
    """1-based rank, 1 = best; ties broken by position (stable), failed runs last."""
    order = np.argsort(-np.where(np.isfinite(accs), accs, -np.inf), kind="stable")
    ranks = np.empty(len(accs), int)
    ranks[order] = np.arange(1, len(accs) + 1)
    return ranks


def compare(rows: list[dict]) -> list[dict]:
    """Per comparison: Kendall tau, accuracy change (mean, std, max over architectures), max rank shift."""
    out = []
    for name, a, b in COMPARISONS:
        x, y = np.array([r[a] for r in rows]), np.array([r[b] for r in rows])
        change = np.abs(x - y)
        shift = np.abs(rank(x) - rank(y))
        out.append({"comparison": name, "runs": f"{LABELS[a]} vs {LABELS[b]}", "archs": len(rows),
                    "kendall_tau": float(metrics.kendall_tau(x, y)),
                    "abs_change_mean": float(np.nanmean(change)), "abs_change_std": float(np.nanstd(change)),
                    "abs_change_max": float(np.nanmax(change)), "max_rank_shift": int(shift.max())})
    return out


def plot(rows: list[dict], summary: list[dict], path: pathlib.Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(8, 5), sharey=True)
    for ax, (name, a, b), s in zip(axes, COMPARISONS, summary):
        ra, rb = rank(np.array([r[a] for r in rows])), rank(np.array([r[b] for r in rows]))
        for i in range(len(rows)):
            ax.plot([0, 1], [ra[i], rb[i]], marker="o", ms=3, lw=1,
                    color=plt.cm.viridis(ra[i] / (len(rows) + 1)))
        ax.set_xticks([0, 1], [LABELS[a], LABELS[b]])
        ax.set(xlim=(-0.2, 1.2), title=f"{name}: Kendall tau {s['kendall_tau']:.2f}")
    axes[0].set_ylabel("rank by test accuracy (1 = best)")
    axes[0].set_yticks(range(1, len(rows) + 1, max(1, len(rows) // 16)))
    axes[0].invert_yaxis()
    save_figure(fig, path)


def table(summary: list[dict]) -> str:
    lines = ["| comparison | architectures | Kendall tau | mean abs. accuracy change (p.p.) | max change (p.p.) "
             "| max rank shift |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['runs']} | {s['archs']} | {s['kendall_tau']:.3f} | {s['abs_change_mean']:.2f} ± "
              f"{s['abs_change_std']:.2f} | {s['abs_change_max']:.2f} | {s['max_rank_shift']} |" for s in summary]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--seed", type=SEED, default=0, help="samples the architectures and the data split; "
                   "training seeds A and B derive from it")
    p.add_argument("--data-dir", type=folder, default=None, help="CIFAR-10 folder (default: $NASJAX_DATA_DIR)")
    p.add_argument("--out", type=folder, default="runs/ranking_stability")
    p.add_argument("--archs", type=integer(2), default=16)
    p.add_argument("--channels", type=COUNT, nargs="+", default=[16, 32])
    p.add_argument("--kernels", type=COUNT, nargs="+", default=[3, 5])
    p.add_argument("--max-depth", type=COUNT, default=4)
    p.add_argument("--depth-multiplier", type=integer(2), default=2, help="layer repeats of the deep network")
    p.add_argument("--epochs", type=COUNT, default=2)
    p.add_argument("--train-images", type=IMAGES, default=1024, help="0: all of train + validation")
    p.add_argument("--test-images", type=IMAGES, default=0, help="0: all")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--lr", type=real(0, lo_open=True), default=0.05)
    p.add_argument("--cutout", type=integer(0, 32), default=0, help="cutout size in pixels (0: none)")
    args = p.parse_args(argv)
    check((args.train_images == 0 or args.train_images >= args.batch_size,
           f"--train-images {args.train_images} is smaller than one batch ({args.batch_size})"))
    try:
        args.space = ConvNetSpace(channels=tuple(args.channels), kernels=tuple(args.kernels),
                                  max_depth=args.max_depth)
    except ValueError as e:
        p.error(str(e))
    if args.archs > args.space.size():
        p.error(f"--archs {args.archs} exceeds the {args.space.size()} networks of the space")
    return args


def main(argv=None) -> int:
    return run_main(lambda: ranking_stability(parse_args(argv)))


def ranking_stability(args: argparse.Namespace) -> None:
    """The whole experiment: prints its summary, writes its files."""
    t0 = time.perf_counter()
    space = args.space
    check_data_dir(args.data_dir)
    data = final_data(load_cifar10(args.data_dir, split_seed=args.seed), args.train_images,
                      args.test_images)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, cutout=args.cutout,
                         eval_batch_size=args.batch_size)
    k_archs, k_a, k_b = jax.random.split(jax.random.key(args.seed), 3)
    members = space.enumerate()  # distinct architectures, uniformly without replacement
    archs = members[np.asarray(jax.random.choice(k_archs, len(members), (args.archs,), replace=False))]
    deep_space, deep = deepen(space, archs, args.depth_multiplier)
    print(f"{args.archs} architectures of {space}; {args.epochs} epochs on {len(data.train_labels)} "
          f"images, tested on {len(data.test_labels)}; runs: seed A, seed B, x{args.depth_multiplier} "
          "depth with seed A", flush=True)
    acc = {"acc_seed_a": test_accuracies(space, archs, data, config, k_a),
           "acc_seed_b": test_accuracies(space, archs, data, config, k_b),
           "acc_deep": test_accuracies(deep_space, deep, data, config, k_a)}
    rows = [{"arch": i, "description": space.describe(a), "encoding": " ".join(map(str, a)),
             **{k: float(v[i]) for k, v in acc.items()},
             **{k.replace("acc", "rank"): int(rank(v)[i]) for k, v in acc.items()}}
            for i, a in enumerate(archs)]
    summary = compare(rows)
    text = (f"# Ranking stability (`001_*` §5.3): {args.archs} ConvNets, test accuracy (%)\n\n"
            + table(summary) + "\n")
    publish(args.out, {"accuracies.csv": rows, "summary.csv": summary}, text,
            {"rank_changes.png": lambda path: plot(rows, summary, path)}, t0)


if __name__ == "__main__":
    sys.exit(main())
