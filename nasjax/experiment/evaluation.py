"""The `001_*` protocol on CIFAR-10: search and final data, the search objective, the final evaluation
of found vs random architectures, and the per-group statistics behind the RI table.

    searching = search_data(data, train_images, val_images)      # the search never sees the test set
    objective = make_objective(space, searching, config, seed)   # for nasjax.search.run
    final = final_evaluation(space, final_data(data, n, m), config, {"search": top, "random": rand},
                             seeds, key, workdir / "final.jsonl", chunk)
    found, random = group_stats(final, "search"), group_stats(final, "random")
    ri = nasjax.metrics.relative_improvement(found["mean"], random["mean"])

Trainers (`make_trainer(space, data, config)`) come from nasjax.distributed: in this process or on
a Ray cluster, with the same bits.
"""

from __future__ import annotations

import math
import pathlib
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from nasjax.data import Dataset
from nasjax.distributed import local_trainer
from nasjax.experiment.cli import UsageError
from nasjax.io import append_jsonl, read_jsonl
from nasjax.spaces import ConvNetSpace
from nasjax.train import TrainConfig, arch_key

CONVNET_SPACES = {
    "motivating": ConvNetSpace.motivating,  # LaNAS §2: 1,364 networks
    "convnet60k": ConvNetSpace.convnet60k,  # LaNAS A.1's ranges
    "tiny": lambda: ConvNetSpace(channels=(8, 16), kernels=(3,), max_depth=2),  # 6 networks: smoke tests
}


def _take(data: Dataset, flag: str, what: str, **count: int) -> Dataset:
    """`data.take(**count)` (one part; 0: all of it); UsageError naming `flag` if it holds fewer."""
    (part, n), = count.items()
    try:
        return data.take(**count)
    except ValueError:
        raise UsageError(f"{flag} {n} exceeds the {len(getattr(data, f'{part}_labels'))} {what} images "
                         "of this data") from None


def search_data(data: Dataset, train_images: int, val_images: int) -> Dataset:
    """The search split cut to its first images (0: all); an empty test set (the search never tests).
    UsageError naming --train-images / --val-images if the data holds fewer."""
    data = _take(data, "--train-images", "search training", train=train_images)
    data = _take(data, "--val-images", "validation", val=val_images)
    return data._replace(test_images=data.test_images[:0], test_labels=data.test_labels[:0])


def final_data(data: Dataset, train_images: int, test_images: int) -> Dataset:
    """Final training on the whole training set (search train + validation) cut to its first
    `train_images`, tested on the first `test_images` (0: all); no validation set (its per-epoch
    accuracy is NaN). UsageError naming --final-train-images / --test-images if there are fewer."""
    whole = data._replace(train_images=np.concatenate([data.train_images, data.val_images]),
                          train_labels=np.concatenate([data.train_labels, data.val_labels]),
                          val_images=data.val_images[:0], val_labels=data.val_labels[:0])
    whole = _take(whole, "--final-train-images", "training", train=train_images)
    return _take(whole, "--test-images", "test", test=test_images)


def finite_or_none(x: float) -> float | None:
    """JSON has no NaN: failed or unmeasured accuracies are written as null."""
    return float(x) if math.isfinite(x) else None


def nan_to_null(tree):
    """`tree` (dicts, lists, numbers) with every non-finite float replaced by None (JSON's null)."""
    if isinstance(tree, dict):
        return {k: nan_to_null(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [nan_to_null(v) for v in tree]
    return finite_or_none(tree) if isinstance(tree, float) else tree


def _arch_record(space, result, train_key) -> dict:
    """The JSONL fields of one trained architecture (ArchResult)."""
    return {"description": space.describe(result.arch), "train_key": np.asarray(train_key).tolist(),
            "params": result.params, "flops": result.flops, "train_seconds": result.wall_time,
            "failed": result.failed, "reason": result.reason}


def make_objective(space, data: Dataset, config: TrainConfig, seed: int,
                   make_trainer=local_trainer):
    """objective(archs (n, *enc), key) -> (final validation accuracies (n,), NaN if failed; one
    record per architecture, merged into its line of the search's evaluations.jsonl). Arch i trains
    from arch_key(key, i) with `make_trainer(space, data, config)` (nasjax.distributed); `seed` is
    recorded."""
    train = make_trainer(space, data, config)

    def objective(archs, key):
        raw = jax.random.key_data(key)
        keys = np.stack([arch_key(raw, i) for i in range(len(archs))])
        trained = train(np.asarray(archs), keys)
        records = [{"seed": seed, **_arch_record(space, r, k),
                    "val_acc_per_epoch": [finite_or_none(a) for a in r.val_acc], **extra}
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
            records = []
            for (group, rank, seed, arch), (r, extra), k in zip(part, trained, keys):
                record = {"group": group, "rank": rank, "seed": seed, "encoding": arch.tolist(),
                          **_arch_record(space, r, k), "test_acc": finite_or_none(r.test_acc),
                          "time": time.time(), **extra}
                done[(group, rank, seed)] = record
                records.append(record)
            append_jsonl(path, records)
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

