"""Relative improvement of every search strategy over random sampling of its own space (`001_*` §3,
Table 1 layout: one row per strategy, mean ± std over seeds), on tabular benchmarks and with real
training.

    python experiments/ri_benchmark.py                      # both parts, CPU size (~10 min on 2 cores)
    python experiments/ri_benchmark.py --parts tabular      # NAS-Bench-201 only (seconds to minutes)

Tabular part: every registered strategy runs `--seeds` searches of max(`--budgets`) evaluations on
NAS-Bench-201 (CIFAR-10, CIFAR-100, ImageNet16-120), vmapped over the seeds as ONE program per strategy
and dataset (`nasjax.experiment.tabular_search.run_strategy`, as in sample_efficiency.py);
multi-fidelity strategies need learning curves that the NB-201 export lacks and are listed as skipped. A search with budget b is the
first b evaluations of that run. Acc_m of a run is the best accuracy among its first b evaluations (the
export holds one test accuracy per architecture, which the search sees: noise-free). The baseline is
random sampling with the same budget: the best of b architectures drawn uniformly without
replacement, whose distribution is EXACT from the table (`nasjax.metrics.best_of_k_distribution`), so
the baseline has no sampling noise; RI = 100 (Acc_m - E[best of b]) / E[best of b], mean ± std over the
seeds, and P(beat) = mean over seeds of P(random's best of b < Acc_m) (ties half). The registered
"random" strategy is a Monte-Carlo check of the exact row.

A trained supernet as one more benchmark of the tabular part (`--supernet DIR`, the checkpoint
`lanas_cifar.py --evaluation supernet` leaves in its work directory; `nasjax.benchmarks.supernet`):
every strategy searches its cells, scored by the supernet's validation accuracy, `--supernet-seeds`
times (seeds one after the other; each cell is scored once, cached in --out/supernet_scores.jsonl).
Its ~10^17 cells have no exact best-of-k: the baseline there is the "random" strategy's searches
(best of their first b cells, mean over the seeds), and P(beat) compares with those searches.

Trained part (`001_*`'s protocol): LaNAS, regularized evolution and local search each search the
ConvNet motivating space (LaNAS §2, 1,364 networks) `--search-seeds` times with real training on the
shared CIFAR-10 (`experiments/lanas_cifar.py`'s objective: `--epochs` on the first `--train-images`
search-training images, scored on `--val-images` validation images), `--budget` architectures each,
`--batch` trained together per round. Then, per search seed, the `--top-k` best found by each strategy
and `--top-k` architectures sampled uniformly from the space (one random group per search seed, shared
by the strategies) are trained from scratch with the same protocol (`--final-epochs` on
`--final-train-images` of train + validation, `--final-seeds` training seeds, same training keys for
every group) and tested on `--test-images` test images. Per strategy: mean ± std over search seeds of
the group's mean test accuracy, and of RI against that seed's random group. Random search with weight
sharing (`000_*`) is not among them: it lives on the DARTS space (experiments/rs_ws.py).
The trained part is resumable: re-running the same command continues after the last finished search
round or final training run with the same bits (flags are saved in <out>/trained/config.json; other
flags on the same --out are refused).

Outputs in --out (default runs/ri_benchmark): tabular.csv, tabular.png, trained.csv, trained.png,
summary.md, timing.csv (wall-clock seconds, the only numbers that differ between two runs with the same
--seed), trained/ (search logs, final.jsonl, config.json, data.json).

Full CIFAR-10 on an accelerator (populations trained together, sharded over the devices):

    python experiments/ri_benchmark.py --out runs/ri_full --search-seeds 5 --budget 100 --batch 10 \\
        --epochs 10 --train-images 0 --val-images 0 --top-k 8 --final-seeds 2 --final-epochs 100 \\
        --final-train-images 0 --test-images 0 --cutout 16
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import numpy as np

from nasjax import benchmarks, metrics, search
from nasjax.benchmarks import supernet
from nasjax.data import load_cifar10
from nasjax.experiment import (CONVNET_SPACES, begin, check_config, data_fingerprint, final_data,
                               final_evaluation, group_stats, make_objective, own_workdir, search_data)
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.outputs import pyplot, save_figure, series_styles
from nasjax.experiment.tabular_search import BATCH, run_strategy, strategy_of
from nasjax.io import write_csv
from nasjax.runtime import avoid_cpu_scheduler_deadlock
from nasjax.train import TrainConfig

avoid_cpu_scheduler_deadlock()  # before any computation: vmapped NAO hangs without it on CPU

DATASETS = ("cifar10", "cifar100", "imagenet16")
TRAINED = ("lanas", "evolution", "local_search")


# --- tabular part -------------------------------------------------------------------------------------
def random_baseline(bench, budgets, keys):
    """(random, p_beat, average): best-of-b of random sampling as (mean, std) per budget b,
    p_beat(b, found (runs,)) -> P(random's best of b < found) per run (ties half), and the mean
    score of an architecture. Exact from a table; on a benchmark that is not enumerable (a supernet),
    from the "random" strategy's searches with `keys`."""
    if bench.enumerable:
        scores = np.asarray(bench.scores_mean, np.float64)
        return ({b: metrics.best_of_k_mean_std(scores, b) for b in budgets},
                lambda b, found: np.asarray(metrics.prob_random_beaten(scores, b, found)), float(np.mean(scores)))
    sampled = run_strategy("random", bench, max(budgets), 1, keys).scores.astype(np.float64)
    best = np.asarray(metrics.best_so_far(sampled), np.float64)

    def p_beat(b, found):
        r = best[None, :, b - 1]
        return np.mean((r < found[:, None]) + 0.5 * (r == found[:, None]), axis=1)

    return ({b: (float(best[:, b - 1].mean()), float(best[:, b - 1].std())) for b in budgets}, p_beat,
            float(np.nanmean(sampled)))


def tabular_rows(bench, names, budgets, keys) -> tuple[list[dict], dict[str, float]]:
    """One row per (strategy, budget) on `bench` (a strategy the benchmark cannot host: one row with
    `skipped`), and the wall seconds per strategy (compile included)."""
    random, p_beat, average = random_baseline(bench, budgets, keys)
    rows, seconds = [], {}
    for name in names:
        outcome = run_strategy(name, bench, max(budgets), BATCH.get(name, 1), keys)
        if isinstance(outcome, str):
            rows.append({"benchmark": bench.name, "strategy": name, "skipped": outcome})
            continue
        seconds[name] = outcome.seconds
        print(f"  {name}: {outcome.seconds:.1f} s", flush=True)
        best = np.asarray(metrics.best_so_far(outcome.scores), np.float64)
        for b in budgets:
            found = best[:, b - 1]
            ri = np.asarray(metrics.relative_improvement(found, random[b][0]), np.float64)
            rows.append({"benchmark": bench.name, "strategy": name, "budget": b, "runs": len(found),
                         "acc_mean": found.mean(), "acc_std": found.std(),
                         "random_best_of_k_mean": random[b][0], "random_best_of_k_std": random[b][1],
                         "ri_mean": ri.mean(), "ri_std": ri.std(),
                         "p_beat_random": float(np.mean(p_beat(b, found))),
                         "average_architecture": average,
                         "ri_vs_average_mean": float(np.mean(100 * (found - average) / average)),
                         "skipped": ""})
    return rows, seconds


def run_tabular(args, key) -> tuple[list[dict], dict]:
    keys = jax.random.split(key, args.seeds)
    names = args.strategies or sorted(search.STRATEGIES)
    rows, timing = [], {}
    for dataset in args.datasets:
        bench = benchmarks.load(f"nasbench201-{dataset}", args.data_dir)
        print(f"{bench.name}: {args.seeds} searches x {max(args.budgets)} evaluations per strategy",
              flush=True)
        part, seconds = tabular_rows(bench, names, args.budgets, keys)
        rows += part
        timing.update({(bench.name, n): s for n, s in seconds.items()})
    if args.supernet:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        cache = pathlib.Path(args.out) / supernet.CACHE_FILE
        bench = supernet.load(args.supernet, args.data_dir, cache, name="supernet")
        print(f"{bench.name}: {args.supernet_seeds} searches x {max(args.budgets)} cells per strategy, one "
              "after the other", flush=True)
        part, seconds = tabular_rows(bench, names, args.budgets, keys[:args.supernet_seeds])
        rows += part
        timing.update({("supernet", n): s for n, s in seconds.items()})
    return rows, timing


def tabular_table(rows: list[dict], value: str) -> str:
    """Markdown: one row per strategy, one column per (benchmark, budget); `value` 'ri' or 'acc'."""
    columns = sorted({(r["benchmark"], r["budget"]) for r in rows if not r["skipped"]},
                     key=lambda c: (c[0], c[1]))
    cell = {(r["strategy"], r["benchmark"], r["budget"]): f"{r[value + '_mean']:.2f} ± {r[value + '_std']:.2f}"
            for r in rows if not r["skipped"]}
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    short = lambda b: b.replace("nasbench201-", "")  # noqa: E731
    lines = ["| strategy | " + " | ".join(f"{short(b)} @{k}" for b, k in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    if value == "acc":
        first = {(r["benchmark"], r["budget"]): r for r in rows if not r["skipped"]}
        how = " (the random strategy's searches on the supernet)" if "supernet" in {c[0] for c in columns} else ""
        lines.append(f"| random sampling, exact best-of-k{how} | " + " | ".join(
            f"{first[c]['random_best_of_k_mean']:.2f} ± {first[c]['random_best_of_k_std']:.2f}"
            for c in columns) + " |")
    for name in names:
        skipped = [r["skipped"] for r in rows if r["strategy"] == name and r["skipped"]]
        if len(skipped) == len({r["benchmark"] for r in rows}):
            lines.append(f"| {name} | skipped: {skipped[0]} |")
            continue
        lines.append(f"| {name} | " + " | ".join(cell.get((name, *c), "skipped") for c in columns) + " |")
    return "\n".join(lines)


def plot_tabular(rows: list[dict], path: pathlib.Path) -> None:
    plt = pyplot()

    done = [r for r in rows if not r["skipped"]]
    benches = list(dict.fromkeys(r["benchmark"] for r in done))
    names = list(dict.fromkeys(r["strategy"] for r in done))
    styles = series_styles(names, family=strategy_of)
    fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for name in names:
            part = [r for r in done if r["benchmark"] == bench and r["strategy"] == name]
            ax.errorbar([r["budget"] for r in part], [r["ri_mean"] for r in part],
                        yerr=[r["ri_std"] for r in part], marker="o", ms=3, capsize=2, lw=1, label=name,
                        **styles[name])
        ax.axhline(0, color="k", lw=0.8, ls=":")
        ax.set(xscale="log", xlabel="budget (architectures evaluated)", ylabel="RI vs best-of-k random (%)",
               title=bench)
    axes[0][-1].legend(fontsize=7)
    save_figure(fig, path)


# --- trained part -------------------------------------------------------------------------------------
def make_trained_strategy(name: str, space, args):
    config = {"lanas": dict(height=args.height, n_init=args.n_init, n_select=args.batch),
              "evolution": dict(population_size=args.population_size, sample_size=args.sample_size),
              "local_search": {}}[name]
    return search.make(name, space, capacity=args.budget, **config)


def trained_config(args) -> dict:
    """Everything that decides the trained part's results."""
    keys = ("seed", "strategies_trained", "search_seeds", "budget", "batch", "height", "n_init",
            "population_size", "sample_size", "epochs", "train_images", "val_images", "batch_size", "lr",
            "cutout", "top_k", "final_seeds", "final_epochs", "final_train_images", "test_images", "space")
    return {k: getattr(args, k) for k in keys}


def run_trained(args, key, workdir: pathlib.Path) -> list[dict]:
    """Search (resumable), final training of found and random groups (resumable) -> one row per
    strategy (and one for the random groups) with per-seed group means."""
    space = CONVNET_SPACES[args.space]()
    check_data_dir(args.data_dir)
    with own_workdir(workdir, "--out") as workdir:
        config = trained_config(args)
        new = check_config(workdir, config)
        data = load_cifar10(args.data_dir, split_seed=args.seed)
        searching = search_data(data, args.train_images, args.val_images)
        final_set = final_data(data, args.final_train_images, args.test_images)
        begin(workdir, config, data_fingerprint(data.source, *data[:6]), new)
        # Evaluating at the training batch size reuses the training forward's compiled programs.
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   cutout=args.cutout, eval_batch_size=args.batch_size)
        k_search, k_final, k_random = jax.random.split(key, 3)
        groups = {}
        for s in range(args.search_seeds):
            groups[f"random/{s}"] = np.asarray(space.sample(jax.random.fold_in(k_random, s), args.top_k))
            for name in args.strategies_trained:
                result = search.run(make_trained_strategy(name, space, args),
                                    make_objective(space, searching, train_config, args.seed),
                                    budget=args.budget, key=jax.random.fold_in(k_search, s),
                                    workdir=workdir / "search" / name / f"seed{s}", batch_size=args.batch)
                finite = np.isfinite(result.scores)
                order = np.argsort(-np.where(finite, result.scores, -np.inf), kind="stable")
                groups[f"{name}/{s}"] = result.encodings[order[:min(args.top_k, max(int(finite.sum()), 1))]]
        final = final_evaluation(space, final_set, train_config.replace(epochs=args.final_epochs),
                                    groups, args.final_seeds, k_final, workdir / "final.jsonl", args.batch)
    rows = []
    for name in ("random", *args.strategies_trained):
        accs = np.array([group_stats(final, f"{name}/{s}")["mean"] for s in range(args.search_seeds)])
        random = np.array([group_stats(final, f"random/{s}")["mean"] for s in range(args.search_seeds)])
        ri = np.asarray(metrics.relative_improvement(accs, random), np.float64)
        rows.append({"strategy": name, "search_seeds": args.search_seeds, "k": args.top_k,
                     "acc_mean": float(np.nanmean(accs)), "acc_std": float(np.nanstd(accs)),
                     "ri_mean": float(np.nanmean(ri)), "ri_std": float(np.nanstd(ri)),
                     "acc_per_seed": " ".join(f"{a:.2f}" for a in accs)})
    return rows


def trained_table(rows: list[dict], args) -> str:
    lines = [f"| architectures ({args.top_k} per search seed) | test accuracy (%) | RI vs random (%) | per seed |",
             "|---|---|---|---|"]
    for r in rows:
        label = "sampled at random" if r["strategy"] == "random" else f"top-{r['k']} found by {r['strategy']}"
        lines.append(f"| {label} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} | {r['ri_mean']:.2f} ± "
                     f"{r['ri_std']:.2f} | {r['acc_per_seed']} |")
    return "\n".join(lines)


def plot_trained(rows: list[dict], path: pathlib.Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, r in enumerate(rows):
        accs = [float(a) for a in r["acc_per_seed"].split()]
        ax.scatter(np.full(len(accs), i), accs, s=14, alpha=0.7)
        ax.errorbar(i, r["acc_mean"], yerr=r["acc_std"], fmt="_", color="k", capsize=4)
    ax.set_xticks(range(len(rows)), [r["strategy"] for r in rows])
    ax.set(ylabel="mean test accuracy of the group (%)", title="top-k found vs k random, per search seed")
    save_figure(fig, path)


# --- command line -------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--parts", nargs="+", choices=("tabular", "trained"), default=["tabular", "trained"])
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--data-dir", type=folder, default=None,
                   help="NB-201 export and CIFAR-10 (default: $NASJAX_DATA_DIR)")
    p.add_argument("--out", type=folder, default="runs/ri_benchmark")
    t = p.add_argument_group("tabular")
    t.add_argument("--datasets", nargs="*", choices=DATASETS, default=list(DATASETS),
                   help="NAS-Bench-201's (none: only --supernet)")
    t.add_argument("--budgets", nargs="+", type=integer(1, 15625), default=[50, 100, 300],
                   help="evaluations (at most NAS-Bench-201's 15,625 architectures)")
    t.add_argument("--seeds", type=COUNT, default=100, help="searches per strategy and dataset")
    t.add_argument("--strategies", nargs="+", default=None, help="default: every registered one")
    t.add_argument("--supernet", type=folder, default=None,
                   help="a supernet checkpoint folder (lanas_cifar.py --evaluation supernet's work directory) "
                        "searched as one more benchmark")
    t.add_argument("--supernet-seeds", type=COUNT, default=3, help="searches per strategy on --supernet")
    r = p.add_argument_group("trained")
    r.add_argument("--space", choices=sorted(CONVNET_SPACES), default="motivating")
    r.add_argument("--strategies-trained", nargs="+", choices=TRAINED, default=list(TRAINED))
    r.add_argument("--search-seeds", type=COUNT, default=2)
    r.add_argument("--budget", type=COUNT, default=8, help="architectures trained per search")
    r.add_argument("--batch", type=COUNT, default=4, help="architectures per round, trained together")
    r.add_argument("--height", type=integer(2), default=2, help="LaNAS tree height")
    r.add_argument("--n-init", type=COUNT, default=4, help="LaNAS random samples before its first fit")
    r.add_argument("--population-size", type=COUNT, default=4, help="evolution")
    r.add_argument("--sample-size", type=COUNT, default=2, help="evolution tournament")
    r.add_argument("--epochs", type=COUNT, default=1)
    r.add_argument("--train-images", type=IMAGES, default=512, help="0: all")
    r.add_argument("--val-images", type=IMAGES, default=512, help="0: all")
    r.add_argument("--batch-size", type=COUNT, default=64)
    r.add_argument("--lr", type=real(0, lo_open=True), default=0.05)
    r.add_argument("--cutout", type=integer(0, 32), default=0, help="cutout size in pixels (0: none)")
    r.add_argument("--top-k", type=COUNT, default=2, help="found and random architectures per search seed")
    r.add_argument("--final-seeds", type=COUNT, default=1)
    r.add_argument("--final-epochs", type=COUNT, default=1)
    r.add_argument("--final-train-images", type=IMAGES, default=1024, help="0: all")
    r.add_argument("--test-images", type=IMAGES, default=0, help="0: all")
    args = p.parse_args(argv)
    unknown = set(args.strategies or ()) - set(search.STRATEGIES)
    space = CONVNET_SPACES[args.space]()
    check((not unknown, f"unknown strategies {sorted(unknown)}; known: {sorted(search.STRATEGIES)}"),
          (args.supernet_seeds <= args.seeds, f"--supernet-seeds {args.supernet_seeds} exceeds --seeds {args.seeds}"),
          ("tabular" in args.parts or not args.supernet, "--supernet is searched in the tabular part: add "
           "--parts tabular"),
          ("tabular" not in args.parts or args.datasets or args.supernet,
           "the tabular part needs --datasets or --supernet"),
          (args.top_k <= args.budget, f"--top-k {args.top_k} exceeds --budget {args.budget}"),
          ("lanas" not in args.strategies_trained or args.n_init <= args.budget,
           f"--n-init {args.n_init} exceeds --budget {args.budget}"),
          (args.budget <= space.size(),
           f"--budget {args.budget} exceeds the {space.size()} networks of the {args.space} space"),
          (args.sample_size <= args.population_size,
           f"--sample-size {args.sample_size} exceeds --population-size {args.population_size}"),
          *[(n == 0 or n >= args.batch_size, f"--{flag} {n} is smaller than one batch ({args.batch_size})")
            for flag, n in (("train-images", args.train_images),
                            ("final-train-images", args.final_train_images))])
    args.budgets = sorted(set(args.budgets))
    return args


def main(argv=None) -> int:
    return run_main(lambda: ri_benchmark(parse_args(argv)))


def ri_benchmark(args: argparse.Namespace) -> None:
    """The whole experiment: prints its summary, writes its files."""
    check_data_dir(args.data_dir)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k_tabular, k_trained = jax.random.split(jax.random.key(args.seed))
    text, timing = ["# Relative improvement over random sampling (`001_*` Table 1 layout)"], []
    if "tabular" in args.parts:
        t0 = time.perf_counter()
        rows, seconds = run_tabular(args, k_tabular)
        write_csv(out / "tabular.csv", rows)
        plot_tabular(rows, out / "tabular.png")
        timing += [{"part": "tabular", "benchmark": b, "strategy": n, "seconds": s}
                   for (b, n), s in seconds.items()]
        timing.append({"part": "tabular", "benchmark": "all", "strategy": "all",
                       "seconds": time.perf_counter() - t0})
        on, over = "NAS-Bench-201", f"{args.seeds} seeds"
        if args.supernet:
            on, over = on + " and the supernet", over + f" ({args.supernet_seeds} on the supernet)"
        text += ["", f"## {on}: RI (%) vs the best-of-k of random sampling (exact on NAS-Bench-201), mean ± "
                 f"std over {over}", "", tabular_table(rows, "ri"), "",
                 "Accuracy (%) of the best architecture found, mean ± std over seeds:", "",
                 tabular_table(rows, "acc")]
    if "trained" in args.parts:
        t0 = time.perf_counter()
        rows = run_trained(args, k_trained, out / "trained")
        write_csv(out / "trained.csv", rows)
        plot_trained(rows, out / "trained.png")
        timing.append({"part": "trained", "benchmark": f"cifar10-{args.space}", "strategy": "all",
                       "seconds": time.perf_counter() - t0})
        text += ["", f"## Trained on CIFAR-10 ({args.space} ConvNet space): mean ± std over "
                 f"{args.search_seeds} search seeds", "", trained_table(rows, args)]
    write_csv(out / "timing.csv", timing)
    (out / "summary.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    print("\nwall seconds: " + ", ".join(f"{t['benchmark']}/{t['strategy']} {t['seconds']:.1f}"
                                         for t in timing))
    print(f"wrote {out}/: summary.md, timing.csv" + ", tabular.csv, tabular.png" * ("tabular" in args.parts)
          + ", trained.csv, trained.png, trained/" * ("trained" in args.parts))


if __name__ == "__main__":
    sys.exit(main())
