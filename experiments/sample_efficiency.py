"""Sample efficiency of every search strategy on a tabular benchmark (LaNAS `002_*` §4.2, Fig. 5), and
the benchmark's landscape (`003_*`).

    python experiments/sample_efficiency.py --benchmark nasbench201-cifar10 --seeds 100
    python experiments/sample_efficiency.py --benchmark convnet-cifar10 --seeds 100 [--table FILE]
    python experiments/sample_efficiency.py --supernet runs/lanas_cifar --seeds 5 --budget 100

Every strategy of `nasjax.search.STRATEGIES` (and each row of `VARIANTS`: LaNAS with the paper's
exploration constant, init and select (10), `lanas_paper`, and with rank targets for its splits,
`lanas_rank`; NAO and RNAS with their papers' settings, `nao_paper` and `rnas_paper`) runs
`--seeds` independent searches of `--budget` evaluations (default 1,000, or the table's size if
smaller) as ONE program per strategy, jit(vmap(`nasjax.search.scan`)) over the seeds' keys
(`nasjax.experiment.tabular_search`; every registered strategy is vmappable over keys:
tests/test_strategies.py); all strategies get the same seed keys. Each round asks one architecture
(as Algorithm 1), except the model-based strategies, which ask 10 per round (`BATCH`: their
acquisition is the cost); `--batch` sets one value for all. The objective is the benchmark's
`query`: one training seed drawn per evaluation (`--denoised`: the seed mean, for single-fidelity
strategies); NAS-Bench-201's export holds one value per architecture, so there it is noise-free.

What is measured: each evaluated architecture is scored by its seed-mean (`query_mean`), whatever the
search saw; best-so-far curves are the best seed-mean among the architectures evaluated so far
(median and 25-75 % band over the seeds); a search reaches the global optimum (the best seed-mean of
the table) at the first evaluation of an architecture with that score. Random search draws without
replacement, so its samples-to-optimum also has an exact distribution: P(T > t) = C(N-m, t) / C(N, t)
for m optimal architectures among N; the ratio column is that exact median over the strategy's
median (a strategy whose median run does not reach the optimum within the budget gets "-").

Multi-fidelity strategies (hyperband, successive_halving) need learning curves: on a benchmark with
per-epoch scores (the ConvNet table) an evaluation at budget b reads the validation accuracy after
ceil(b) epochs (`objective_at_budget`, max budget = the table's epochs) and costs ceil(b) / epochs
samples; only full-budget evaluations count as having evaluated an architecture, and their x axis
is that cost. NAS-Bench-201's export has only the 200-epoch accuracy, so they do not run there.
A strategy that declares a space unsupported (`Strategy.unsupported`, e.g. MCTS on a space too large
for its action tree) gets a row saying why; any other error is raised.

Cost: seconds per search and milliseconds per evaluation from the wall time of the vmapped searches
(all seeds at once, compilation timed apart): a cheap sampler and an expensive surrogate side by side.

Landscape: the number of local optima under `space.neighbors` (no neighbour strictly better), with
the seed-averaged scores and with each single seed's scores.

A trained supernet as the benchmark (`002_*` Fig. 6; `--supernet` names the checkpoint folder that
`lanas_cifar.py --evaluation supernet` leaves in its work directory, `nasjax.benchmarks.supernet`):
each evaluation is a cell's validation accuracy with the supernet's weights (deterministic), scored on
the host, so each search is a `nasjax.search.run` loop (seeds one after the other, compilation inside
the seconds) and a cell is scored once: the scores are cached in --out/supernet_scores.jsonl, which a
re-run reuses. The space (~10^17 cells) has no known optimum: the target is the best score any search
found, there is no exact random-search row and no landscape. Defaults there: 5 seeds, budget 100.

Writes to --out (default runs/sample_efficiency/<benchmark>, or .../supernet): summary.csv, curves.csv,
samples_to_optimum.csv, landscape.json (tabular only), best_so_far.png, samples_to_optimum.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np

from nasjax import benchmarks, metrics, search
from nasjax.benchmarks import TabularBenchmark, convnet, supernet
from nasjax.experiment.cli import COUNT, SEED, Parser, check, check_data_dir, folder
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.outputs import pyplot, save_figure, series_styles
from nasjax.experiment.tabular_search import (BATCH, VARIANTS, Outcome, curve_band, random_search_exact,
                                              run_strategy, samples_to_optimum, strategy_of, summarize)
from nasjax.io import write_csv
from nasjax.runtime import avoid_cpu_scheduler_deadlock

avoid_cpu_scheduler_deadlock()  # before any computation: vmapped NAO hangs without it on CPU

BENCHMARKS = ("nasbench201-cifar10", "nasbench201-cifar100", "nasbench201-imagenet16", "convnet-cifar10")
DEFAULTS = {"tabular": dict(seeds=100, budget=1000), "supernet": dict(seeds=5, budget=100)}


def landscape(bench: TabularBenchmark) -> dict:
    """Local optima under `space.neighbors`: with seed-averaged scores and with each seed's scores."""
    return {"architectures": int(bench.table.shape[0]), "seeds": bench.n_seeds,
            "seed_averaged": metrics.count_local_optima(bench.space, bench.scores_mean),
            "single_seed": [metrics.count_local_optima(bench.space, bench.table[:, s])
                            for s in range(bench.n_seeds)]}


def format_table(rows: list[dict], budget: int) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [f"{'strategy':<20} {'runs':>5} {'batch':>5} {'reached':>8} {'median samples':>15} "
             f"{'mean (reached)':>15} {'random/strategy':>16} {'s/search':>9} {'ms/sample':>10} "
             f"{'compile s':>10}"]
    for r in rows:
        if r["absent"]:
            lines.append(f"{r['strategy']:<20} not run: {r['absent']}")
            continue
        median = f"> {budget}" if r["median"] is None else f"{r['median']:.1f}"
        lines.append(f"{r['strategy']:<20} {r['runs']:>5} {r['batch']:>5} {r['reached']:>8.0%} {median:>15} "
                     f"{num(r['mean_reached'], '.1f'):>15} {num(r['ratio_random_over_strategy'], '.2f'):>16} "
                     f"{r['seconds_per_search']:>9.3f} {r['ms_per_sample']:>10.3f} "
                     f"{num(r['compile_seconds'], '.1f'):>10}")
    return "\n".join(lines)


def write_outputs(out: pathlib.Path, outcomes: dict[str, Outcome | str], rows: list[dict],
                  optimum: float, budget: int, land: dict, title: str) -> None:
    """summary.csv, curves.csv, samples_to_optimum.csv, landscape.json and the two plots."""
    plt = pyplot()

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "summary.csv", rows)
    if land is not None:
        (out / "landscape.json").write_text(json.dumps(land, indent=2) + "\n")
    ran = {k: v for k, v in outcomes.items() if isinstance(v, Outcome)}
    x = np.arange(1, budget + 1)
    bands = {name: curve_band(o, budget) for name, o in ran.items()}
    hits = {name: samples_to_optimum(o, optimum) for name, o in ran.items()}
    write_csv(out / "curves.csv", [
        dict(strategy=name, samples=int(i), **dict(zip(("q25", "median", "q75"), map(float, band[:, i - 1]))))
        for name, band in bands.items() for i in x])
    write_csv(out / "samples_to_optimum.csv", [dict(strategy=name, run=run, samples_to_optimum=float(v))
                                               for name, s in hits.items() for run, v in enumerate(s)])

    styles = series_styles(ran, family=strategy_of)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, band in bands.items():
        ax.plot(x, band[1], label=name, lw=1.2, **styles[name])
        ax.fill_between(x, band[0], band[2], color=styles[name]["color"], alpha=0.15, lw=0)
    ax.axhline(optimum, color="k", ls=":", lw=0.8, label="global optimum" if land else "best found")
    low = np.nanmin([np.nanmin(band[0]) for band in bands.values()])
    ax.set(xscale="log", xlabel="samples", ylabel="best seed-mean score evaluated",
           ylim=(low, optimum + 0.05 * (optimum - low)),
           title=f"{title}: best so far (median, 25-75 % over runs)")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, out / "best_so_far.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in hits.items():
        ax.step(x, np.mean(s[None, :] <= x[:, None], axis=1), where="post", label=name, lw=1.2, **styles[name])
    target = "the global optimum" if land else "the best found"
    ax.set(xscale="log", xlabel="samples", ylabel=f"fraction of runs that evaluated {target}",
           ylim=(0, 1.02), title=f"{title}: samples to reach {target} (ECDF)")
    ax.legend(fontsize=7, loc="upper left")
    save_figure(fig, out / "samples_to_optimum.png")


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--benchmark", choices=BENCHMARKS, default=None, help="default: nasbench201-cifar10")
    p.add_argument("--supernet", type=folder, default=None,
                   help="a supernet checkpoint folder (lanas_cifar.py --evaluation supernet's work "
                        "directory) as the benchmark, instead of --benchmark")
    p.add_argument("--data-dir", type=folder, default=None,
                   help="for NB-201 and the supernet's CIFAR-10 (default: $NASJAX_DATA_DIR)")
    p.add_argument("--table", default=None, help="convnet-cifar10 only: a table file built by "
                   "experiments/build_convnet_table.py instead of the shipped one")
    p.add_argument("--seeds", type=COUNT, default=None,
                   help="independent searches per strategy (default: 100; with --supernet 5)")
    p.add_argument("--budget", type=COUNT, default=None,
                   help="evaluations per search (default: 1,000, or every architecture of a smaller table; "
                        "with --supernet 100)")
    p.add_argument("--batch", type=COUNT, default=None,
                   help=f"architectures asked per round, every strategy (default: {BATCH} for those "
                        "named, 1 for the others)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--strategies", nargs="+", default=None,
                   help=f"default: every registered one, then the variants {sorted(VARIANTS)}")
    p.add_argument("--denoised", action="store_true", help="searches see seed-mean scores")
    p.add_argument("--out", type=folder, default=None,
                   help="default: runs/sample_efficiency/<benchmark> (or .../supernet)")
    args = p.parse_args(argv)
    known = sorted(search.STRATEGIES) + sorted(VARIANTS)
    unknown = set(args.strategies or ()) - set(known)
    check((not args.table or args.benchmark == "convnet-cifar10",
           "--table goes with --benchmark convnet-cifar10"),
          (not (args.supernet and args.benchmark), "--supernet replaces --benchmark: give one of them"),
          (not unknown, f"unknown strategies {sorted(unknown)}; known: {known}"))
    defaults = DEFAULTS["supernet" if args.supernet else "tabular"]
    args.benchmark = None if args.supernet else args.benchmark or "nasbench201-cifar10"
    args.seeds = args.seeds or defaults["seeds"]
    args.budget = args.budget or (defaults["budget"] if args.supernet else None)
    return args


def main(argv=None) -> int:
    return run_main(lambda: sample_efficiency(parse_args(argv)))


def sample_efficiency(args: argparse.Namespace) -> None:
    """Every strategy's searches on the benchmark: prints the table, writes the files to --out."""
    check_data_dir(args.data_dir)
    out = pathlib.Path(args.out or f"runs/sample_efficiency/{args.benchmark or 'supernet'}")
    if args.supernet:
        out.mkdir(parents=True, exist_ok=True)
        bench = supernet.load(args.supernet, args.data_dir, cache_file=out / supernet.CACHE_FILE)
    else:
        bench = convnet.load(args.table) if args.table else benchmarks.load(args.benchmark, args.data_dir)
    n = m = land = None
    if bench.enumerable:
        _, optimum = bench.optimum()
        n, m = bench.table.shape[0], int(np.sum(bench.scores_mean >= optimum))
        budget = args.budget or min(DEFAULTS["tabular"]["budget"], n)
        check((budget <= n, f"--budget {budget} exceeds the benchmark's {n} architectures"))
        noisy = not args.denoised and bench.n_seeds > 1
        print(f"{bench!r}; {bench.source}\nglobal optimum {optimum:.4f} (seed mean, {m} architecture(s)); "
              f"{args.seeds} searches x {budget} samples per strategy; each evaluation sees "
              f"{'one drawn seed' if noisy else 'the seed mean'}", flush=True)
    else:
        budget = args.budget
        print(f"{bench!r}; {args.seeds} searches x {budget} samples per strategy, seeds one after the other; "
              f"scores cached in {out / supernet.CACHE_FILE}", flush=True)
    names = args.strategies or sorted(search.STRATEGIES) + sorted(VARIANTS)
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    outcomes = {}
    for name in names:
        batch = args.batch or BATCH.get(name, 1)
        outcomes[name] = run_strategy(name, bench, budget, batch, keys, not args.denoised)
        done = outcomes[name]
        compiling = "" if getattr(done, "compile_seconds", None) is None else \
            f" (+ {done.compile_seconds:.1f} s compiling)"
        print(f"  {name}: " + (f"{done.seconds:.1f} s{compiling}" if isinstance(done, Outcome)
                               else f"not run ({done})"), flush=True)
    if not bench.enumerable:  # no known optimum: the target is the best any search found
        optimum = float(max(np.nanmax(o.scores) for o in outcomes.values() if isinstance(o, Outcome)))
    rows = summarize(outcomes, optimum, n, m)
    target = "the global optimum" if bench.enumerable else f"the best score any search found ({optimum:.4f})"
    print(f"\nSamples to reach {target} ({args.seeds} runs per strategy, budget {budget}; "
          f"'reached' = fraction of runs that did):")
    print(format_table(rows, budget))
    if bench.enumerable:
        exact_median, exact_mean = random_search_exact(n, m)
        print(f"random search, exact (uniform without replacement, {m} optimal of {n}): median "
              f"{exact_median:.0f}, mean {exact_mean:.1f} samples; random/strategy = that median / the "
              "strategy's median")
        land = landscape(bench)
        land["note"] = ("the data holds one value per architecture, so single-seed = seed-averaged"
                        if bench.n_seeds == 1 else "")
        print(f"\nLandscape: {land['seed_averaged']} local optima among {n} architectures under "
              f"space.neighbors with seed-averaged scores; with single-seed scores: "
              f"{', '.join(map(str, land['single_seed']))} (seeds 0..{bench.n_seeds - 1})"
              + (f" ({land['note']})" if land["note"] else ""))
    else:
        print(f"cells scored by the supernet in this invocation: {bench.scored}")
    write_outputs(out, outcomes, rows, optimum, budget, land, args.benchmark or bench.name)
    print(f"wrote {out}/: summary.csv, curves.csv, samples_to_optimum.csv, "
          + "landscape.json, " * bench.enumerable + "best_so_far.png, samples_to_optimum.png")

if __name__ == "__main__":
    sys.exit(main())
