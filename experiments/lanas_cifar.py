"""LaNAS over a ConvNet space on CIFAR-10, end to end: search, final evaluation, summary; resumable.

    python experiments/lanas_cifar.py --data-dir ../shared/data   # a local cifar-10-batches-py folder
    python experiments/lanas_cifar.py                              # $NASJAX_DATA_DIR, else tfds (internet)

Search (`002_*`): each round LaNAS asks `--n-select` architectures; the population engine trains them
together on all local devices for `--epochs` epochs on the first `--train-images` images of the search
training split, and their accuracies on the first `--val-images` images of the validation split are told
back. The search never sees the test set.

Ray (`--ray local` starts a cluster on this machine, `--ray auto` joins the one it runs, see the
README): each round's architectures and the final training runs are trained by the cluster's workers
(`nasjax.distributed`), with the same training keys, so with this process's device and thread layout
the results are the same bits; each JSONL line then also records its `worker` (host, pid, layout,
seconds). The flag is not part of the config: a run may resume with or without it.

Final evaluation (`001_*`): the `--final-top-k` best architectures found and `--final-random-k`
architectures sampled uniformly from the same space are trained from scratch with the same protocol,
`--final-seeds` times each (seed s gives every architecture the same training key; `--n-select` runs
are trained together), for `--final-epochs` epochs on the first `--final-train-images` images of the
whole training set (search train + validation, so no validation set), and tested on the first
`--test-images` test images. The summary gives, per group, mean +- std over its architectures of
their seed-averaged test accuracy, and RI = 100 (Acc_search - Acc_random) / Acc_random. An image
count of 0 means "all of them".

Work directory (`--workdir`): config.json (the resolved config), search/evaluations.jsonl (one line per
searched architecture: encoding, description, seed and training key, validation accuracy per epoch,
params, FLOPs, time), search/checkpoint.npz + run.json (the search state), final.jsonl (one line per
final training run), best_so_far.png, accuracy_hist.png, summary.md and summary.json (written last: a
run with a summary is finished), xla_cache/ (compiled programs, `nasjax.runtime`;
$JAX_COMPILATION_CACHE_DIR or $NASJAX_COMPILE_CACHE instead if set). Re-running the same command
resumes after the last finished search round or final training run with the same bits as an
uninterrupted run; a finished run prints its summary; other flags on the same work directory are
refused (use another --workdir).

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
import json
import math
import os
import pathlib
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from nasjax import metrics, search
from nasjax.runtime import use_compile_cache
from nasjax.data import DataError, Dataset, load_cifar10
from nasjax.data.cifar10 import resolve_data_dir
from nasjax.distributed import local_trainer
from nasjax.runtime import reuse_host_memory
from nasjax.io import CorruptFileError, atomic_write_bytes, read_jsonl
from nasjax.spaces import ConvNetSpace
from nasjax.train import TrainConfig, arch_key

SPACES = {
    "motivating": ConvNetSpace.motivating,  # LaNAS §2: 1,364 networks
    "convnet60k": ConvNetSpace.convnet60k,  # LaNAS A.1's ranges
    "tiny": lambda: ConvNetSpace(channels=(8, 16), kernels=(3,), max_depth=2),  # 6 networks: smoke tests
}
SUMMARY = "summary.json"
# Fields that depend on the wall clock, not on the seed: everything else is the same bits on resume.
WALL_CLOCK_FIELDS = ("time", "train_seconds")


class UsageError(Exception):
    """Bad flags, too little data for them, or an unusable work directory: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{message} (see --help)")


def parse_args(argv=None) -> argparse.Namespace:
    """Flags -> namespace; raises UsageError for unknown flags and impossible budgets."""
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default=None,
                   help="folder with cifar-10-batches-py (default: $NASJAX_DATA_DIR, else tfds)")
    p.add_argument("--workdir", default="runs/lanas_cifar", help="where results go; re-run to resume")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, search and final training")
    p.add_argument("--space", choices=sorted(SPACES), default="motivating",
                   help="ConvNet space: LaNAS §2's, ConvNet-60K's ranges, or a smoke-test one")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="train on a Ray cluster: 'local' starts one here, 'auto' joins this machine's "
                        "(`ray start`), or the head's host:port (default: in this process)")
    s = p.add_argument_group("search")
    s.add_argument("--budget", type=int, default=16, help="architectures evaluated by the search")
    s.add_argument("--n-init", type=int, default=4, help="random samples before LaNAS's first fit")
    s.add_argument("--n-select", type=int, default=4,
                   help="architectures per round, trained together (LaNAS's refit period)")
    s.add_argument("--height", type=int, default=3, help="LaNAS tree height")
    s.add_argument("--epochs", type=int, default=1, help="training epochs per searched architecture")
    s.add_argument("--train-images", type=int, default=2048, help="search training images (0: all)")
    s.add_argument("--val-images", type=int, default=1024, help="search validation images (0: all)")
    s.add_argument("--batch-size", type=int, default=128, help="training batch (search and final)")
    s.add_argument("--lr", type=float, default=0.05, help="SGD learning rate, cosine-annealed")
    s.add_argument("--cutout", type=int, default=0, help="cutout size (0: none)")
    f = p.add_argument_group("final evaluation")
    f.add_argument("--final-top-k", type=int, default=2, help="best searched architectures re-trained")
    f.add_argument("--final-random-k", type=int, default=2, help="random architectures trained")
    f.add_argument("--final-seeds", type=int, default=2, help="training seeds per architecture")
    f.add_argument("--final-epochs", type=int, default=2, help="training epochs per final run")
    f.add_argument("--final-train-images", type=int, default=2048,
                   help="final training images from train + validation (0: all)")
    f.add_argument("--test-images", type=int, default=0, help="test images (0: all)")
    args = p.parse_args(argv)
    checks = [
        (args.budget >= 1, f"--budget must be >= 1, got {args.budget}"),
        (1 <= args.n_init <= args.budget, f"--n-init must be in [1, --budget={args.budget}]"),
        (1 <= args.n_select <= args.budget, f"--n-select must be in [1, --budget={args.budget}]"),
        (args.height >= 2, f"--height must be >= 2, got {args.height}"),
        (args.epochs >= 1 and args.final_epochs >= 1, "--epochs and --final-epochs must be >= 1"),
        (args.batch_size >= 1, f"--batch-size must be >= 1, got {args.batch_size}"),
        (args.final_top_k >= 1 and args.final_random_k >= 1 and args.final_seeds >= 1,
         "--final-top-k, --final-random-k and --final-seeds must be >= 1"),
        (min(args.train_images, args.val_images, args.final_train_images, args.test_images) >= 0,
         "image counts must be >= 0 (0: all)"),
    ]
    for flag in ("train_images", "final_train_images"):
        n = getattr(args, flag)
        checks.append((n == 0 or n >= args.batch_size,
                       f"--{flag.replace('_', '-')} {n} is smaller than one batch ({args.batch_size})"))
    for ok, message in checks:
        if not ok:
            raise UsageError(message)
    space = SPACES[args.space]()
    if space.size() < args.budget:
        raise UsageError(f"--budget {args.budget} exceeds the {space.size()} networks of the "
                         f"{args.space} space")
    if args.final_top_k > args.budget:
        raise UsageError(f"--final-top-k {args.final_top_k} exceeds --budget {args.budget}")
    return args


class WorkdirLock:
    """An exclusive lock file holding the owner's pid; a lock left by a dead process is taken over."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / "lock"

    def __enter__(self):
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.path.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            if pid and pid != os.getpid() and _alive(pid):  # our own pid: a dead owner's, reused
                raise UsageError(f"{self.path.parent} is used by a running search (pid {pid}); "
                                 "wait for it or use another --workdir") from None
            self.path.unlink()
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def resolved_config(args) -> dict:
    """Everything that decides the results (not where the data and results live)."""
    return {k: v for k, v in sorted(vars(args).items()) if k not in ("workdir", "data_dir", "ray")}


def check_config(workdir: pathlib.Path, config: dict) -> bool:
    """Whether config.json is still to be written; UsageError if it holds another config."""
    path = workdir / "config.json"
    if not path.exists():
        return True
    saved = json.loads(path.read_text())
    if saved != config:
        diff = {k: (saved.get(k), config.get(k)) for k in sorted(set(saved) | set(config))
                if saved.get(k) != config.get(k)}
        raise UsageError(f"{workdir} holds a run with other flags {diff} (saved, given); "
                         "use another --workdir")
    return False


def _take(data: Dataset, flag: str, what: str, **count: int) -> Dataset:
    """`data.take(**count)` (one part; 0: all of it); UsageError naming `flag` if it holds fewer."""
    (part, n), = count.items()
    try:
        return data.take(**count)
    except ValueError:
        raise UsageError(f"{flag} {n} exceeds the {len(getattr(data, f'{part}_labels'))} {what} images "
                         "of this data") from None


def search_data(data: Dataset, train_images: int, val_images: int) -> Dataset:
    """The search split cut to its first images; an empty test set (the search never tests)."""
    data = _take(data, "--train-images", "search training", train=train_images)
    data = _take(data, "--val-images", "validation", val=val_images)
    return data._replace(test_images=data.test_images[:0], test_labels=data.test_labels[:0])


def final_data(data: Dataset, train_images: int, test_images: int) -> Dataset:
    """Final training on the whole training set (search train + validation), tested on test; no
    validation set (its per-epoch accuracy is NaN)."""
    whole = data._replace(train_images=np.concatenate([data.train_images, data.val_images]),
                          train_labels=np.concatenate([data.train_labels, data.val_labels]),
                          val_images=data.val_images[:0], val_labels=data.val_labels[:0])
    whole = _take(whole, "--final-train-images", "training", train=train_images)
    return _take(whole, "--test-images", "test", test=test_images)


def _finite(x: float) -> float | None:
    """JSON has no NaN: failed or unmeasured accuracies are written as null."""
    return float(x) if math.isfinite(x) else None


def _nan_to_null(tree):
    """`tree` (dicts, lists, numbers) with every non-finite float replaced by None (JSON's null)."""
    if isinstance(tree, dict):
        return {k: _nan_to_null(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_nan_to_null(v) for v in tree]
    return _finite(tree) if isinstance(tree, float) else tree


def _arch_record(space, result, train_key) -> dict:
    """The JSONL fields of one trained architecture (ArchResult)."""
    return {"description": space.describe(result.arch), "train_key": np.asarray(train_key).tolist(),
            "params": result.params, "flops": result.flops, "train_seconds": result.wall_time,
            "failed": result.failed, "reason": result.reason}


def make_objective(space, data: Dataset, config: TrainConfig, seed: int,
                   make_trainer=local_trainer):
    """objective(archs (n, *enc), key) -> (final validation accuracies (n,), NaN if failed; one
    record per architecture, merged into its line of search/evaluations.jsonl). Arch i trains from
    arch_key(key, i) with `make_trainer(space, data, config)` (nasjax.distributed)."""
    train = make_trainer(space, data, config)

    def objective(archs, key):
        raw = jax.random.key_data(key)
        keys = np.stack([arch_key(raw, i) for i in range(len(archs))])
        trained = train(np.asarray(archs), keys)
        records = [{"seed": seed, **_arch_record(space, r, k),
                    "val_acc_per_epoch": [_finite(a) for a in r.val_acc], **extra}
                   for (r, extra), k in zip(trained, keys)]
        scores = np.array([np.nan if r.failed else r.final_val_acc for r, _ in trained], np.float32)
        return scores, records

    return objective


def final_evaluation(space, data: Dataset, config: TrainConfig, groups: dict[str, np.ndarray],
                     seeds: int, key: jax.Array, path: pathlib.Path, chunk: int,
                     make_trainer=local_trainer) -> list[dict]:
    """Train every (group, rank, seed) once, `chunk` runs together (by `make_trainer(space, data,
    config)`), appending a line per run to `path`; runs already there are kept (resume).
    groups: name -> encodings (k, *enc). Seed s trains every architecture with the key
    arch_key(fold_in(key, s), 0), whatever its chunk.
    Returns the records of all runs, seed-major."""
    jobs = [(group, rank, seed, arch) for seed in range(seeds)
            for group, archs in groups.items() for rank, arch in enumerate(archs)]
    done = {(r["group"], r["rank"], r["seed"]): r for r in read_jsonl(path)}  # drops a torn line
    for group, rank, seed, arch in jobs:
        if (group, rank, seed) in done and done[(group, rank, seed)]["encoding"] != arch.tolist():
            raise UsageError(f"{path} holds another architecture for {group} #{rank} seed {seed}; "
                             "it belongs to another run")
    pending = [job for job in jobs if job[:3] not in done]
    train = make_trainer(space, data, config) if pending else None
    with tqdm(total=len(jobs), initial=len(jobs) - len(pending), desc="final training",
              unit="run") as bar:
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            keys = [arch_key(jax.random.key_data(jax.random.fold_in(key, seed)), 0)
                    for _, _, seed, _ in part]
            trained = train(np.stack([job[3] for job in part]), np.stack(keys))
            lines = []
            for (group, rank, seed, arch), (r, extra), k in zip(part, trained, keys):
                record = {"group": group, "rank": rank, "seed": seed, "encoding": arch.tolist(),
                          **_arch_record(space, r, k), "test_acc": _finite(r.test_acc),
                          "time": time.time(), **extra}
                done[(group, rank, seed)] = record
                lines.append(json.dumps(record) + "\n")
            with open(path, "a") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
            bar.update(len(part))
    return [done[job[:3]] for job in jobs]


def group_stats(final: list[dict], group: str) -> dict:
    """Per architecture of `group`: mean and std over seeds of test accuracy (%); then the group's
    mean and std over architectures of those means (`001_*`: mean +- std over architectures)."""
    per_arch: dict[int, dict] = {}
    for r in final:
        if r["group"] == group:
            entry = per_arch.setdefault(r["rank"], {"rank": r["rank"], "description": r["description"],
                                                   "encoding": r["encoding"], "accs": []})
            if r["test_acc"] is not None:
                entry["accs"].append(100 * r["test_acc"])
    archs = []
    for entry in per_arch.values():
        accs = np.array(entry.pop("accs"))
        archs.append({**entry, "runs": len(accs), "mean": float(accs.mean()) if len(accs) else None,
                      "std": float(accs.std()) if len(accs) else None})
    means = np.array([a["mean"] for a in archs if a["mean"] is not None])
    return {"archs": archs, "mean": float(means.mean()) if len(means) else float("nan"),
            "std": float(means.std()) if len(means) else float("nan")}


def _pm(mean: float | None, std: float | None) -> str:
    return "failed" if mean is None or not math.isfinite(mean) else f"{mean:.2f} ± {std:.2f}"


def summarize(space, result, final: list[dict], workdir: pathlib.Path, elapsed: float) -> str:
    """Write the plots, summary.md and, last, summary.json; returns summary.md's text."""
    best = int(np.argmax(np.where(np.isfinite(result.scores), result.scores, -np.inf)))
    found, random = group_stats(final, "search"), group_stats(final, "random")
    ri = float(metrics.relative_improvement(found["mean"], random["mean"]))
    lines = [
        "# LaNAS on CIFAR-10", "",
        f"Searched {result.evaluations} architectures. Best found (validation accuracy "
        f"{result.scores[best]:.4f}): {space.describe(result.encodings[best])}, encoding "
        f"{result.encodings[best].tolist()}.", "",
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
               "wall_seconds_last_invocation": elapsed}
    atomic_write_bytes(workdir / SUMMARY, (json.dumps(_nan_to_null(summary), indent=2, allow_nan=False)
                                           + "\n").encode())
    return text


def plot(result, final: list[dict], workdir: pathlib.Path) -> None:
    """best_so_far.png (best validation accuracy vs architectures evaluated) and accuracy_hist.png
    (test accuracy of the final runs, searched vs random)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, result.evaluations + 1), 100 * np.asarray(metrics.best_so_far(result.scores)))
    ax.set(xlabel="architectures evaluated", ylabel="best validation accuracy (%)", title="LaNAS search")
    fig.tight_layout()
    fig.savefig(workdir / "best_so_far.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for group, label in (("search", "top-k found"), ("random", "random")):
        accs = [100 * r["test_acc"] for r in final if r["group"] == group and r["test_acc"] is not None]
        ax.hist(accs, bins=10, alpha=0.6, label=label)
    ax.set(xlabel="test accuracy (%)", ylabel="final training runs", title="Final evaluation")
    ax.legend()
    fig.tight_layout()
    fig.savefig(workdir / "accuracy_hist.png", dpi=120)
    plt.close(fig)


def trainer_factory(address: str | None, cluster: contextlib.ExitStack):
    """make_trainer(space, data, config) of this run (nasjax.distributed): in this process, or with
    --ray by the cluster's workers, connected until `cluster` closes, sharing our compile cache."""
    if address is None:
        return local_trainer
    from nasjax.distributed import ray_cluster  # imports Ray: only with --ray

    cache = pathlib.Path(jax.config.jax_compilation_cache_dir).resolve()
    try:
        cluster.enter_context(ray_cluster.connect(address, env={
            "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}))
    except ConnectionError as e:
        raise UsageError(str(e)) from None
    return ray_cluster.ray_trainer


def lanas_cifar(args: argparse.Namespace) -> str:
    """Run (or resume, or report) the whole job in args.workdir; returns what it prints."""
    t0 = time.time()
    space = SPACES[args.space]()
    resolve_data_dir(args.data_dir)  # a missing folder is reported before the work directory is made
    workdir = pathlib.Path(args.workdir)
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file, not a folder")
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir), contextlib.ExitStack() as cluster:
        config = resolved_config(args)
        new = check_config(workdir, config)
        if (workdir / SUMMARY).exists():
            return f"This run is finished ({workdir}):\n\n" + (workdir / "summary.md").read_text()
        data = load_cifar10(args.data_dir, split_seed=args.seed)
        searching = search_data(data, args.train_images, args.val_images)
        final_set = final_data(data, args.final_train_images, args.test_images)
        if new:  # only once the flags are known to fit the data: a refused run blocks nothing
            atomic_write_bytes(workdir / "config.json", (json.dumps(config, indent=2) + "\n").encode())
        use_compile_cache(default=workdir / "xla_cache")
        make_trainer = trainer_factory(args.ray, cluster)
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   cutout=args.cutout)
        k_search, k_final, k_random = jax.random.split(jax.random.key(args.seed), 3)
        strategy = search.make("lanas", space, capacity=args.budget, height=args.height,
                               n_init=args.n_init, n_select=args.n_select)
        result = search.run(strategy, make_objective(space, searching, train_config, args.seed,
                                                     make_trainer),
                            budget=args.budget, key=k_search, workdir=workdir / "search",
                            batch_size=args.n_select)
        finite = np.isfinite(result.scores)
        if not finite.any():
            raise UsageError(f"every searched architecture failed (non-finite loss: try a lower --lr; see "
                             f"{workdir}/search/evaluations.jsonl)")
        order = np.argsort(-np.where(finite, result.scores, -np.inf), kind="stable")
        groups = {"search": result.encodings[order[:min(args.final_top_k, int(finite.sum()))]],
                  "random": np.asarray(space.sample(k_random, args.final_random_k))}
        final = final_evaluation(space, final_set, train_config.replace(epochs=args.final_epochs),
                                 groups, args.final_seeds, k_final, workdir / "final.jsonl", args.n_select,
                                 make_trainer)
        text = summarize(space, result, final, workdir, time.time() - t0)
    return text + f"\nwall time of this invocation {time.time() - t0:.0f} s; results in {workdir}\n"


def main(argv=None) -> int:
    """The command line: prints the summary; bad input, a damaged work directory or one that cannot be
    written (read-only, full disk) -> one line on stderr and exit status 2."""
    try:
        print(lanas_cifar(parse_args(argv)), end="")
    except (UsageError, DataError, CorruptFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # read-only or full disk, a file where a folder should be, ...
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; the work directory must be a writable folder with free "
              "space (finished work is kept: fix it and run the same command again to resume)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    reuse_host_memory()  # process-wide, so only here: in-process callers (tests) keep their allocator
    sys.exit(main())
