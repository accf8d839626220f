"""Random search with weight sharing vs random search with early stopping, at equal cost (`000_*` §3-§5).

    python experiments/rs_ws.py            # CPU size: a tiny DARTS network (see the wall time it prints)

Both methods start from the same `--candidates` DARTS genotypes, sampled uniformly with `--seed`.

Random search with early stopping (successive halving over stand-alone training): every candidate
trains `--min-epochs`, the best 1/`--eta` by validation accuracy continue to `--eta` times as many
epochs, and so on up to `--final-epochs` (the learning-rate schedule spans `--final-epochs`, so
continuing is the same run as training that long at once); the best at the last rung is chosen.

RS-WS (`000_*`): one supernet (`nasjax.train.weight_sharing`: every edge holds every candidate op, each
batch trains one uniformly sampled genotype) trains for as many epochs as leave the same training
budget as successive halving's; every candidate is then scored by its validation accuracy with the
inherited weights, its batch-norm statistics recomputed on `--bn-batches` training batches; the
`--retrain` best are trained from scratch for `--final-epochs` and the best of them by validation
accuracy is chosen.

RNASNet-WS (`004_*` on `000_*`'s supernet): RNAS (`nasjax.search.rnas`) searches the space for
`--rnas-evaluations` genotypes, asked `--candidates` at a time, its objective the same shared-weight
validation accuracy (forward passes only); the `--retrain` best are trained from scratch like RS-WS's.
It reuses RS-WS's supernet, so its training cost is RS-WS's; only the forward-only images differ.

Cost is counted as training images processed (forward + backward); RS-WS's batch-norm recomputation
(forward only) is shown beside it; wall time is printed too. Stand-alone training of a candidate uses
the same key in both methods, so a genotype that both train to `--final-epochs` gets the same bits.
The chosen genotype of each method is tested on `--test-images` test images. Kendall tau compares the
shared-weight accuracies with the stand-alone accuracies of the same candidates (after `--min-epochs`,
all of them; after `--final-epochs`, those trained that long by either method).

Outputs in --out (default runs/rs_ws): candidates.csv (one row per genotype), summary.csv, summary.md,
rs_ws.png, timing.csv (wall seconds, the only numbers that differ between runs with the same --seed).

Full CIFAR-10 on an accelerator (`000_*`'s search network: 8 cells of 16 channels; evaluation
networks trained longer):

    python experiments/rs_ws.py --out runs/rs_ws_full --layers 8 --channels 16 --candidates 64 \\
        --eta 3 --min-epochs 3 --final-epochs 27 --retrain 4 --train-images 0 --val-images 0 \\
        --test-images 0 --batch-size 64
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

from nasjax import metrics, search
from nasjax.data import load_cifar10
from nasjax.experiment import UsageError, search_data
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.halving import successive_halving
from nasjax.experiment.outputs import pyplot, save_figure
from nasjax.io import write_csv
from nasjax.search.hyperband import halving_cost, halving_rungs
from nasjax.spaces import DARTSSpace
from nasjax.train import TrainConfig, arch_key, train_population
from nasjax.train import weight_sharing as ws


def test_accuracy(space, arch, data, config: TrainConfig, key) -> float:
    (result,), _ = train_population(space, arch[None], data, config, keys=[key])
    return float("nan") if result.failed else 100 * result.test_acc


def retrain_best(space, archs, shared, count: int, data, config: TrainConfig, key_of):
    """Train the `count` best of archs (N, *enc) by shared-weight accuracy shared (N,) from scratch, the
    one of rank r and index i with key key_of(r, i). -> (the chosen index: best validation accuracy,
    ties to the lower index; {index: final validation accuracy, nan if it failed}; {index: key})."""
    top = np.argsort(-np.where(np.isfinite(shared), shared, -np.inf), kind="stable")[:count]
    used = {int(i): key_of(r, int(i)) for r, i in enumerate(top)}
    results, _ = train_population(space, archs[top], data, config, keys=list(used.values()))
    val = {i: (np.nan if r.failed else r.final_val_acc) for i, r in zip(used, results)}
    return max(val, key=lambda i: (np.nan_to_num(val[i], nan=-1.0), -i)), val, used


def rnas_ws(space, state, data, config: TrainConfig, evaluations: int, batch: int, bn_batches: int,
            key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """RNASNet-WS's search: RNAS with the supernet's shared-weight validation accuracy as objective.
    -> (encodings int32 (E, *enc), accuracies in % (E,)) in evaluation order."""
    strategy = search.make("rnas", space, capacity=evaluations)
    score = ws.candidate_scorer(space, data, config, bn_batches)

    def objective(archs, _):
        return score(state, archs)

    result = search.run(strategy, objective, evaluations, key, batch_size=batch, progress=False)
    return result.encodings, 100 * result.scores


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--data-dir", type=folder, default=None, help="CIFAR-10 folder (default: $NASJAX_DATA_DIR)")
    p.add_argument("--out", type=folder, default="runs/rs_ws")
    p.add_argument("--layers", type=COUNT, default=3, help="cells")
    p.add_argument("--channels", type=COUNT, default=4, help="initial channels (even)")
    p.add_argument("--candidates", type=integer(2), default=8)
    p.add_argument("--eta", type=integer(2), default=2)
    p.add_argument("--min-epochs", type=COUNT, default=1)
    p.add_argument("--final-epochs", type=COUNT, default=2)
    p.add_argument("--retrain", type=COUNT, default=1, help="RS-WS: best candidates trained from scratch")
    p.add_argument("--bn-batches", type=COUNT, default=2)
    p.add_argument("--rnas-evaluations", type=integer(0), default=16,
                   help="RNASNet-WS: genotypes RNAS scores with the supernet (0: skip RNASNet-WS)")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--lr", type=real(0, lo_open=True), default=0.025)
    p.add_argument("--train-images", type=IMAGES, default=256, help="0: all")
    p.add_argument("--val-images", type=IMAGES, default=256, help="0: all")
    p.add_argument("--test-images", type=IMAGES, default=512, help="0: all")
    args = p.parse_args(argv)
    check((args.min_epochs <= args.final_epochs, "--min-epochs exceeds --final-epochs"),
          (args.retrain <= args.candidates, f"--retrain {args.retrain} exceeds --candidates {args.candidates}"),
          (args.channels % 2 == 0, f"--channels must be even (a reduction cell halves them), got {args.channels}"),
          *[(n == 0 or n >= args.batch_size, f"--{flag} {n} is smaller than one batch ({args.batch_size})")
            for flag, n in (("train-images", args.train_images), ("val-images", args.val_images))])
    plan = halving_rungs(args.candidates, args.eta, args.min_epochs, args.final_epochs)
    args.plan = plan
    args.supernet_epochs = halving_cost(plan) - args.retrain * args.final_epochs
    check((args.supernet_epochs >= 1,
           f"successive halving's budget ({halving_cost(plan)} epochs) leaves RS-WS no supernet epoch "
           f"after retraining {args.retrain} x {args.final_epochs} epochs: raise --candidates"))
    return args


def main(argv=None) -> int:
    return run_main(lambda: rs_ws(parse_args(argv)))


def rs_ws(args: argparse.Namespace) -> None:
    """The whole comparison; prints its summary, writes its files to args.out."""
    t_start = time.perf_counter()
    space = DARTSSpace(init_channels=args.channels, layers=args.layers)
    check_data_dir(args.data_dir)
    full = load_cifar10(args.data_dir, split_seed=args.seed)
    data = search_data(full, args.train_images, args.val_images)
    check((len(data.train_labels) >= args.batch_size,
           f"the {len(data.train_labels)} training images are fewer than one batch ({args.batch_size})"))
    if args.test_images > len(full.test_labels):
        raise UsageError(f"--test-images {args.test_images} exceeds the {len(full.test_labels)} test images")
    n_test = args.test_images or len(full.test_labels)
    test = data._replace(test_images=full.test_images[:n_test], test_labels=full.test_labels[:n_test])
    n_train = len(data.train_labels) // args.batch_size * args.batch_size  # images per epoch
    cost_ws = (args.supernet_epochs + args.retrain * args.final_epochs) * n_train  # RNASNet-WS's too
    k_archs, k_train, k_supernet, k_rnas = jax.random.split(jax.random.key(args.seed), 4)
    archs = np.asarray(space.sample(k_archs, args.candidates))
    keys = [arch_key(jax.random.key_data(k_train), i) for i in range(args.candidates)]
    config = TrainConfig(epochs=args.final_epochs, batch_size=args.batch_size, lr=args.lr,
                         eval_batch_size=args.batch_size)
    print(f"{args.candidates} DARTS genotypes ({args.layers} cells, {args.channels} channels), "
          f"{n_train} training images per epoch; successive halving rungs (archs, epochs): {args.plan}; "
          f"RS-WS: {args.supernet_epochs} supernet epochs + {args.retrain} x {args.final_epochs} "
          "retraining epochs", flush=True)

    t = time.perf_counter()
    chosen_sh, rung_scores = successive_halving(space, archs, data, config, keys, args.plan)
    wall_sh = time.perf_counter() - t

    t = time.perf_counter()
    state, losses = ws.train_supernet(space, data, config.replace(epochs=args.supernet_epochs), k_supernet,
                                      progress=lambda e, l: print(f"  supernet epoch {e}: loss {l:.3f}",
                                                                  flush=True))
    shared = 100 * ws.score_candidates(space, state, archs, data, config.replace(epochs=args.supernet_epochs),
                                       args.bn_batches)
    chosen_ws, retrained, _ = retrain_best(space, archs, shared, args.retrain, data, config,
                                           lambda rank, i: keys[i])
    wall_ws = time.perf_counter() - t

    rnas_rows, wall_rnas = [], 0.0
    if args.rnas_evaluations:
        t = time.perf_counter()
        found, found_shared = rnas_ws(space, state, data, config.replace(epochs=args.supernet_epochs),
                                      args.rnas_evaluations, args.candidates, args.bn_batches, k_rnas)
        chosen, rnas_val, rnas_keys = retrain_best(  # keys after the candidates', by rank
            space, found, found_shared, args.retrain, data, config,
            lambda rank, i: arch_key(jax.random.key_data(k_train), args.candidates + rank))
        wall_rnas = time.perf_counter() - t
        rnas_rows = [{"method": "RNAS + weight sharing (RNASNet-WS)", "training_images": cost_ws,
                      "forward_images": args.rnas_evaluations * args.bn_batches * args.batch_size,
                      "chosen": f"rnas{chosen}", "chosen_val_acc": 100 * rnas_val[chosen],
                      "test_acc": test_accuracy(space, found[chosen], test, config, rnas_keys[chosen]),
                      "genotype": space.describe(found[chosen])}]

    tests = {name: test_accuracy(space, archs[i], test, config, keys[i])
             for name, i in (("sh", chosen_sh), ("ws", chosen_ws))}
    cost_sh = halving_cost(args.plan) * n_train
    first, final = args.plan[0][1], args.final_epochs
    standalone_final = {**rung_scores.get(final, {}), **retrained}
    both = sorted(standalone_final)
    tau_first = float(metrics.kendall_tau(shared, np.array([rung_scores[first][i] for i in range(len(archs))])))
    tau_final = float(metrics.kendall_tau(shared[both], np.array([standalone_final[i] for i in both]))) \
        if len(both) > 1 else float("nan")
    summary = [
        {"method": "random search + successive halving", "training_images": cost_sh, "forward_images": 0,
         "chosen": chosen_sh, "chosen_val_acc": 100 * rung_scores[final][chosen_sh],
         "test_acc": tests["sh"], "genotype": space.describe(archs[chosen_sh])},
        {"method": "random search + weight sharing", "training_images": cost_ws,
         "forward_images": args.candidates * args.bn_batches * args.batch_size,
         "chosen": chosen_ws, "chosen_val_acc": 100 * retrained[chosen_ws], "test_acc": tests["ws"],
         "genotype": space.describe(archs[chosen_ws])},
        *rnas_rows,
    ]
    candidates = [{"arch": i, "genotype": space.describe(a), "shared_weight_val_acc": float(shared[i]),
                   **{f"standalone_val_acc_{e}ep": 100 * s[i] if i in s else "" for e, s in rung_scores.items()},
                   "rs_ws_retrained_val_acc": 100 * retrained[i] if i in retrained else ""}
                  for i, a in enumerate(archs)]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "candidates.csv", candidates)
    write_csv(out / "summary.csv", summary)
    write_csv(out / "timing.csv", [{"method": "successive_halving", "seconds": wall_sh},
                                   {"method": "rs_ws", "seconds": wall_ws},
                                   *([{"method": "rnas_ws (after the supernet)", "seconds": wall_rnas}]
                                     if rnas_rows else [])])
    if rnas_rows:
        write_csv(out / "rnas.csv", [{"evaluation": e, "genotype": space.describe(a),
                                      "shared_weight_val_acc": float(v)}
                                     for e, (a, v) in enumerate(zip(found, found_shared))])
    lines = [f"# RS-WS vs random search with early stopping (`000_*`), {args.candidates} DARTS genotypes",
             "", "| method | training images | forward-only images | chosen | val acc (%) | test acc (%) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['training_images']} | {s['forward_images']} | #{s['chosen']} | "
              f"{s['chosen_val_acc']:.2f} | {s['test_acc']:.2f} |" for s in summary]
    lines += ["", f"Kendall tau, shared-weight vs stand-alone validation accuracy: {tau_first:.3f} over all "
              f"{len(archs)} candidates after {first} epoch(s); {tau_final:.3f} over the {len(both)} trained "
              f"{final} epochs."]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    plot(candidates, rung_scores, shared, first, out / "rs_ws.png")
    print(text)
    print(f"wall time: successive halving {wall_sh:.0f} s, RS-WS {wall_ws:.0f} s, RNASNet-WS {wall_rnas:.0f} s "
          f"after the supernet, total {time.perf_counter() - t_start:.0f} s; wrote {out}/: candidates.csv, "
          "summary.csv, summary.md, rs_ws.png, timing.csv" + ", rnas.csv" * bool(rnas_rows))


def plot(candidates, rung_scores, shared, first, path: pathlib.Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(shared, [100 * rung_scores[first][i] for i in range(len(shared))], s=14)
    ax.set(xlabel="shared-weight validation accuracy (%)",
           ylabel=f"stand-alone validation accuracy after {first} epoch(s) (%)", title="RS-WS ranking")
    save_figure(fig, path)


if __name__ == "__main__":
    sys.exit(main())
