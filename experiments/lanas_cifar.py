"""LaNAS over a ConvNet or cell space on CIFAR-10, end to end: search, final evaluation, summary; resumable.

    python experiments/lanas_cifar.py --data-dir ../shared/data   # a local cifar-10-batches-py folder
    python experiments/lanas_cifar.py                              # $NASJAX_DATA_DIR, else tfds (internet)
    python experiments/lanas_cifar.py --space nasnet --evaluation supernet   # one-shot LaNAS (`002_*` §4.3)

Cell spaces (`--space nasnet`: LaNAS's NASNet cells, LaNet's space; `--space darts`): networks of
`--channels` x `--layers` cells. `--evaluation standalone` trains every searched cell (as for ConvNets,
on a Ray cluster with `--ray`); `--evaluation supernet` trains the space's weight-sharing supernet once
for `--supernet-epochs` on the search's training images (one uniformly sampled path per batch; saved in
the work directory as a supernet checkpoint, supernet.msgpack and supernet.json, which
`sample_efficiency.py --supernet` and `ri_benchmark.py --supernet` read as a benchmark for every
strategy) and scores each asked cell by its validation accuracy with the
inherited weights, batch-norm statistics recomputed on its path (`nasjax.experiment.one_shot`). The
final evaluation trains the found and random cells from scratch, with `--final-protocol`'s switches;
summary.md then also gives the best cell's parameters (drawn in best_cell.png) and, one-shot, the
Kendall tau between supernet scores and stand-alone accuracies of the finally trained cells. The
paper's protocol (`002_*` §4.3, A.2; hours on accelerators): search with 32 filters, the top 20
retrained for 600 epochs with cutout, drop-path and the auxiliary tower:

    python experiments/lanas_cifar.py --space nasnet --evaluation supernet --channels 32 --layers 8 \
        --supernet-epochs 100 --budget 800 --n-init 100 --n-select 50 --height 5 --train-images 0 \
        --val-images 0 --batch-size 96 --lr 0.025 --final-channels 36 --final-layers 20 \
        --final-top-k 20 --final-random-k 20 --final-seeds 1 --final-epochs 600 \
        --final-train-images 0 --test-images 0 --final-protocol +auxiliary

LaNet's final training (`002_*` A.2) adds AutoAugment and a moving average of the weights:
`--final-protocol +autoaugment --final-ema 0.9998` (the decay is this implementation's choice).

Search (`002_*`): each round LaNAS asks `--n-select` architectures; the population engine trains them
together on all local devices for `--epochs` epochs on the first `--train-images` images of the search
training split, and their accuracies on the first `--val-images` images of the validation split are told
back. The search never sees the test set.

Ray (`--ray local` starts a cluster on this machine, `--ray auto` joins the one it runs, see the
README): each round's architectures and the final training runs are trained by the cluster's workers
(`nasjax.distributed`), with the same training keys, so with this process's device and thread layout
the results are the same bits; each JSONL line then also records its `worker` (host, pid, layout,
seconds). A task whose worker dies is run again up to `--ray-retries` times; past that the run stops
(one line; it resumes). Neither flag is part of the config: a run may resume with or without Ray.

Final evaluation (`001_*`): the `--final-top-k` best architectures found and `--final-random-k`
architectures sampled uniformly from the same space are trained from scratch with the same protocol,
`--final-seeds` times each (seed s gives every architecture the same training key; `--n-select` runs
are trained together), for `--final-epochs` epochs on the first `--final-train-images` images of the
whole training set (search train + validation, so no validation set), and tested on the first
`--test-images` test images. The summary gives, per group, mean +- std over its architectures of
their seed-averaged test accuracy, and RI = 100 (Acc_search - Acc_random) / Acc_random. An image
count of 0 means "all of them".

Work directory (`--workdir`): config.json (the resolved config), data.json (the data's file names, sizes
and sha256: a resume on other data is refused), search/evaluations.jsonl (one line per
searched architecture: encoding, description, seed and training key, validation accuracy per epoch,
params, FLOPs, time), search/checkpoint.npz + run.json (the search state), final.jsonl (one line per
final training run), best_so_far.png, accuracy_hist.png, summary.md and summary.json (written last: a
run with a summary is finished), xla_cache/ (compiled programs, `nasjax.runtime`;
$JAX_COMPILATION_CACHE_DIR or $NASJAX_COMPILE_CACHE instead if set). Re-running the same command
resumes after the last finished search round or final training run with the same bits as an
uninterrupted run; a finished run prints its summary (an incomplete summary is written again from the
logs, saying what was missing); other flags on the same work directory are refused (use another
--workdir). Every flag is checked before anything is written: a refused command leaves nothing
behind, and the corrected one then runs.

Sizing: the defaults are meant for this project's 2-core CPU and the shared CIFAR-10 subset (5,085
training / 1,017 test images). The work is the search's `--budget` x `--epochs` passes over
`--train-images` images plus the final evaluation's (`--final-top-k` + `--final-random-k`) x
`--final-seeds` x `--final-epochs` passes over `--final-train-images`, plus compilation: on CPU one
program per distinct layer shape and batch size, shared by all architectures (`nasjax.train.layered`);
on accelerators one masked program per network depth. `--space tiny` (6 networks of at most two 8/16-channel 3x3 layers) is a
smoke-test space for tests, not for results. Full CIFAR-10 (50,000 / 10,000 images) on an
accelerator, where the population of each round is trained together, sharded over the local devices
(its wall time is not measured yet; the final evaluation's 48 runs of 100 epochs dominate it):

    python experiments/lanas_cifar.py --workdir runs/lanas_full --budget 200 --n-init 20 --n-select 20 \
        --height 5 --epochs 10 --train-images 0 --val-images 0 --final-top-k 8 --final-random-k 8 \
        --final-seeds 3 --final-epochs 100 --final-train-images 0 --test-images 0 --cutout 16
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import pathlib
import sys
import time

import jax
import numpy as np

from nasjax import metrics, search
from nasjax.data import load_cifar10
from nasjax.data.cifar10 import resolve_data_dir
from nasjax.distributed import local_trainer
from nasjax import describe
from nasjax.experiment import (CONVNET_SPACES, UsageError, begin, check_config, data_fingerprint,
                               final_data, final_evaluation, finished, group_stats, make_objective,
                               own_workdir, search_data)
from nasjax.experiment.one_shot import supernet_objective, trained_supernet
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.evaluation import nan_to_null
from nasjax.experiment.outputs import pyplot, save_figure
from nasjax.io import atomic_write_bytes
from nasjax.runtime import reuse_host_memory, use_compile_cache
from nasjax.spaces import DARTSSpace, NASNetSpace
from nasjax.train import TrainConfig, preset
from nasjax.train.protocol import PRESETS

# Cell spaces: their networks' size comes from --channels and --layers (CELL_DEFAULTS when not given).
CELL_SPACES = {"nasnet": NASNetSpace, "darts": DARTSSpace}
SPACES = {**CONVNET_SPACES, **CELL_SPACES}
CELL_DEFAULTS = dict(channels=8, layers=5, evaluation="standalone",
                     # 8 cells trained once rather than 4 twice (the same cost): the Kendall tau between
                     # supernet and stand-alone accuracy is then over 8 cells.
                     final_top_k=4, final_random_k=4, final_seeds=1)
CONVNET_FINAL_DEFAULTS = dict(final_top_k=2, final_random_k=2, final_seeds=2)
SUPERNET_EPOCHS = 2  # --supernet-epochs' default
SUMMARY = "summary.json"
# Fields that depend on the wall clock, not on the seed: everything else is the same bits on resume.
WALL_CLOCK_FIELDS = ("time", "train_seconds")
# Flags that do not decide the results: not part of config.json (nor are flags left at None: those that
# do not apply to the space, so a ConvNet run's config is what it was before cell spaces existed).
NOT_CONFIG = ("workdir", "data_dir", "ray", "ray_retries")


def parse_args(argv=None) -> argparse.Namespace:
    """Flags -> namespace; raises UsageError for unknown flags, values out of range and impossible
    budgets (before anything is written)."""
    p = Parser(__doc__)
    p.add_argument("--data-dir", type=folder, default=None,
                   help="folder with cifar-10-batches-py (default: $NASJAX_DATA_DIR, else tfds)")
    p.add_argument("--workdir", type=folder, default="runs/lanas_cifar",
                   help="where results go; re-run to resume")
    p.add_argument("--seed", type=SEED, default=0, help="seeds the split, search and final training")
    p.add_argument("--space", choices=sorted(SPACES), default="motivating",
                   help="ConvNet space (LaNAS §2's, ConvNet-60K's ranges, or a smoke-test one) or cell "
                        "space (LaNAS's NASNet cells, DARTS' cells)")
    c = p.add_argument_group("cell spaces (nasnet, darts)")
    c.add_argument("--channels", type=COUNT, default=None,
                   help=f"initial channels of the networks, even (default {CELL_DEFAULTS['channels']})")
    c.add_argument("--layers", type=COUNT, default=None,
                   help=f"cells per network (default {CELL_DEFAULTS['layers']})")
    c.add_argument("--final-channels", type=COUNT, default=None,
                   help="initial channels of the finally trained networks (default: --channels)")
    c.add_argument("--final-layers", type=COUNT, default=None,
                   help="cells of the finally trained networks (default: --layers)")
    c.add_argument("--evaluation", choices=("standalone", "supernet"), default=None,
                   help="score each searched cell by training it (standalone, the default) or by the "
                        "weight-sharing supernet's validation accuracy (supernet: one-shot LaNAS)")
    c.add_argument("--supernet-epochs", type=COUNT, default=None,
                   help=f"--evaluation supernet: epochs of supernet training (default {SUPERNET_EPOCHS})")
    c.add_argument("--final-protocol", choices=sorted(PRESETS), default=None,
                   help="the final training's switches (cutout, drop-path, auxiliary tower, AutoAugment) "
                        "from this `001_*` protocol; epochs, batch and lr stay the flags' (default: the "
                        "search's protocol)")
    c.add_argument("--final-ema", type=real(0, 1, lo_open=True, hi_open=True), default=None,
                   help="the final training evaluates an exponential moving average of the weights with "
                        "this decay (LaNet's protocol; default: the weights themselves)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="train on a Ray cluster: 'local' starts one here, 'auto' joins this machine's "
                        "(`ray start`), or the head's host:port (default: in this process)")
    p.add_argument("--ray-retries", type=integer(0), default=3,
                   help="with --ray: times a task whose worker died is run again before the run stops "
                        "(it resumes)")
    s = p.add_argument_group("search")
    s.add_argument("--budget", type=COUNT, default=16, help="architectures evaluated by the search")
    s.add_argument("--n-init", type=COUNT, default=4, help="random samples before LaNAS's first fit")
    s.add_argument("--n-select", type=COUNT, default=4,
                   help="architectures per round, trained together (LaNAS's refit period)")
    s.add_argument("--height", type=integer(2), default=3, help="LaNAS tree height")
    s.add_argument("--epochs", type=COUNT, default=1, help="training epochs per searched architecture")
    s.add_argument("--train-images", type=IMAGES, default=2048, help="search training images (0: all)")
    s.add_argument("--val-images", type=IMAGES, default=1024, help="search validation images (0: all)")
    s.add_argument("--batch-size", type=COUNT, default=128, help="training batch (search and final)")
    s.add_argument("--lr", type=real(0, lo_open=True), default=0.05, help="SGD learning rate, cosine-annealed")
    s.add_argument("--cutout", type=integer(0, 32), default=0, help="cutout size in pixels (0: none)")
    f = p.add_argument_group("final evaluation")
    f.add_argument("--final-top-k", type=COUNT, default=None,
                   help="best searched architectures re-trained (default 2; cell spaces 4)")
    f.add_argument("--final-random-k", type=COUNT, default=None,
                   help="random architectures trained (default 2; cell spaces 4)")
    f.add_argument("--final-seeds", type=COUNT, default=None,
                   help="training seeds per architecture (default 2; cell spaces 1)")
    f.add_argument("--final-epochs", type=COUNT, default=2, help="training epochs per final run")
    f.add_argument("--final-train-images", type=IMAGES, default=2048,
                   help="final training images from train + validation (0: all)")
    f.add_argument("--test-images", type=IMAGES, default=0, help="test images (0: all)")
    args = p.parse_args(argv)
    cell = args.space in CELL_SPACES
    given = [f"--{k.replace('_', '-')}" for k in ("channels", "layers", "final_channels", "final_layers",
                                                    "evaluation", "supernet_epochs", "final_protocol",
                                                    "final_ema")
             if getattr(args, k) is not None]
    check((cell or not given, f"{', '.join(given)}: only for the cell spaces {sorted(CELL_SPACES)}"),
          *[(n is None or n % 2 == 0, f"--{flag} {n} must be even")
            for flag, n in (("channels", args.channels), ("final-channels", args.final_channels))],
          (args.supernet_epochs is None or args.evaluation == "supernet",
           "--supernet-epochs needs --evaluation supernet"))
    for k, v in (CELL_DEFAULTS if cell else CONVNET_FINAL_DEFAULTS).items():
        setattr(args, k, v if getattr(args, k) is None else getattr(args, k))
    if cell:
        if args.evaluation == "supernet" and args.supernet_epochs is None:
            args.supernet_epochs = SUPERNET_EPOCHS
        args.final_channels = args.final_channels or args.channels
        args.final_layers = args.final_layers or args.layers
    space = make_space(args)
    check((args.n_init <= args.budget, f"--n-init must be in [1, --budget={args.budget}]"),
          (args.n_select <= args.budget, f"--n-select must be in [1, --budget={args.budget}]"),
          *[(n == 0 or n >= args.batch_size, f"--{flag} {n} is smaller than one batch ({args.batch_size})")
            for flag, n in (("train-images", args.train_images),
                            ("final-train-images", args.final_train_images))],
          (space.size() >= args.budget,
           f"--budget {args.budget} exceeds the {space.size()} networks of the {args.space} space"),
          (args.final_top_k <= args.budget, f"--final-top-k {args.final_top_k} exceeds --budget {args.budget}"),
          (args.evaluation != "supernet" or args.train_images == 0 or args.train_images >= 2 * args.batch_size,
           f"--evaluation supernet recomputes batch-norm statistics on 2 batches: --train-images "
           f"{args.train_images} is fewer than {2 * args.batch_size}"))
    return args


def make_space(args, final: bool = False):
    """The space `--space` names; cell spaces at --channels x --layers (--final-channels x
    --final-layers for the `final` evaluation: the same encodings, other networks)."""
    if args.space in CELL_SPACES:
        return CELL_SPACES[args.space](init_channels=args.final_channels if final else args.channels,
                                       layers=args.final_layers if final else args.layers)
    return CONVNET_SPACES[args.space]()


def resolved_config(args) -> dict:
    """Everything that decides the results (not where the data and results live)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in NOT_CONFIG and v is not None}


def _pm(mean: float | None, std: float | None) -> str:
    return "failed" if mean is None or not math.isfinite(mean) else f"{mean:.2f} ± {std:.2f}"


def final_protocol(search_config: TrainConfig, args) -> TrainConfig:
    """The final training's protocol: the search's with --final-epochs, and with --final-protocol's
    switches (cutout, drop-path, auxiliary tower, AutoAugment) and --final-ema when given."""
    config = search_config.replace(epochs=args.final_epochs)
    if args.final_ema is not None:
        config = config.replace(ema_decay=args.final_ema)
    if args.final_protocol is None:
        return config
    switches = preset(args.final_protocol)
    return config.replace(cutout=switches.cutout, drop_path=switches.drop_path,
                          auxiliary_weight=switches.auxiliary_weight, autoaugment=switches.autoaugment)


def cell_summary(args, space, final: list[dict], objective, workdir: pathlib.Path) -> dict:
    """For cell spaces: best_cell.png (the best cell found, drawn), and the fields summary.md and
    summary.json add: the space and evaluation, and under one-shot evaluation the Kendall tau between
    the supernet's score and the stand-alone test accuracy (seed mean) of the finally trained cells."""
    best = next(r for r in final if r["group"] == "search" and r["rank"] == 0)  # the best cell found
    describe.draw(describe.graphs(space, np.asarray(best["encoding"])), str(workdir / "best_cell.png"))
    out = {"space": args.space, "channels": args.final_channels, "layers": args.final_layers,
           "evaluation": args.evaluation, "params_of_best": best["params"]}
    if args.evaluation == "supernet":
        archs = [a for g in ("search", "random") for a in group_stats(final, g)["archs"]
                 if a["mean"] is not None]
        one_shot = objective.scores(np.array([a["encoding"] for a in archs]))
        out["supernet_kendall_tau"] = float(metrics.kendall_tau(one_shot, [a["mean"] for a in archs]))
        out["supernet_tau_cells"] = len(archs)
    return out


def summarize(space, result, final: list[dict], workdir: pathlib.Path, elapsed: float,
              cells: dict) -> str:
    """Write the plots, summary.md and, last, summary.json; returns summary.md's text. `cells`: the
    cell spaces' fields (`cell_summary`), empty for ConvNet spaces."""
    best = int(np.argmax(np.where(np.isfinite(result.scores), result.scores, -np.inf)))
    found, random = group_stats(final, "search"), group_stats(final, "random")
    ri = float(metrics.relative_improvement(found["mean"], random["mean"]))
    lines = [
        "# LaNAS on CIFAR-10", "",
        f"Searched {result.evaluations} architectures. Best found (validation accuracy "
        f"{result.scores[best]:.4f}): {space.describe(result.encodings[best])}, encoding "
        f"{result.encodings[best].tolist()}.", "",
        *([f"Space {cells['space']} ({cells['channels']} channels x {cells['layers']} cells; the best cell's "
           f"network has {cells['params_of_best']:,} parameters, drawn in best_cell.png), evaluation "
           f"{cells['evaluation']}."
           + (f" Kendall tau between the supernet's score and the stand-alone test accuracy of the "
              f"{cells['supernet_tau_cells']} finally trained cells: {cells['supernet_kendall_tau']:.3f}."
              if "supernet_kendall_tau" in cells else ""), ""] if cells else []),
        f"Final evaluation (`001_*`): test accuracy (%), mean ± std over architectures of the mean "
        f"over {max(r['seed'] for r in final) + 1} seeds.", "",
        "| architectures | k | test accuracy (%) |", "|---|---|---|",
        f"| top-k found by LaNAS | {len(found['archs'])} | {_pm(found['mean'], found['std'])} |",
        f"| sampled at random | {len(random['archs'])} | {_pm(random['mean'], random['std'])} |",
        "", f"Relative improvement RI = 100 (Acc_search - Acc_random) / Acc_random = {ri:.2f}", "",
        "| group | rank | architecture | test accuracy (%) over seeds |", "|---|---|---|---|",
        *[f"| {name} | {a['rank']} | {a['description']} | {_pm(a['mean'], a['std'])} |"
          for name, stats in (("search", found), ("random", random)) for a in stats["archs"]],
    ]
    text = "\n".join(lines) + "\n"
    plot(result, final, workdir)
    atomic_write_bytes(workdir / "summary.md", text.encode())
    summary = {"evaluations": result.evaluations, "best_val_acc": float(result.scores[best]),
               "best_encoding": result.encodings[best].tolist(),
               "best_description": space.describe(result.encodings[best]),
               "search": found, "random": random, "relative_improvement": ri,
               **cells, "wall_seconds_last_invocation": elapsed}
    atomic_write_bytes(workdir / SUMMARY, (json.dumps(nan_to_null(summary), indent=2, allow_nan=False)
                                           + "\n").encode())
    return text


def plot(result, final: list[dict], workdir: pathlib.Path) -> None:
    """best_so_far.png (best validation accuracy vs architectures evaluated) and accuracy_hist.png
    (test accuracy of the final runs, searched vs random)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, result.evaluations + 1), 100 * np.asarray(metrics.best_so_far(result.scores)))
    ax.set(xlabel="architectures evaluated", ylabel="best validation accuracy (%)", title="LaNAS search")
    save_figure(fig, workdir / "best_so_far.png")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, label in (("search", "top-k found"), ("random", "random")):
        accs = [100 * r["test_acc"] for r in final if r["group"] == group and r["test_acc"] is not None]
        ax.hist(accs, bins=10, alpha=0.6, label=label)
    ax.set(xlabel="test accuracy (%)", ylabel="final training runs", title="Final evaluation")
    ax.legend()
    save_figure(fig, workdir / "accuracy_hist.png")


def trainer_factory(address: str | None, retries: int, cluster: contextlib.ExitStack):
    """make_trainer(space, data, config) of this run (nasjax.distributed): in this process, or with
    --ray by the cluster's workers (a task retried `retries` times), connected until `cluster`
    closes, sharing our compile cache."""
    if address is None:
        return local_trainer
    from nasjax.distributed import ray_cluster  # imports Ray: only with --ray

    cache = pathlib.Path(jax.config.jax_compilation_cache_dir).resolve()
    try:
        cluster.enter_context(ray_cluster.connect(address, env={
            "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}))
    except ConnectionError as e:
        raise UsageError(str(e)) from None
    return functools.partial(ray_cluster.ray_trainer, max_retries=retries)


def lanas_cifar(args: argparse.Namespace) -> str:
    """Run (or resume, or report) the whole job in args.workdir; returns what it prints."""
    t0 = time.time()
    space = make_space(args)
    check_data_dir(args.data_dir)
    resolve_data_dir(args.data_dir)  # a missing folder is reported before the work directory is made
    with own_workdir(args.workdir) as workdir, contextlib.ExitStack() as cluster:
        config = resolved_config(args)
        new = check_config(workdir, config)
        done, problem = finished(workdir, SUMMARY, files=("summary.md",),
                                 keys=("evaluations", "best_encoding", "search", "random",
                                       "relative_improvement"))
        if done:
            return f"This run is finished ({workdir}):\n\n" + (workdir / "summary.md").read_text()
        if problem:
            print(f"note: {problem}; writing the summary again from the run's logs", file=sys.stderr)
        data = load_cifar10(args.data_dir, split_seed=args.seed)
        searching = search_data(data, args.train_images, args.val_images)
        final_set = final_data(data, args.final_train_images, args.test_images)
        # Only once the flags are known to fit the data: a refused run leaves nothing behind.
        begin(workdir, config, data_fingerprint(data.source, *data[:6]), new)
        use_compile_cache(default=workdir / "xla_cache")
        make_trainer = trainer_factory(args.ray, args.ray_retries, cluster)
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   cutout=args.cutout)
        k_search, k_final, k_random = jax.random.split(jax.random.key(args.seed), 3)
        strategy = search.make("lanas", space, capacity=args.budget, height=args.height,
                               n_init=args.n_init, n_select=args.n_select)
        if args.evaluation == "supernet":
            supernet_config = train_config.replace(epochs=args.supernet_epochs)
            k_supernet = jax.random.fold_in(jax.random.key(args.seed), 3)
            supernet = trained_supernet(space, searching, supernet_config, k_supernet, workdir,
                                        split_seed=args.seed, val_images=args.val_images)
            objective = supernet_objective(space, supernet, searching, train_config, args.seed)
        else:
            objective = make_objective(space, searching, train_config, args.seed, make_trainer)
        result = search.run(strategy, objective, budget=args.budget, key=k_search, workdir=workdir / "search",
                            batch_size=args.n_select)
        finite = np.isfinite(result.scores)
        if not finite.any():
            raise UsageError(f"every searched architecture failed (non-finite loss: try a lower --lr; see "
                             f"{workdir}/search/evaluations.jsonl)")
        order = np.argsort(-np.where(finite, result.scores, -np.inf), kind="stable")
        groups = {"search": result.encodings[order[:min(args.final_top_k, int(finite.sum()))]],
                  "random": np.asarray(space.sample(k_random, args.final_random_k))}
        final = final_evaluation(make_space(args, final=True), final_set, final_protocol(train_config, args),
                                 groups, args.final_seeds, k_final, workdir / "final.jsonl", args.n_select,
                                 make_trainer)
        cells = {} if args.space not in CELL_SPACES else cell_summary(args, space, final, objective, workdir)
        text = summarize(space, result, final, workdir, time.time() - t0, cells)
    return text + f"\nwall time of this invocation {time.time() - t0:.0f} s; results in {workdir}\n"


def main(argv=None) -> int:
    """The command line: prints the summary; bad input, a damaged work directory or one that cannot be
    written (read-only, full disk) -> one line on stderr and exit status 2."""
    return run_main(lambda: print(lanas_cifar(parse_args(argv)), end=""))


if __name__ == "__main__":
    reuse_host_memory()  # process-wide, so only here: in-process callers (tests) keep their allocator
    sys.exit(main())
