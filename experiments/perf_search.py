"""LaNAS speed: time per ask/tell at history sizes 1e2/1e3/1e4, and the wall time of many independent
searches on an enumerable random table, one vmapped program vs a Python loop of single searches.

    python experiments/perf_search.py --seed 0 --searches 100 --samples 2000 --out runs/perf_search

The table: ConvNetSpace(channels=(16, 32, 64), kernels=(1, 3, 5, 7), depth 1-4): 22,620 networks,
each scored by a fixed random draw (seeded). Loop figures for all searches are extrapolated from
`--loop-searches` single searches (said so in the output), which are also compared bit for bit with
the same keys' vmapped searches. The vmapped searches are timed as one batch of all searches and as
lax.map over vmapped chunks of `--chunk` (the same results; smaller arrays stay in cache). `--batch`
architectures per ask (LaNAS refits once per `n_select` = 10 told: with --batch 1, every tenth
tell). Times are wall-clock seconds, with this process's CPU seconds beside them (on a shared
machine, wall time over CPU time / cores shows contention). Writes results.jsonl under --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp

from nasjax.experiment.cli import COUNT, SEED, Parser, check
from nasjax.experiment.cli import main as run_main
from nasjax.search import scan
from nasjax.search.lanas import LaNAS
from nasjax.spaces import ConvNetSpace

SPACE = ConvNetSpace(channels=(16, 32, 64), kernels=(1, 3, 5, 7), min_depth=1, max_depth=4)


def timed(fn, *args):
    """(result, wall seconds) of fn(*args), blocking on the result."""
    return timed_cpu(fn, *args)[:2]


def timed_cpu(fn, *args):
    """(result, wall seconds, process CPU seconds) of fn(*args), blocking on the result."""
    start, cpu = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start, time.process_time() - cpu


def data(a: jax.Array) -> jax.Array:
    """The array itself, or a PRNG key array's raw data (comparable with ==)."""
    return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a


def search(strat: LaNAS, table: jax.Array, key: jax.Array, rounds: int, batch: int):
    """rounds x ask(batch)/tell on the table (`nasjax.search.scan`) -> final state."""
    return scan(strat, lambda archs, _: table[jax.vmap(SPACE.index)(archs)], key, rounds, batch)


def ask_tell_times(table, key, sizes, repeats):
    """Per history size: seconds per ask(n_select) and per tell(n_select) with a refit."""
    rows = []
    for size in sizes:
        strat = LaNAS(SPACE, capacity=size + 10, n_select=10)
        ask, tell = jax.jit(strat.ask, static_argnums=1), jax.jit(strat.tell)
        state = strat.init(key)
        archs, state = ask(state, size)  # fill the history to `size` in one tell (one fit)
        state = tell(state, archs, table[jax.vmap(SPACE.index)(archs)])
        (archs, _), _ = timed(ask, state, 10)  # compile
        timed(tell, state, archs, table[jax.vmap(SPACE.index)(archs)])
        t_ask = min(timed(ask, state, 10)[1] for _ in range(repeats))
        scores = table[jax.vmap(SPACE.index)(archs)]
        t_tell = min(timed(tell, state, archs, scores)[1] for _ in range(repeats))
        rows.append(dict(kind="ask_tell", history=size, ask_s=t_ask, tell_refit_s=t_tell))
        print(f"history {size:>6}: ask(10) {t_ask * 1e3:8.2f} ms   tell(10)+refit {t_tell * 1e3:8.2f} ms")
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--searches", type=COUNT, default=100)
    p.add_argument("--samples", type=COUNT, default=2000)
    p.add_argument("--batch", type=COUNT, default=10,
                   help="architectures per ask in the searches (LaNAS refits every 10 told: with "
                        "--batch 1, one tell in 10 refits)")
    p.add_argument("--loop-searches", type=COUNT, default=3)
    p.add_argument("--chunk", type=COUNT, default=10,
                   help="also time the vmapped searches as lax.map over vmapped chunks of this size")
    p.add_argument("--sizes", type=COUNT, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--repeats", type=COUNT, default=3)
    p.add_argument("--out", default="runs/perf_search")
    args = p.parse_args(argv)
    check((args.searches % args.chunk == 0, f"--chunk {args.chunk} must divide --searches {args.searches}"),
          (args.loop_searches <= args.searches, f"--loop-searches {args.loop_searches} exceeds --searches"),
          (args.samples >= args.batch, f"--samples {args.samples} is fewer than one --batch ({args.batch})"))
    return args


def main(argv=None) -> int:
    return run_main(lambda: perf_search(parse_args(argv)))


def perf_search(args: argparse.Namespace) -> None:
    """The measurements: printed, and written where the flags say."""
    key = jax.random.key(args.seed)
    k_table, k_time, k_search = jax.random.split(key, 3)
    table = jax.random.normal(k_table, (SPACE.size(),))
    print(f"{jax.devices()[0].platform}, table of {SPACE.size():,} networks")
    rows = ask_tell_times(table, k_time, args.sizes, args.repeats)

    strat = LaNAS(SPACE, capacity=args.samples, n_select=10)
    rounds = args.samples // args.batch
    keys = jax.random.split(k_search, args.searches)
    one_search = functools.partial(search, strat, table, rounds=rounds, batch=args.batch)
    one = jax.jit(one_search)
    many = jax.jit(jax.vmap(one_search))
    _, t_compile_many = timed(many, keys)
    final, t_many, cpu_many = timed_cpu(many, keys)
    _, t_compile_one = timed(one, keys[0])
    loop = [timed_cpu(one, k) for k in keys[:args.loop_searches]]
    t_loop_all = sum(t for _, t, _ in loop) / args.loop_searches * args.searches
    cpu_loop_all = sum(c for _, _, c in loop) / args.loop_searches * args.searches
    same = all(jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(data(a)[i], data(b), equal_nan=True)), final, alone))
        for i, (alone, _, _) in enumerate(loop))
    best = jnp.max(jax.vmap(lambda h: h.ranked_scores())(final.history), axis=1)
    found = float(jnp.mean(best == jnp.max(table)))
    print(f"{args.searches} searches x {args.samples} samples, ask({args.batch}): vmapped "
          f"{t_many:.2f} s "
          f"(CPU {cpu_many:.2f} s; compile+run {t_compile_many:.2f} s); Python loop of single "
          f"searches {t_loop_all:.2f} s (CPU {cpu_loop_all:.2f} s; extrapolated from "
          f"{args.loop_searches}); loop/vmapped = {t_loop_all / t_many:.2f}x; found the table's "
          f"optimum in {found:.0%}; the {args.loop_searches} single searches equal their vmapped "
          f"counterparts bit for bit: {same}")
    chunked = jax.jit(lambda k: jax.lax.map(jax.vmap(one_search), k.reshape(-1, args.chunk, *k.shape[1:])))
    _, t_compile_chunked = timed(chunked, keys)
    by_chunk, t_chunked, cpu_chunked = timed_cpu(chunked, keys)
    same_chunked = jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda a, b: bool(jnp.array_equal(data(a), data(b).reshape(data(a).shape), equal_nan=True)),
        final, by_chunk))
    print(f"the same {args.searches} searches as lax.map over vmapped chunks of {args.chunk} "
          f"(smaller arrays, cache-resident): {t_chunked:.2f} s (CPU {cpu_chunked:.2f} s); equal "
          f"to the one-batch vmapped searches bit for bit: {same_chunked}")
    rows.append(dict(kind="searches_chunked", searches=args.searches, samples=args.samples,
                     batch=args.batch, chunk=args.chunk, wall_s=t_chunked, cpu_s=cpu_chunked,
                     compile_s=t_compile_chunked - t_chunked, equals_vmapped=same_chunked))
    rows.append(dict(kind="searches", searches=args.searches, samples=args.samples,
                     batch=args.batch, vmapped_s=t_many, vmapped_cpu_s=cpu_many,
                     vmapped_compile_s=t_compile_many - t_many,
                     loop_s_extrapolated=t_loop_all, loop_cpu_s_extrapolated=cpu_loop_all,
                     loop_measured=args.loop_searches, single_compile_s=t_compile_one,
                     ratio=t_loop_all / t_many, found_optimum=found, loop_equals_vmapped=same))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {out / 'results.jsonl'}")


if __name__ == "__main__":
    sys.exit(main())
