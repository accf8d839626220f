"""Sample efficiency of every search strategy on a tabular benchmark (LaNAS `002_*` §4.2, Fig. 5), and
the benchmark's landscape (`003_*`).

    python experiments/sample_efficiency.py --benchmark nasbench201-cifar10 --seeds 100
    python experiments/sample_efficiency.py --benchmark convnet-cifar10 --seeds 100 [--table FILE]

Every strategy of `nasjax.search.STRATEGIES` (and each row of `VARIANTS`: LaNAS with the paper's
exploration constant, `lanas_paper`) runs `--seeds` independent searches of `--budget`
evaluations (default 1,000, or the table's size if smaller) as ONE program per strategy,
jit(vmap(lax.scan(ask/tell))) over the seeds' keys (every registered strategy is vmappable over keys:
tests/test_strategies.py); all strategies get the same seed keys. Each round asks one architecture
(as Algorithm 1), except BO and TPE, which ask 10 per round (`BATCH`: their acquisition is the
cost); `--batch` sets one value for all. The objective is the benchmark's `query`: one training
seed drawn per evaluation (`--denoised`: the seed mean, for single-fidelity strategies);
NAS-Bench-201's export holds one value per architecture, so there it is noise-free.

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

Writes to --out (default runs/sample_efficiency/<benchmark>): summary.csv, curves.csv,
samples_to_optimum.csv, landscape.json, best_so_far.png, samples_to_optimum.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from nasjax import benchmarks, metrics, search
from nasjax.benchmarks import BenchmarkDataError, TabularBenchmark, convnet
from nasjax.io import write_csv
from nasjax.runtime import avoid_cpu_scheduler_deadlock
from nasjax.search.lanas import PAPER_EXPLORATION

avoid_cpu_scheduler_deadlock()  # before any computation: vmapped NAO hangs without it on CPU

BENCHMARKS = ("nasbench201-cifar10", "nasbench201-cifar100", "nasbench201-imagenet16", "convnet-cifar10")
MULTI_FIDELITY = ("hyperband", "successive_halving")
# Architectures per round where one at a time is too slow: the model-based acquisitions (a GP fit
# over a 256-sample window for BO, densities over the history for TPE, model training for NAO and
# RNAS) dominate the search's cost.
BATCH = {"bo": 10, "tpe": 10, "lanas_bo": 10, "nao": 10, "rnas": 10}
# Extra rows: a registered strategy with another configuration (row name -> (strategy, config)).
VARIANTS = {"lanas_paper": ("lanas", PAPER_EXPLORATION)}
DEFAULT_BUDGET = 1000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One strategy's searches, `runs` of them, `budget` evaluations each.

    scores float32 (runs, budget): seed-mean score of each evaluated architecture, NaN for a
      low-fidelity evaluation; cost float32 (runs, budget): cumulative cost in samples (full
      trainings) after each evaluation; batch: architectures per round; seconds: wall time of the
      vmapped searches, compilation excluded; compile_seconds: their compilation.
    """

    scores: np.ndarray
    cost: np.ndarray
    batch: int
    seconds: float
    compile_seconds: float


def make_strategy(name: str, bench: TabularBenchmark, capacity: int):
    """(strategy, None), or (None, why) when the benchmark cannot host strategy `name`: multi-fidelity
    ones need per-epoch scores; a strategy may declare the space unsupported (`Strategy.unsupported`).
    Any other error constructing it is raised, not turned into an absent row."""
    name, config = VARIANTS.get(name, (name, {}))
    config = dict(config)
    if name in MULTI_FIDELITY:
        if bench.curves is None:
            return None, "needs per-epoch scores; this benchmark has final scores only"
        config.update(min_budget=1.0, max_budget=float(bench.curves.shape[2]))
    why = search.STRATEGIES[name].unsupported(bench.space)
    if why:
        return None, why
    return search.make(name, bench.space, capacity=capacity, **config), None


def _search(strategy, objective, multi_fidelity: bool, rounds: int, batch: int, key: jax.Array):
    """One search of `rounds` x ask(batch)/tell as a lax.scan -> final state."""
    k_init, k_objective = jax.random.split(key)

    def body(state, r):
        k = jax.random.fold_in(k_objective, r)
        if multi_fidelity:
            archs, budgets, state = strategy.ask_with_budget(state, batch)
            scores = objective(archs, k, budgets)
        else:
            archs, state = strategy.ask(state, batch)
            scores = objective(archs, k)
        return strategy.tell(state, archs, scores), None

    return jax.lax.scan(body, strategy.init(k_init), jnp.arange(rounds))[0]


def run_strategy(name: str, bench: TabularBenchmark, budget: int, batch: int, keys: jax.Array,
                 noisy: bool = True) -> Outcome | str:
    """`len(keys)` searches of strategy `name` on `bench`, vmapped over the keys; or why the benchmark
    cannot host the strategy (see `make_strategy`)."""
    rounds = -(-budget // batch)
    strategy, why = make_strategy(name, bench, rounds * batch)
    if strategy is None:
        return why
    multi = name in MULTI_FIDELITY
    objective = bench.objective_at_budget() if multi else bench.objective(noisy)
    fn = jax.jit(jax.vmap(functools.partial(_search, strategy, objective, multi, rounds, batch)))
    start = time.perf_counter()
    fn = fn.lower(keys).compile()
    compiled = time.perf_counter()
    state = jax.block_until_ready(fn(keys))
    seconds = time.perf_counter() - compiled
    archs = np.asarray(state.history.encodings)[:, :budget]
    index = np.asarray(jax.vmap(jax.vmap(bench.space.index))(archs))
    scores = np.asarray(bench.scores_mean)[index]
    if multi:
        epochs = bench.curves.shape[2]
        used = np.clip(np.ceil(np.asarray(state.budgets)[:, :budget]), 1, epochs)
        scores = np.where(used >= epochs, scores, np.nan)
        cost = np.cumsum(used / epochs, axis=1)
    else:
        cost = np.broadcast_to(np.arange(1, budget + 1, dtype=np.float32), scores.shape)
    return Outcome(scores=scores.astype(np.float32), cost=cost.astype(np.float32), batch=batch,
                   seconds=seconds, compile_seconds=compiled - start)


def samples_to_optimum(outcome: Outcome, optimum: float) -> np.ndarray:
    """float32 (runs,): cost (samples) at which each run first evaluated an optimal architecture; inf
    when it never did."""
    steps = np.asarray(metrics.samples_to_optimum(outcome.scores, optimum))
    reached = np.isfinite(steps)
    at = np.where(reached, steps, 1).astype(int) - 1
    return np.where(reached, np.take_along_axis(outcome.cost, at[:, None], axis=1)[:, 0], np.inf)


def curve_band(outcome: Outcome, budget: int) -> np.ndarray:
    """float32 (3, budget): 25 %, median and 75 % over runs of the best seed-mean score evaluated
    within 1..budget samples of cost (NaN where no run has a score yet)."""
    best = np.asarray(metrics.best_so_far(outcome.scores))
    grid = np.arange(1, budget + 1, dtype=np.float32)
    # Per run: the last evaluation whose cumulative cost fits in each grid point.
    last = np.stack([np.searchsorted(c, grid + 1e-6, side="right") - 1 for c in outcome.cost])
    values = np.where(last >= 0, np.take_along_axis(best, np.maximum(last, 0), axis=1), np.nan)
    return np.asarray(metrics.quantile_band(values))


def random_search_exact(n: int, m: int) -> tuple[float, float]:
    """(median, mean) samples until uniform sampling without replacement from n architectures, m of
    them optimal, first draws an optimal one."""
    survive, t = 1.0, 0
    while survive > 0.5:  # P(T > t) = prod_{j < t} (n - m - j) / (n - j)
        survive *= (n - m - t) / (n - t)
        t += 1
    return float(t), (n + 1) / (m + 1)


def landscape(bench: TabularBenchmark) -> dict:
    """Local optima under `space.neighbors`: with seed-averaged scores and with each seed's scores."""
    return {"architectures": int(bench.table.shape[0]), "seeds": bench.n_seeds,
            "seed_averaged": metrics.count_local_optima(bench.space, bench.scores_mean),
            "single_seed": [metrics.count_local_optima(bench.space, bench.table[:, s])
                            for s in range(bench.n_seeds)]}


def summarize(outcomes: dict[str, Outcome | str], optimum: float, n: int, m: int) -> list[dict]:
    """One row per strategy: the fraction of runs reaching the optimum, the median samples to it
    (None: the median run did not reach it), the mean over the runs that did, the ratio of random
    search's exact median to the median, the cost (seconds per search and milliseconds per
    evaluation, from the vmapped searches' wall time; compilation apart), and why a strategy did
    not run ("absent")."""
    exact_median, _ = random_search_exact(n, m)
    rows = []
    for name, outcome in outcomes.items():
        row = dict.fromkeys(("strategy", "runs", "batch", "reached", "median", "mean_reached",
                             "ratio_random_over_strategy", "seconds", "seconds_per_search",
                             "ms_per_sample", "compile_seconds", "absent"))
        row["strategy"] = name
        if isinstance(outcome, str):
            rows.append({**row, "runs": 0, "absent": outcome})
            continue
        s = samples_to_optimum(outcome, optimum)
        median, hit = float(np.median(s)), s[np.isfinite(s)]
        runs, evaluations = outcome.scores.shape
        rows.append({**row, "runs": runs, "batch": outcome.batch, "reached": float(np.mean(np.isfinite(s))),
                     "median": median if math.isfinite(median) else None,
                     "mean_reached": float(np.mean(hit)) if hit.size else None,
                     "ratio_random_over_strategy": exact_median / median if math.isfinite(median) else None,
                     "seconds": outcome.seconds, "seconds_per_search": outcome.seconds / runs,
                     "ms_per_sample": 1e3 * outcome.seconds / (runs * evaluations),
                     "compile_seconds": outcome.compile_seconds})
    return rows


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
                     f"{r['compile_seconds']:>10.1f}")
    return "\n".join(lines)


def write_outputs(out: pathlib.Path, outcomes: dict[str, Outcome | str], rows: list[dict],
                  optimum: float, budget: int, land: dict, title: str) -> None:
    """summary.csv, curves.csv, samples_to_optimum.csv, landscape.json and the two plots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "summary.csv", rows)
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

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, band in bands.items():
        line, = ax.plot(x, band[1], label=name, lw=1.2)
        ax.fill_between(x, band[0], band[2], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(optimum, color="k", ls=":", lw=0.8, label="global optimum")
    low = np.nanmin([np.nanmin(band[0]) for band in bands.values()])
    ax.set(xscale="log", xlabel="samples", ylabel="best seed-mean score evaluated",
           ylim=(low, optimum + 0.05 * (optimum - low)),
           title=f"{title}: best so far (median, 25-75 % over runs)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, s in hits.items():
        ax.step(x, np.mean(s[None, :] <= x[:, None], axis=1), where="post", label=name, lw=1.2)
    ax.set(xscale="log", xlabel="samples", ylabel="fraction of runs that evaluated the optimum",
           ylim=(0, 1.02), title=f"{title}: samples to reach the global optimum (ECDF)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "samples_to_optimum.png", dpi=120)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--benchmark", choices=BENCHMARKS, default="nasbench201-cifar10")
    p.add_argument("--data-dir", default=None, help="for NB-201 (default: $NASJAX_DATA_DIR)")
    p.add_argument("--table", default=None, help="convnet-cifar10 only: a table file built by "
                   "experiments/build_convnet_table.py instead of the shipped one")
    p.add_argument("--seeds", type=int, default=100, help="independent searches per strategy")
    p.add_argument("--budget", type=int, default=None,
                   help="evaluations per search (default: 1,000, or every architecture of a smaller table)")
    p.add_argument("--batch", type=int, default=None,
                   help=f"architectures asked per round, every strategy (default: {BATCH} for those "
                        "named, 1 for the others)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strategies", nargs="+", default=None,
                   help=f"default: every registered one, then the variants {sorted(VARIANTS)}")
    p.add_argument("--denoised", action="store_true", help="searches see seed-mean scores")
    p.add_argument("--out", default=None, help="default: runs/sample_efficiency/<benchmark>")
    args = p.parse_args(argv)
    if min(args.seeds, args.budget or 1, args.batch or 1) < 1:
        p.error("--seeds, --budget and --batch must be >= 1")
    if args.table and args.benchmark != "convnet-cifar10":
        p.error("--table goes with --benchmark convnet-cifar10")
    known = sorted(search.STRATEGIES) + sorted(VARIANTS)
    unknown = set(args.strategies or ()) - set(known)
    if unknown:
        p.error(f"unknown strategies {sorted(unknown)}; known: {known}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = convnet.load(args.table) if args.table else benchmarks.load(args.benchmark, args.data_dir)
    _, optimum = bench.optimum()
    n, m = bench.table.shape[0], int(np.sum(bench.scores_mean >= optimum))
    budget = args.budget or min(DEFAULT_BUDGET, n)
    if budget > n:
        print(f"error: --budget {budget} exceeds the benchmark's {n} architectures", file=sys.stderr)
        return 2
    names = args.strategies or sorted(search.STRATEGIES) + sorted(VARIANTS)
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    noisy = not args.denoised and bench.n_seeds > 1
    print(f"{bench!r}; {bench.source}\nglobal optimum {optimum:.4f} (seed mean, {m} architecture(s)); "
          f"{args.seeds} searches x {budget} samples per strategy; each evaluation sees "
          f"{'one drawn seed' if noisy else 'the seed mean'}", flush=True)
    outcomes = {}
    for name in names:
        batch = args.batch or BATCH.get(name, 1)
        outcomes[name] = run_strategy(name, bench, budget, batch, keys, not args.denoised)
        done = outcomes[name]
        print(f"  {name}: " + (f"{done.seconds:.1f} s (+ {done.compile_seconds:.1f} s compiling)"
                               if isinstance(done, Outcome) else f"not run ({done})"),
              flush=True)
    rows = summarize(outcomes, optimum, n, m)
    exact_median, exact_mean = random_search_exact(n, m)
    print(f"\nSamples to reach the global optimum ({args.seeds} runs per strategy, budget {budget}; "
          f"'reached' = fraction of runs that did):")
    print(format_table(rows, budget))
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
    out = pathlib.Path(args.out or f"runs/sample_efficiency/{args.benchmark}")
    write_outputs(out, outcomes, rows, optimum, budget, land, args.benchmark)
    print(f"wrote {out}/: summary.csv, curves.csv, samples_to_optimum.csv, landscape.json, "
          "best_so_far.png, samples_to_optimum.png")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkDataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
