"""Latent-action transfer (LaNAS `002_*` §4.4, Fig. 8): LaNAS started from actions learned elsewhere
against LaNAS started fresh, on NAS-Bench-201.

    python experiments/lanas_transfer.py --seeds 100
    python experiments/lanas_transfer.py --seeds 20 --budget 200 --fractions 5 10

Each search draws a random `--fractions` percent of the source table (nested: a seed's 1 % lies in
its 5 %, ...) with the source's scores; its tree is fitted to them before the first ask and they join
every refit (`LaNAS.transfer_init`; LaNAS's default configuration with rank split targets, so that
another task's scores are comparable, `--split-scores`); the source weighs `--source-mass` samples in
all (default LaNAS's n_init, 10; each source sample weighing one made transfer hurt, more so the
larger the source).
* Intra-task (`--source`, default nasbench201-cifar10): the rest of the same table is searched; the
  source's architectures are never asked, and the optimum is the best of the rest. Fresh: the same
  search of the rest without the source's scores.
* Inter-task (`--targets`, default cifar100 and imagenet16): the whole target table is searched
  (its global optimum). Fresh: plain LaNAS (a source without scores is LaNAS bit for bit).
Transferred and fresh searches use the same keys. Every configuration of one target runs as ONE
program, vmapped over seeds x configurations.

Prints the table (median samples to the optimum over the seeds, transferred vs fresh, the fraction
of searches that reached it within --budget) and writes to --out (default runs/lanas_transfer):
summary.csv, samples_to_optimum.csv and transfer.png (Fig. 8's panels: median samples against the
source fraction). Each target's rows go to rows.jsonl as soon as its searches finish; the same command
run again (e.g. after a kill) skips the targets found there, and other flags in the folder are refused.
"""

from __future__ import annotations

import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nasjax import benchmarks
from nasjax.experiment import begin, check_config, data_fingerprint, own_workdir
from nasjax.experiment.cli import COUNT, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.tabular_search import run_lanas_from_sources, samples_to_optimum
from nasjax.experiment.outputs import pyplot, save_figure
from nasjax.io import append_jsonl, read_jsonl, write_csv
from nasjax.runtime import avoid_cpu_scheduler_deadlock
from nasjax.search.base import catalogue
from nasjax.search.lanas import SPLIT_SCORES

avoid_cpu_scheduler_deadlock()

NB201 = ("nasbench201-cifar10", "nasbench201-cifar100", "nasbench201-imagenet16")
ROWS = "rows.jsonl"  # one line per table row, appended per finished target


def parse_args(argv=None):
    p = Parser(__doc__)
    p.add_argument("--data-dir", type=folder, default=None, help="default: $NASJAX_DATA_DIR")
    p.add_argument("--source", choices=NB201, default="nasbench201-cifar10")
    p.add_argument("--targets", nargs="*", choices=NB201, default=["nasbench201-cifar100", "nasbench201-imagenet16"],
                   help="inter-task targets (none: intra-task only)")
    p.add_argument("--fractions", nargs="+", type=integer(1, 90), default=[1, 5, 10, 20],
                   help="percent of the source table learned from")
    p.add_argument("--seeds", type=COUNT, default=100)
    p.add_argument("--budget", type=COUNT, default=300, help="evaluations per search")
    p.add_argument("--split-scores", choices=SPLIT_SCORES, default="rank")
    p.add_argument("--source-mass", type=real(0, lo_open=True), default=None,
                   help="the source's total weight in the tree's fits, in samples (default: LaNAS's "
                        "n_init; the number of source architectures gives each one weight 1)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", type=folder, default="runs/lanas_transfer")
    args = p.parse_args(argv)
    check((args.source not in args.targets, f"--targets must differ from --source {args.source}"),
          (len(set(args.fractions)) == len(args.fractions), "--fractions repeats a value"))
    return args


def main(argv=None) -> int:
    return run_main(lambda: transfer(parse_args(argv)))


def sources(args, size: int):
    """Per seed: a permutation of the table's members (its first `count` rows are the source) and the
    search key. -> (member index int32 (seeds, P), counts {fraction: count}, keys (seeds,))."""
    counts = {f: max(1, round(f / 100 * size)) for f in args.fractions}
    k_source, k_search = jax.random.split(jax.random.key(args.seed))
    perm = jax.vmap(lambda k: jax.random.permutation(k, size))(jax.random.split(k_source, args.seeds))
    return np.asarray(perm[:, :max(counts.values())]), counts, jax.random.split(k_search, args.seeds)


def starts(fractions: list[int], intra: bool) -> list[tuple[int | None, bool]]:
    """A target's table rows, (source fraction, learned from its scores): transferred per fraction,
    then fresh; fresh intra-task per fraction (it still excludes that fraction's source: the same
    rest), inter-task once."""
    return [(f, True) for f in fractions] + ([(f, False) for f in fractions] if intra else [(None, False)])


def run_target(args, target, source_scores, members, index, counts, keys, intra: bool) -> list[dict]:
    """Transferred (each fraction) and fresh searches of `target`, one vmapped program -> rows."""
    configs = [(f, 0 if f is None else counts[f], learned) for f, learned in starts(args.fractions, intra)]
    s = args.seeds
    archs = np.tile(members[index], (len(configs), 1, 1))
    scores = np.concatenate([np.where(learned, source_scores[index], np.nan) for _, _, learned in configs])
    count = np.repeat([c for _, c, _ in configs], s).astype(np.int32)
    outcome = run_lanas_from_sources(target, args.budget, jnp.tile(keys, len(configs)), jnp.asarray(archs),
                                     jnp.asarray(scores, jnp.float32), jnp.asarray(count), exclude=intra,
                                     source_mass=args.source_mass, split_scores=args.split_scores)
    best = np.asarray(target.scores_mean)
    if intra:  # the best of the rest, per search
        rest = np.ones((count.size, best.size), bool)
        taken = np.tile(index, (len(configs), 1))
        in_source = np.arange(index.shape[1])[None] < count[:, None]
        rest[np.nonzero(in_source)[0], taken[in_source]] = False
        optimum = np.max(np.where(rest, best[None], -np.inf), axis=1)
    else:
        optimum = np.full(count.size, np.nanmax(best))
    hits = samples_to_optimum(outcome, optimum[:, None])
    rows = []
    for i, (fraction, _, learned) in enumerate(configs):
        h = hits[i * s:(i + 1) * s]
        median = float(np.median(h))
        rows.append(dict(target=target.name, task="intra" if intra else "inter", fraction_percent=fraction,
                         start="transferred" if learned else "fresh", runs=s,
                         reached=float(np.mean(np.isfinite(h))),
                         median=median if math.isfinite(median) else None, samples=h.tolist()))
    print(f"  {target.name}: {outcome.seconds:.0f} s (+ {outcome.compile_seconds:.0f} s compiling) for "
          f"{count.size} searches", flush=True)
    return rows


def transfer(args) -> None:
    check_data_dir(args.data_dir)
    config = {k: v for k, v in vars(args).items() if k not in ("data_dir", "out")}
    with own_workdir(args.out, "--out") as out:
        new = check_config(out, config)
        source = benchmarks.load(args.source, args.data_dir)
        targets = [benchmarks.load(t, args.data_dir) for t in args.targets]
        begin(out, config, data_fingerprint(source.source, *(t.scores_mean for t in (source, *targets))), new)
        members = np.asarray(catalogue(source.space))
        index, counts, keys = sources(args, members.shape[0])
        print(f"LaNAS transfer: source {args.source}, fractions {args.fractions} % "
              f"({', '.join(str(counts[f]) for f in args.fractions)} architectures), {args.seeds} seeds x "
              f"{args.budget} samples, split targets {args.split_scores}", flush=True)
        scores = np.asarray(source.scores_mean)
        plan = ((source, True), *((t, False) for t in targets))
        done = finished_targets(out / ROWS, {t.name: len(starts(args.fractions, intra)) for t, intra in plan})
        rows = []
        for target, intra in plan:
            if target.name in done:
                print(f"  {target.name}: finished earlier ({out / ROWS})", flush=True)
                rows += done[target.name]
                continue
            finished = run_target(args, target, scores, members, index, counts, keys, intra)
            append_jsonl(out / ROWS, [dict(r, samples=[v if math.isfinite(v) else None for v in r["samples"]])
                                      for r in finished])
            rows += finished
        print_table(rows, args.budget)
        write_outputs(out, rows, args.budget)


def finished_targets(path: pathlib.Path, expected: dict[str, int]) -> dict[str, list[dict]]:
    """{target: its rows} of the targets whose `expected[target]` rows `path` holds. A target's rows
    are one write, so only the last can be incomplete (a kill mid-write): the file is cut back before it."""
    records = read_jsonl(path)
    done: dict[str, list[dict]] = {}
    for row in records:  # strict JSON there: a search that never reached the optimum is null
        row["samples"] = [math.inf if v is None else v for v in row["samples"]]
        done.setdefault(row["target"], []).append(row)
    partial = [name for name, rows in done.items() if len(rows) != expected.get(name)]
    if partial:
        read_jsonl(path, keep=len(records) - sum(len(done.pop(name)) for name in partial))
    return done


def median_text(row, budget: int) -> str:
    return f"> {budget}" if row["median"] is None else f"{row['median']:.1f}"


def print_table(rows: list[dict], budget: int) -> None:
    print(f"\nMedian samples to the optimum ({rows[0]['runs']} searches each; reached = within {budget})")
    print(f"{'target':<22} {'task':<6} {'source %':>8} {'transferred':>12} {'reached':>8} {'fresh':>8} "
          f"{'reached':>8} {'fresh/transferred':>18}")
    fresh = {(r["target"], r["fraction_percent"]): r for r in rows if r["start"] == "fresh"}
    for r in rows:
        if r["start"] != "transferred":
            continue
        f = fresh.get((r["target"], r["fraction_percent"])) or fresh[(r["target"], None)]
        ratio = f["median"] / r["median"] if f["median"] and r["median"] else None
        print(f"{r['target']:<22} {r['task']:<6} {r['fraction_percent']:>8} {median_text(r, budget):>12} "
              f"{r['reached']:>8.0%} {median_text(f, budget):>8} {f['reached']:>8.0%} "
              f"{'-' if ratio is None else format(ratio, '.2f'):>18}")


def write_outputs(out: pathlib.Path, rows: list[dict], budget: int) -> None:
    plt = pyplot()

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "summary.csv", [{k: v for k, v in r.items() if k != "samples"} for r in rows])
    write_csv(out / "samples_to_optimum.csv", [
        dict(target=r["target"], fraction_percent=r["fraction_percent"], start=r["start"], run=i,
             samples_to_optimum=v) for r in rows for i, v in enumerate(r["samples"])])
    names = list(dict.fromkeys(r["target"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        mine = [r for r in rows if r["target"] == name]
        for start, style in (("transferred", "o-"), ("fresh", "s--")):
            pts = [(r["fraction_percent"], r["median"] if r["median"] is not None else np.nan)
                   for r in mine if r["start"] == start]
            if len(pts) == 1 and pts[0][0] is None:  # inter-task fresh: one value for every fraction
                ax.axhline(pts[0][1], ls="--", color="gray", label="fresh")
                continue
            ax.plot(*zip(*pts), style, label=start)
        fractions = sorted({r["fraction_percent"] for r in mine if r["fraction_percent"] is not None})
        ax.set(xticks=fractions, xlabel="% of the source table learned from",
               ylabel=f"median samples to the optimum (budget {budget})", title=f"{mine[0]['task']}-task: {name}")
        ax.legend(fontsize=8)
    save_figure(fig, out / "transfer.png")
    print(f"wrote {out}/: summary.csv, samples_to_optimum.csv, transfer.png (budget {budget})")


if __name__ == "__main__":
    sys.exit(main())
