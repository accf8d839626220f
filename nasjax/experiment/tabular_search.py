"""Searches on a benchmark, many seeds as one program: the runner behind
experiments/sample_efficiency.py (LaNAS `002_*` §4.2, Fig. 5) and experiments/ri_benchmark.py.

    outcome = run_strategy("lanas", bench, budget=1000, batch=1, keys=jax.random.split(key, 100))
    rows = summarize({"lanas": outcome}, optimum, n, m)

`run_strategy` runs `len(keys)` searches of a registered strategy (or a `VARIANTS` row) as ONE
jit(vmap(`nasjax.search.scan`)) over the keys. The objective is the benchmark's `query` (one
training seed drawn per evaluation unless `noisy=False`); multi-fidelity strategies read the
learning curves (`objective_at_budget`) and an evaluation at budget b costs ceil(b) / epochs samples.
Every evaluated architecture is scored by its seed mean, whatever the search saw. On a benchmark whose
objective runs on the host (`jittable = False`: a supernet, `nasjax.benchmarks.supernet`) the searches
are `nasjax.search.run` loops, one per key, asking what `scan` with that key would ask.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import numpy as np

from nasjax import metrics, search
from nasjax.benchmarks import TabularBenchmark
from nasjax.search import lanas
from nasjax.search.nao import NAO
from nasjax.search.rnas import RNAS

MULTI_FIDELITY = ("hyperband", "successive_halving")
# Architectures per round where one at a time is too slow: the model-based acquisitions (a GP fit
# over a 256-sample window for BO, densities over the history for TPE, model training for NAO and
# RNAS) dominate the search's cost.
BATCH = {"bo": 10, "tpe": 10, "lanas_bo": 10, "nao": 10, "nao_paper": 10, "rnas": 10, "rnas_paper": 10}
# Extra rows: a registered strategy with another configuration (row name -> (strategy, config)):
# LaNAS with the paper's settings (exploration constant, init and select 10); LaNAS whose splits fit
# the scores' ranks; NAO and RNAS with their papers' settings (min-max targets, no fallback but repeats).
VARIANTS = {"lanas_paper": ("lanas", lanas.PAPER), "lanas_rank": ("lanas", dict(split_scores="rank")),
            "nao_paper": ("nao", NAO.PAPER), "rnas_paper": ("rnas", RNAS.PAPER)}


def strategy_of(row: str) -> str:
    """The registered strategy a row runs: a `VARIANTS` row's, else the row's name."""
    return VARIANTS.get(row, (row,))[0]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One strategy's searches, `runs` of them, `budget` evaluations each.

    scores float32 (runs, budget): seed-mean score of each evaluated architecture, NaN for a
      low-fidelity evaluation; cost float32 (runs, budget): cumulative cost in samples (full
      trainings) after each evaluation; batch: architectures per round; seconds: wall time of the
      vmapped searches, compilation excluded; compile_seconds: their compilation (None for host
      loops, whose seconds include it).
    """

    scores: np.ndarray
    cost: np.ndarray
    batch: int
    seconds: float
    compile_seconds: float | None


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


def run_strategy(name: str, bench: TabularBenchmark, budget: int, batch: int, keys: jax.Array,
                 noisy: bool = True) -> Outcome | str:
    """`len(keys)` searches of strategy `name` on `bench`, vmapped over the keys; or why the benchmark
    cannot host the strategy (see `make_strategy`)."""
    rounds = -(-budget // batch)
    strategy, why = make_strategy(name, bench, rounds * batch)
    if strategy is None:
        return why
    if not bench.jittable:
        return run_on_host(strategy, bench, budget, batch, keys)
    multi = name in MULTI_FIDELITY
    objective = bench.objective_at_budget() if multi else bench.objective(noisy)
    state, seconds, compile_seconds = timed(
        jax.vmap(functools.partial(search.scan, strategy, objective, rounds=rounds, batch=batch)), keys)
    scores = evaluated_scores(bench, state, budget)
    if multi:
        epochs = bench.curves.shape[2]
        used = np.clip(np.ceil(np.asarray(state.budgets)[:, :budget]), 1, epochs)
        scores = np.where(used >= epochs, scores, np.nan)
        cost = np.cumsum(used / epochs, axis=1)
    else:
        cost = unit_cost(scores)
    return Outcome(scores=scores.astype(np.float32), cost=cost.astype(np.float32), batch=batch,
                   seconds=seconds, compile_seconds=compile_seconds)


def run_on_host(strategy, bench, budget: int, batch: int, keys: jax.Array) -> Outcome:
    """`nasjax.search.run` with each key in turn on `bench`'s host objective (deterministic scores,
    so each evaluation's score is what the search saw)."""
    start = time.perf_counter()
    objective = bench.objective(noisy=False)
    scores = np.stack([search.run(strategy, objective, budget, key, batch_size=batch, progress=False).scores
                       for key in keys])
    cost = unit_cost(scores)
    return Outcome(scores=scores.astype(np.float32), cost=cost, batch=batch,
                   seconds=time.perf_counter() - start, compile_seconds=None)


def run_lanas_from_sources(bench: TabularBenchmark, budget: int, keys: jax.Array, source_archs: jax.Array,
                           source_scores: jax.Array, source_count: jax.Array, exclude: bool,
                           source_mass: float | None = None, **config) -> Outcome:
    """`len(keys)` LaNAS searches on `bench` (one architecture per round, as Algorithm 1), search i
    started from latent actions learned on source i (`LaNAS.transfer_init`; NaN scores: a fresh
    search): source_archs int32 (runs, P, *enc), source_scores float32 (runs, P), source_count
    int32 (runs,) real rows, weighing `source_mass` samples in all (default: LaNAS's n_init). One program,
    vmapped over the runs; `config` configures LaNAS."""
    strategy = search.make("lanas", bench.space, capacity=budget, **config)
    objective = bench.objective(noisy=True)

    def one(key, archs, scores, count):
        init = functools.partial(strategy.transfer_init, source_archs=archs, source_scores=scores,
                                 source_count=count, source_mass=source_mass, exclude=exclude)
        return search.scan(strategy, objective, key, budget, 1, init=init)

    state, seconds, compile_seconds = timed(jax.vmap(one), keys, source_archs, source_scores, source_count)
    scores = evaluated_scores(bench, state, budget)
    cost = unit_cost(scores)
    return Outcome(scores=scores, cost=cost, batch=1, seconds=seconds, compile_seconds=compile_seconds)


def unit_cost(scores: np.ndarray) -> np.ndarray:
    """float32 (runs, budget): cumulative cost when every evaluation is one full sample."""
    return np.broadcast_to(np.arange(1, scores.shape[1] + 1, dtype=np.float32), scores.shape)


def timed(fn, *args):
    """jit(fn) compiled for `args`, then run on them -> (result, seconds running, seconds compiling)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    ready = time.perf_counter()
    result = jax.block_until_ready(compiled(*args))
    return result, time.perf_counter() - ready, ready - start


def evaluated_scores(bench: TabularBenchmark, state, budget: int) -> np.ndarray:
    """float32 (runs, budget): the seed-mean score of each architecture in the searches' histories."""
    archs = np.asarray(state.history.encodings)[:, :budget]
    index = np.asarray(jax.vmap(jax.vmap(bench.space.index))(archs))
    return np.asarray(bench.scores_mean)[index].astype(np.float32)


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


def summarize(outcomes: dict[str, Outcome | str], optimum: float, n: int | None = None,
              m: int | None = None) -> list[dict]:
    """One row per strategy: the fraction of runs reaching the optimum, the median samples to it
    (None: the median run did not reach it), the mean over the runs that did, the ratio of random
    search's exact median (for `m` optimal architectures among `n`; None when not given) to the
    median, the cost (seconds per search and milliseconds per evaluation, from the searches' wall
    time; compilation apart where it was timed apart), and why a strategy did not run ("absent")."""
    exact_median = random_search_exact(n, m)[0] if n else math.nan
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
                     "ratio_random_over_strategy": (exact_median / median
                                                    if math.isfinite(median * exact_median) else None),
                     "seconds": outcome.seconds, "seconds_per_search": outcome.seconds / runs,
                     "ms_per_sample": 1e3 * outcome.seconds / (runs * evaluations),
                     "compile_seconds": outcome.compile_seconds})
    return rows
