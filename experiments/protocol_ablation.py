"""How much does the training protocol move accuracy, next to the architecture? (`001_*` §4, Fig. 3.)

    python experiments/protocol_ablation.py            # CPU size (see the wall time it prints)

`--archs` genotypes are sampled uniformly from the DARTS space (one key, `--seed`) and each is trained
from scratch under every protocol of `PROTOCOLS`, cumulative as in `001_*` Fig. 3: base (DARTS'
protocol with every trick off), + cutout 16, + drop-path 0.2 (ramped linearly over the epochs, as
DARTS does), + auxiliary tower 0.4, + AutoAugment, + longer training (x`--longer` epochs; 001_*: 1,500
instead of 600), + more channels (x`--wider` initial channels; 001_*: 50 instead of 36). The protocols
are `nasjax.train.protocol.PRESETS` sized by the flags (epochs, cells, channels, batch). Every run of a
genotype uses the same training key, whatever the protocol (`001_*`: same augment seed for all), and is
tested on `--test-images` test images after training on `--train-images` images of train +
validation. Reported per protocol: mean, std, min and max test accuracy over the genotypes, and the
spread between protocols next to the spread between genotypes.

Outputs in --out (default runs/protocol_ablation): runs.csv (one row per genotype and protocol),
summary.csv, summary.md, protocols.png. Same --seed, same numbers.

Full CIFAR-10 on an accelerator (001_*'s setting: 20 cells, 36 channels, 600 epochs, batch 96):

    python experiments/protocol_ablation.py --out runs/protocol_full --epochs 600 --layers 20 \\
        --channels 36 --batch-size 96 --train-images 0 --test-images 0
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np


from nasjax.data import load_cifar10
from nasjax.experiment import final_data
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.outputs import publish, pyplot, save_figure
from nasjax.spaces import DARTSSpace
from nasjax.train import TrainConfig, arch_key, preset, train_population

# name -> (preset of nasjax.train.protocol, longer training (x --longer), more channels (x --wider))
PROTOCOLS = {
    "base": ("base", False, False),
    "+cutout": ("cutout", False, False),
    "+drop-path": ("cutout+droppath", False, False),
    "+auxiliary": ("+auxiliary", False, False),
    "+autoaugment": ("+autoaugment", False, False),
    "+longer": ("+autoaugment", True, False),
    "+channels": ("+autoaugment", True, True),
}


def protocol_config(name: str, args) -> tuple[DARTSSpace, TrainConfig]:
    """The network (a DARTS space of the protocol's width) and TrainConfig of protocol `name` at the
    flags' size; widths are rounded to even (DARTS' FactorizedReduce halves them)."""
    base, longer, wider = PROTOCOLS[name]
    channels = 2 * round(args.channels * (args.wider if wider else 1) / 2)
    return (DARTSSpace(init_channels=channels, layers=args.layers),
            preset(base, epochs=round(args.epochs * (args.longer if longer else 1)), batch_size=args.batch_size,
                   eval_batch_size=args.batch_size, lr=args.lr))


def summarize(runs: list[dict], protocols: list[str]) -> list[dict]:
    out = []
    for name in protocols:
        accs = np.array([r["test_acc"] for r in runs if r["protocol"] == name], np.float64)
        ok = accs[np.isfinite(accs)]
        out.append({"protocol": name, "archs": len(accs), "failed": int(len(accs) - len(ok)),
                    "mean": float(ok.mean()) if len(ok) else float("nan"),
                    "std": float(ok.std()) if len(ok) else float("nan"),
                    "min": float(ok.min()) if len(ok) else float("nan"),
                    "max": float(ok.max()) if len(ok) else float("nan")})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| protocol | genotypes | test accuracy (%) mean ± std | min | max |", "|---|---|---|---|---|"]
    lines += [f"| {s['protocol']} | {s['archs'] - s['failed']}/{s['archs']} | {s['mean']:.2f} ± {s['std']:.2f} "
              f"| {s['min']:.2f} | {s['max']:.2f} |" for s in summary]
    means = [s["mean"] for s in summary]
    spread = max(means) - min(means)
    within = np.nanmean([s["max"] - s["min"] for s in summary])
    return "\n".join(lines) + (f"\n\nSpread of the protocol means: {spread:.2f} p.p.; mean spread between "
                               f"genotypes within a protocol (max - min): {within:.2f} p.p.")


def plot(summary: list[dict], runs: list[dict], path: pathlib.Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, s in enumerate(summary):
        accs = [r["test_acc"] for r in runs if r["protocol"] == s["protocol"]]
        ax.scatter(np.full(len(accs), i), accs, s=10, color="0.6", zorder=1)
        ax.errorbar(i, s["mean"], yerr=s["std"], fmt="o", color="C0", capsize=3, zorder=2)
        ax.scatter([i, i], [s["min"], s["max"]], marker="_", s=120, color="C3", zorder=3)
    ax.set_xticks(range(len(summary)), [s["protocol"] for s in summary], rotation=30, ha="right")
    ax.set(ylabel="test accuracy (%)", title="Random DARTS genotypes under cumulative training protocols")
    save_figure(fig, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--seed", type=SEED, default=0, help="samples the genotypes, the split and the training key")
    p.add_argument("--data-dir", type=folder, default=None, help="CIFAR-10 folder (default: $NASJAX_DATA_DIR)")
    p.add_argument("--out", type=folder, default="runs/protocol_ablation")
    p.add_argument("--archs", type=COUNT, default=8, help="random genotypes (001_*: 8)")
    p.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    p.add_argument("--epochs", type=COUNT, default=2,
                   help="epochs of every protocol but the longer ones (>= 2 for drop-path to act: DARTS' ramp "
                        "is 0 in the first epoch)")
    p.add_argument("--longer", type=real(1, 1000), default=2.5, help="epoch factor of +longer (001_*: 1500/600)")
    p.add_argument("--wider", type=real(1, 100), default=50 / 36, help="channel factor of +channels (001_*: 50/36)")
    p.add_argument("--layers", type=integer(3), default=5, help="cells")
    p.add_argument("--channels", type=COUNT, default=8, help="initial channels (even)")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--lr", type=real(0, lo_open=True), default=0.025)
    p.add_argument("--train-images", type=IMAGES, default=512, help="0: all of train + validation")
    p.add_argument("--test-images", type=IMAGES, default=512, help="0: all")
    args = p.parse_args(argv)
    check((args.channels % 2 == 0, f"--channels must be even (a reduction cell halves them), got {args.channels}"),
          (args.train_images == 0 or args.train_images >= args.batch_size,
           f"--train-images {args.train_images} is smaller than one batch ({args.batch_size})"))
    return args


def main(argv=None) -> int:
    return run_main(lambda: protocol_ablation(parse_args(argv)))


def protocol_ablation(args: argparse.Namespace) -> None:
    """The whole experiment: prints its summary, writes its files."""
    t0 = time.perf_counter()
    space = DARTSSpace()  # genotypes only: every protocol's network has the same genotype encoding
    check_data_dir(args.data_dir)
    data = final_data(load_cifar10(args.data_dir, split_seed=args.seed), args.train_images,
                      args.test_images)
    k_archs, k_train = jax.random.split(jax.random.key(args.seed))
    archs = np.asarray(space.sample(k_archs, args.archs))
    keys = [arch_key(jax.random.key_data(k_train), 0)] * args.archs
    print(f"{args.archs} random DARTS genotypes x {len(args.protocols)} protocols; {args.layers} cells, "
          f"{args.channels} channels, {args.epochs} epochs on {len(data.train_labels)} images, tested on "
          f"{len(data.test_labels)}", flush=True)
    runs = []
    for name in args.protocols:
        t = time.perf_counter()
        network, config = protocol_config(name, args)
        results, _ = train_population(network, archs, data, config, keys=keys)
        runs += [{"protocol": name, "arch": i, "genotype": space.describe(a),
                  "test_acc": float("nan") if r.failed else 100 * r.test_acc, "failed": r.failed,
                  "reason": r.reason} for i, (a, r) in enumerate(zip(archs, results))]
        print(f"  {name}: {time.perf_counter() - t:.0f} s", flush=True)
    summary = summarize(runs, args.protocols)
    text = (f"# Training protocols (`001_*` §4): {args.archs} random DARTS genotypes, test accuracy (%)\n\n"
            + table(summary) + "\n")
    publish(args.out, {"runs.csv": runs, "summary.csv": summary}, text,
            {"protocols.png": lambda path: plot(summary, runs, path)}, t0)


if __name__ == "__main__":
    sys.exit(main())
