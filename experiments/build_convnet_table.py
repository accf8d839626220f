"""Build the ConvNet-on-CIFAR-10 table: train EVERY architecture of a ConvNet space, several seeds each.

    python experiments/build_convnet_table.py --data-dir ../shared/data                  # this CPU
    python experiments/build_convnet_table.py --preset motivating --data-dir DIR \\
        --out nasjax/benchmarks/tables/convnet_motivating_cifar10.npz                    # a GPU

Default space: ConvNetSpace(channels=(16, 32), kernels=(3, 5), depth 1-3): 84 networks. `--preset
motivating` is LaNAS's 1,364-network space (depth 1-5, C in {32, 64}, K in {3, 5}) with more seeds
and epochs, meant for a GPU; any flag given explicitly overrides the preset.

Protocol: CIFAR-10's search split (`load_cifar10(data_dir, validation_fraction, split_seed)`): the
network trains on its training part (the first `--train-images`; 0 = all), the validation part (the first
`--val-images`) gives the accuracy after every epoch, the test set the final test accuracy. The training key of
architecture `space.index(enc)` = i and seed s is fold_in(fold_in(key(--seed), s), i) (`training_key`),
so an entry is reproduced by training that architecture alone with that key (`train_entries`), and
the same flags give the same bits.

Resumable: every finished (architecture, seed) is appended to `<workdir>/records.jsonl`; re-running
the same command skips them (a different configuration in the same workdir is refused). When all are
done, the table goes to `--out` (`nasjax.benchmarks.convnet.write_table`) and a readable build log to
`--out` with suffix .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import pathlib
import platform
import shlex
import subprocess
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

import nasjax
from nasjax import metrics, runtime
from nasjax.benchmarks import convnet
from nasjax.data import DataError, Dataset, load_cifar10
from nasjax.experiment import UsageError, begin, check_config, data_fingerprint, own_workdir
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.io import append_jsonl, read_jsonl, sha256_of_arrays
from nasjax.spaces import ConvNetSpace
from nasjax.train import TrainConfig, train_population

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRESETS = {
    # Sized for this project's 2-core CPU: the 168 runs take about half an hour.
    "default": dict(channels=[16, 32], kernels=[3, 5], min_depth=1, max_depth=3, epochs=4, seeds=2,
                    train_images=0, val_images=1000, batch_size=64, lr=0.05, chunk=12),
    "motivating": dict(channels=[32, 64], kernels=[3, 5], min_depth=1, max_depth=5, epochs=20, seeds=3,
                       train_images=0, val_images=0, batch_size=128, chunk=256),
}
RECORDS = "records.jsonl"


def parse_args(argv=None) -> argparse.Namespace:
    pre = Parser(__doc__, add_help=False)
    pre.add_argument("--preset", choices=sorted(PRESETS), default="default",
                     help="space and protocol defaults (explicit flags override them)")
    p = Parser(__doc__, parents=[pre])
    p.add_argument("--data-dir", type=folder, default=None, help="folder with cifar-10-batches-py (default: "
                   "$NASJAX_DATA_DIR, else tensorflow-datasets)")
    p.add_argument("--workdir", type=folder, default="runs/convnet_table",
                   help="per-run records (resume from here)")
    p.add_argument("--out", default=str(convnet.DEFAULT_PATH), help="the table (.npz); log next to it (.md)")
    p.add_argument("--channels", type=COUNT, nargs="+")
    p.add_argument("--kernels", type=COUNT, nargs="+")
    p.add_argument("--min-depth", type=COUNT)
    p.add_argument("--max-depth", type=COUNT)
    p.add_argument("--epochs", type=COUNT)
    p.add_argument("--seeds", type=COUNT, help="training seeds per architecture")
    p.add_argument("--seed", type=SEED, default=0, help="root of every training key")
    p.add_argument("--train-images", type=IMAGES, help="training images of the search split (0: all)")
    p.add_argument("--val-images", type=IMAGES, help="validation images of the search split (0: all)")
    p.add_argument("--batch-size", type=COUNT)
    p.add_argument("--lr", type=real(0, lo_open=True))
    p.add_argument("--validation-fraction", type=real(0, 1, hi_open=True), default=0.5)
    p.add_argument("--split-seed", type=SEED, default=0)
    p.add_argument("--execution", default="auto", help="train_population's execution")
    p.add_argument("--chunk", type=COUNT, help="(architecture, seed) runs per train_population call")
    p.add_argument("--verify", type=integer(0), default=0, metavar="K",
                   help="build nothing: re-train K random entries (of the cheaper half by FLOPs) of the "
                        "--out table with its stored protocol and check they reproduce it (bit for bit on "
                        "the build's backend, device count and CPU); exit status 1 if one differs")
    p.add_argument("--tolerance", type=real(0, 1), default=0.02,
                   help="--verify on another machine: largest accepted accuracy difference")
    preset = pre.parse_known_args(argv)[0].preset
    p.set_defaults(**{**PRESETS["default"], **PRESETS[preset]})
    args = p.parse_args(argv)
    check((args.train_images == 0 or args.train_images >= args.batch_size,
           f"--train-images {args.train_images} is smaller than one batch ({args.batch_size})"))
    try:
        make_space(args)
        make_config(args)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return args


def make_space(args) -> ConvNetSpace:
    return ConvNetSpace(channels=tuple(args.channels), kernels=tuple(args.kernels),
                        min_depth=args.min_depth, max_depth=args.max_depth)


def make_config(args) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)


# --- data -------------------------------------------------------------------------------------------
def protocol_data(data_dir, validation_fraction: float, split_seed: int, train_images: int,
                  val_images: int) -> Dataset:
    """The search split of CIFAR-10, its training and validation parts cut to the first `train_images`
    and `val_images` (0: all)."""
    data = load_cifar10(data_dir, validation_fraction=validation_fraction, split_seed=split_seed)
    try:
        return data.take(train=train_images, val=val_images)
    except ValueError as e:
        raise UsageError(f"--train-images / --val-images: {e}") from None


def data_digests(data: Dataset) -> dict[str, str]:
    """sha256 of each part (images then labels), so a rebuild or a check can tell the data is the same."""
    return {part: sha256_of_arrays(getattr(data, f"{part}_images"), getattr(data, f"{part}_labels"))
            for part in ("train", "val", "test")}


def data_provenance(data: Dataset, args) -> dict:
    return {"source": data.source, "validation_fraction": args.validation_fraction,
            "split_seed": args.split_seed, "train_images": len(data.train_labels),
            "val_images": len(data.val_labels), "test_images": len(data.test_labels),
            "sha256": data_digests(data)}


# --- training ---------------------------------------------------------------------------------------
def training_key(root_seed: int, seed: int, index: int) -> jax.Array:
    """The training key (raw uint32 (2,), as the engine stores keys) of the architecture at row
    `index` of the table, training seed `seed`."""
    return jax.random.key_data(jax.random.fold_in(jax.random.fold_in(jax.random.key(root_seed), seed), index))


def train_entries(space: ConvNetSpace, jobs: list[tuple[int, int]], data: Dataset, config: TrainConfig,
                  root_seed: int, execution: str) -> list:
    """Train the (row index, seed) `jobs` in one population: one ArchResult per job, in order."""
    members = space.enumerate()
    archs = np.stack([members[i] for i, _ in jobs])
    keys = [training_key(root_seed, s, i) for i, s in jobs]
    results, _ = train_population(space, archs, data, config, keys=keys, execution=execution)
    return results


def _record(index: int, seed: int, enc: np.ndarray, result, epochs: int, wall: float) -> dict:
    """One JSONL line; accuracies are float32 values written exactly (None = missing)."""
    val = [float(np.float32(v)) for v in result.val_acc] + [None] * (epochs - len(result.val_acc))
    ok = not result.failed and np.isfinite(result.test_acc)
    return {"index": index, "seed": seed, "encoding": enc.tolist(), "val_acc": val,
            "test_acc": float(np.float32(result.test_acc)) if ok else None, "params": result.params,
            "flops": result.flops, "train_seconds": result.wall_time, "wall_seconds": wall,
            "failed": result.failed or not ok, "reason": result.reason}


# --- the table and its log ----------------------------------------------------------------------------
def assemble(space: ConvNetSpace, records: dict, seeds: int, epochs: int, meta: dict) -> convnet.ConvNetTable:
    members = space.enumerate()
    n = len(members)
    val = np.full((n, seeds, epochs), np.nan, np.float32)
    test = np.full((n, seeds), np.nan, np.float32)
    seconds = np.zeros((n, seeds), np.float32)
    failed = np.zeros((n, seeds), bool)
    params, flops = np.zeros(n, np.int64), np.zeros(n, np.float64)
    for (i, s), r in records.items():
        val[i, s] = np.array([np.nan if v is None else v for v in r["val_acc"]], np.float32)
        test[i, s] = np.nan if r["test_acc"] is None else r["test_acc"]
        seconds[i, s], failed[i, s] = r["train_seconds"], r["failed"]
        params[i], flops[i] = r["params"], r["flops"]
    return convnet.ConvNetTable(space=space, encodings=members, val_acc=val, test_acc=test,
                                train_seconds=seconds, params=params, flops=flops, failed=failed, meta=meta)


def versions() -> dict:
    names = ("jax", "jaxlib", "flax", "optax", "numpy")
    out = {"nasjax": nasjax.__version__, "python": platform.python_version(), "platform": platform.platform()}
    out.update({name: importlib.metadata.version(name) for name in names})
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        out["git_commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        out["git_commit"] = None
    return out


def write_log(path: pathlib.Path, table: convnet.ConvNetTable) -> None:
    """A readable account of the build: command, protocol, data, time, and what the table holds."""
    meta, space = table.meta, table.space
    ok = ~table.failed
    final = np.where(ok, table.val_acc[..., -1], np.nan) * 100
    mean = np.nanmean(final, axis=1)
    test = np.nanmean(np.where(ok, table.test_acc, np.nan) * 100, axis=1)
    best = np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")
    build = meta["build"]
    spread = (f"min {np.nanmin(mean):.2f}, median {np.nanmedian(mean):.2f}, max {np.nanmax(mean):.2f}; "
              f"mean std across seeds {np.nanmean(np.nanstd(final, axis=1)):.2f}")
    if table.seeds >= 2:
        both = np.all(np.isfinite(final[:, :2]), axis=1)
        tau = float(metrics.kendall_tau(final[both, 0], final[both, 1]))
        spread += f"; Kendall tau between seeds 0 and 1: {tau:.3f}"
    lines = [
        "# ConvNet-on-CIFAR-10 table (nasjax)", "",
        f"Built with `{build['command']}`, finished {build['finished_utc']} on "
        f"{meta['training']['backend']} ({meta['training']['devices']} device(s)"
        f"{', ' + meta['training']['cpu'] if 'cpu' in meta['training'] else ''}).", "",
        f"- build wall time: {build['wall_seconds']:.0f} s ({build['wall_seconds'] / 3600:.2f} h, summed "
        f"over the training calls of every session); engine-reported training time "
        f"{float(table.train_seconds.sum()):.0f} s",
        f"- space: {space} = {len(table.encodings):,} networks",
        f"- seeds per network: {table.seeds} (training key: {meta['training']['key']})",
        f"- execution: {meta['training']['execution']}",
        "- protocol: " + ", ".join(f"{k}={v}" for k, v in meta["protocol"].items()),
        f"- data: {meta['data']['source']}, search split (validation fraction "
        f"{meta['data']['validation_fraction']}, split seed {meta['data']['split_seed']}): "
        f"{meta['data']['train_images']} training, {meta['data']['val_images']} validation, "
        f"{meta['data']['test_images']} test images",
        "- data sha256: " + ", ".join(f"{k} {v[:16]}" for k, v in meta["data"]["sha256"].items()),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in build["versions"].items()),
        f"- failed runs: {int(table.failed.sum())} of {table.failed.size}", "",
        "## Final validation accuracy (%, mean over seeds)", "", spread,
    ]
    lines += ["", "| rank | network | params | MFLOPs | val % per seed | test % (mean) |",
              "|---|---|---|---|---|---|"]
    for rank, i in enumerate(best[:10], 1):
        seeds = " / ".join(f"{v:.2f}" for v in final[i])
        lines.append(f"| {rank} | {space.describe(table.encodings[i])} | {table.params[i]:,} | "
                     f"{table.flops[i] / 1e6:.2f} | {seeds} | {test[i]:.2f} |")
    lines += ["", "| depth | networks | best val % | median val % |", "|---|---|---|---|"]
    for depth in range(space.min_depth, space.max_depth + 1):
        rows = table.encodings[:, 0] == depth
        lines.append(f"| {depth} | {int(rows.sum())} | {np.nanmax(mean[rows]):.2f} | "
                     f"{np.nanmedian(mean[rows]):.2f} |")
    path.write_text("\n".join(lines) + "\n")


def verify(table_path: pathlib.Path, count: int, data_dir, seed: int, tolerance: float) -> int:
    """Re-train `count` random entries of the table's cheaper half with its stored protocol: 0 when
    every one reproduces its stored accuracies and parameter count, else 1. Bit for bit where the table
    was built on this backend, device count and CPU; elsewhere XLA sums in another order, so each
    validation and test accuracy may differ from the stored one by at most `tolerance`."""
    table = convnet.read_table(table_path)
    meta, d = table.meta, table.meta["data"]
    built_on = (meta["training"]["backend"], meta["training"]["devices"], meta["training"].get("cpu"))
    here = (jax.default_backend(), jax.device_count(), runtime.cpu_identity())
    exact = built_on == here
    if not exact:
        print(f"the table was built on {built_on}, this process runs on {here}: accuracies must agree "
              f"within {tolerance}, not bit for bit")
    data = protocol_data(data_dir, d["validation_fraction"], d["split_seed"], d["train_images"], d["val_images"])
    if data_digests(data) != d["sha256"]:
        raise DataError(f"the data ({data.source}) differs from the table's (sha256 {d['sha256']})")
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(table.flops <= np.median(table.flops)), count, replace=False)
    jobs = [(int(i), int(rng.integers(table.seeds))) for i in rows]
    # Tables built before DARTS' network configuration moved to DARTSSpace store two TrainConfig
    # fields that no longer exist and never affected a ConvNet.
    protocol = {k: v for k, v in meta["protocol"].items() if k not in ("init_channels", "layers")}
    results = train_entries(table.space, jobs, data, TrainConfig(**protocol),
                            meta["training"]["root_seed"], meta["training"]["execution"])
    differing = 0
    for (i, s), r in zip(jobs, results):
        got = np.float32([*r.val_acc, r.test_acc])
        stored = np.float32([*table.val_acc[i, s], table.test_acc[i, s]])
        gap = float(np.max(np.abs(got - stored)))
        same = np.array_equal(got, stored) and r.params == table.params[i]
        close = not exact and gap <= tolerance and r.params == table.params[i]
        differing += not (same or close)
        verdict = "reproduced" if same else f"within tolerance ({gap:.4f})" if close else "DIFFERS"
        print(f"row {i} seed {s}: {verdict}: val {got[:-1].tolist()} test {got[-1]} "
              f"(table: val {stored[:-1].tolist()} test {stored[-1]})")
    return 1 if differing else 0


def main(argv=None) -> int:
    """0 (built, or --verify reproduced), 1 (--verify found a difference), 2 (one line: bad input)."""
    status = []
    code = run_main(lambda: status.append(build_table(parse_args(argv), argv)))
    return code or status[0]


def build_table(args: argparse.Namespace, argv) -> int:
    """Build (or resume) the table, or --verify it; returns the exit status."""
    check_data_dir(args.data_dir)
    if args.verify:
        return verify(pathlib.Path(args.out), args.verify, args.data_dir, args.seed, args.tolerance)
    space, config = make_space(args), make_config(args)
    workdir, out = pathlib.Path(args.workdir), pathlib.Path(args.out)
    data = protocol_data(args.data_dir, args.validation_fraction, args.split_seed, args.train_images,
                         args.val_images)
    provenance = data_provenance(data, args)
    training = {"seeds": args.seeds, "root_seed": args.seed, "execution": args.execution,
                "chunk": args.chunk, "backend": jax.default_backend(), "devices": jax.device_count(),
                "cpu": runtime.cpu_identity(),
                "key": "fold_in(fold_in(jax.random.key(root_seed), seed), space.index(encoding))"}
    # The data is identified by its digests, not by where the folder lies.
    run_config = {"space": repr(space), "protocol": dataclasses.asdict(config), "training": training,
                  "data": {k: v for k, v in provenance.items() if k != "source"}}
    with own_workdir(workdir) as workdir:
        begin(workdir, run_config, data_fingerprint(data.source, *data[:6]), check_config(workdir, run_config))
        records = {(r["index"], r["seed"]): r for r in read_jsonl(workdir / RECORDS)}
        return _train_and_write(args, argv, space, config, data, provenance, training, workdir, out, records)


def _train_and_write(args, argv, space, config, data, provenance, training, workdir, out, records) -> int:
    """Train the runs not in `records` (appending each to the log), then write the table and its log."""
    members = space.enumerate()
    jobs = [(i, s) for i in range(len(members)) for s in range(args.seeds) if (i, s) not in records]
    print(f"{space}: {len(members):,} networks x {args.seeds} seeds, {args.epochs} epochs on "
          f"{len(data.train_labels)} images ({data.source}); {len(records)} runs done, {len(jobs)} to go")
    with tqdm(total=len(members) * args.seeds, initial=len(records), unit="run", desc="train") as bar:
        for start in range(0, len(jobs), args.chunk):
            chunk = jobs[start:start + args.chunk]
            t = time.perf_counter()
            results = train_entries(space, chunk, data, config, args.seed, args.execution)
            wall = (time.perf_counter() - t) / len(chunk)
            new = [_record(i, s, members[i], r, args.epochs, wall) for (i, s), r in zip(chunk, results)]
            append_jsonl(workdir / RECORDS, new)
            records.update({(r["index"], r["seed"]): r for r in new})
            bar.update(len(chunk))
    meta = {"protocol": dataclasses.asdict(config), "training": training, "data": provenance,
            "build": {"command": shlex.join(["python", "experiments/build_convnet_table.py",
                                             *(sys.argv[1:] if argv is None else argv)]),
                      "wall_seconds": float(sum(r["wall_seconds"] for r in records.values())),
                      "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                          timespec="seconds"),
                      "versions": versions()}}
    table = assemble(space, records, args.seeds, args.epochs, meta)
    convnet.write_table(out, table)
    write_log(out.with_suffix(".md"), convnet.read_table(out))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB) and {out.with_suffix('.md')}; build wall "
          f"time {meta['build']['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
