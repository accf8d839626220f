"""Accelerator check: the first thing to run on a machine with GPUs or TPUs (a few minutes).

Three checks on whatever backend JAX finds, each printed and written as a JSON line to --out:
  1. speed: `--archs` distinct ConvNets of the LaNAS motivating space trained by the engine's
     accelerator path (`execution="sharded"`: masked max-shape programs per depth, the population axis
     sharded over every local device) against one-by-one jitted training (`execution="per_arch"`: a
     whole-network program per architecture), compilation included, same data, config and keys;
  2. layout: one sharded epoch's outputs are laid out over every local device, each device holding
     its share of the population (fails when the population axis is not really sharded);
  3. LaNAS: `--searches` LaNAS searches vmapped over keys equal the same searches run one by one,
     bit for bit, on this backend (on failure it names the state fields that differ: `.weights` and
     `.cuts` alone mean the fits' arithmetic differs while the searches still decided alike).
Exits 1 when check 2 or 3 fails. On CPU, `--host-devices N` forces N host devices (tests run it so).

    python experiments/accelerator_check.py --data-dir ../shared/data
    python experiments/accelerator_check.py --host-devices 4 --archs 4 --train-images 256 --eval-images 128
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

from nasjax.experiment.cli import COUNT, Parser, add_population_flags, integer
from nasjax.experiment.cli import main as run_main


def parse_args(argv=None):
    p = Parser(__doc__)
    add_population_flags(p, train_images=2048, eval_images=1000)
    p.add_argument("--searches", type=COUNT, default=8, help="LaNAS searches compared vmapped vs looped")
    p.add_argument("--samples", type=integer(10), default=300, help="samples per LaNAS search")
    p.add_argument("--host-devices", type=integer(0), default=0, help="forced CPU host devices (0: leave as is)")
    p.add_argument("--out", default="runs/accelerator_check.jsonl")
    return p.parse_args(argv)


def speed(space, archs, data, config, key) -> dict:
    """Seconds of the sharded engine and of one-by-one training, and their results' agreement."""
    from nasjax.train import train_population

    seconds, accs = {}, {}
    for execution in ("per_arch", "sharded"):
        start = time.perf_counter()
        results, _ = train_population(space, archs, data, config, key, execution=execution)
        seconds[execution] = time.perf_counter() - start
        accs[execution] = [r.final_val_acc for r in results]
        print(f"  {execution:9s} {seconds[execution]:8.1f} s  mean val acc "
              f"{sum(accs[execution]) / len(archs):.4f}", flush=True)
    return dict(check="speed", archs=len(archs), one_by_one_s=round(seconds["per_arch"], 2),
                sharded_s=round(seconds["sharded"], 2),
                speedup=round(seconds["per_arch"] / seconds["sharded"], 3),
                max_val_acc_difference=max(abs(a - b) for a, b in zip(accs["per_arch"], accs["sharded"])))


def layout(space, archs, data, config, key) -> dict:
    """Run one sharded epoch of the first depth bucket and read where its outputs live."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from nasjax.data import normalize
    from nasjax.nn.convnet import masked
    from nasjax.train import executions, population

    devices = jax.local_devices()
    mesh = Mesh(np.array(devices), ("pop",))
    depth = int(archs[0][0])
    bucket = [a for a in archs if int(a[0]) == depth]
    take = [bucket[i % len(bucket)] for i in range(len(devices))]  # one architecture per device
    spe = len(data.train_labels) // config.batch_size
    keys = [population.arch_key(jax.random.key_data(key), i) for i in range(len(take))]
    engine = executions.choose("sharded", space, mesh)
    state, _ = population.init_population(space, take, config, keys, spe, engine)
    shard = NamedSharding(mesh, P("pop"))
    stack = lambda xs: jax.device_put(jax.tree.map(lambda *l: np.stack(l), *xs), shard)  # noqa: E731
    extras = [engine.extra(space, a, config, 10) for a in take]
    epoch = executions._sharded_epoch_fn(masked(space, depth, 10), config, spe, mesh)
    images = jax.device_put(normalize(data.train_images))
    labels = jax.device_put(np.asarray(data.train_labels, np.int32))
    new, _ = epoch(stack(state.states), stack(extras), stack(list(state.data_keys)), 0, images, labels)
    leaves = jax.tree.leaves(new)
    per_device = [sorted((s.device.id, s.data.shape[0]) for s in leaf.addressable_shards) for leaf in leaves]
    expected = sorted((d.id, 1) for d in devices)
    ok = all(p == expected for p in per_device)
    print(f"  {len(leaves)} state arrays, each over devices {[d for d, _ in per_device[0]]} "
          f"with {[n for _, n in per_device[0]]} architecture(s) each: {'sharded' if ok else 'NOT SHARDED'}")
    return dict(check="layout", devices=len(devices), platform=devices[0].platform, ok=ok)


def lanas_bitwise(searches: int, samples: int, key) -> dict:
    """Vmapped LaNAS searches against the same searches one by one, on an enumerable ConvNet space
    (22,620 networks) scored by a fixed random table."""
    import functools

    import jax
    import jax.numpy as jnp

    from nasjax.search import LaNAS, scan
    from nasjax.spaces import ConvNetSpace

    space = ConvNetSpace(channels=(16, 32, 64), kernels=(1, 3, 5, 7), min_depth=1, max_depth=4)

    def search(strat, table, key, rounds, batch):
        return scan(strat, lambda archs, _: table[jax.vmap(space.index)(archs)], key, rounds, batch)

    def data(a):
        return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a

    k_table, k_search = jax.random.split(key)
    table = jax.random.normal(k_table, (space.size(),))
    strat = LaNAS(space, capacity=samples, n_select=10)
    run = functools.partial(search, strat, table, rounds=samples // strat.n_select, batch=strat.n_select)
    keys = jax.random.split(k_search, searches)
    batched = jax.jit(jax.vmap(run))(keys)
    one = jax.jit(run)
    differing = []  # per search: the state fields whose bits differ
    for i, k in enumerate(keys):
        pairs = zip(jax.tree_util.tree_leaves_with_path(batched), jax.tree.leaves(one(k)))
        differing.append([jax.tree_util.keystr(path) for (path, a), b in pairs
                          if not bool(jnp.array_equal(data(a)[i], data(b), equal_nan=True))])
    equal = [not d for d in differing]
    ok = all(equal)
    fields = sorted({f for d in differing for f in d})
    print(f"  {searches} LaNAS searches x {samples} samples: vmapped == looped bit for bit: {ok} "
          f"({sum(equal)}/{searches})" + (f"; differing state fields: {', '.join(fields)}" if fields else ""))
    return dict(check="lanas_vmap_bitwise", searches=searches, samples=samples, ok=ok, differing_fields=fields)


def main(argv=None) -> int:
    """0: every check passed; 1: one failed; 2 (one line): bad flags or data."""
    status = []
    code = run_main(lambda: status.append(accelerator_check(parse_args(argv))))
    return code or status[0]


def accelerator_check(args: argparse.Namespace) -> int:
    """The three checks; their rows go to --out. Returns the exit status."""
    if args.host_devices:  # before jax is imported
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.host_devices}")
    import jax
    import numpy as np

    from nasjax.data import load_cifar10
    from nasjax.spaces import ConvNetSpace
    from nasjax.train import TrainConfig

    devices = jax.local_devices()
    print(f"backend {jax.default_backend()}, {len(devices)} local device(s): "
          f"{', '.join(sorted({d.device_kind for d in devices}))}", flush=True)
    key = jax.random.key(args.seed)
    data = load_cifar10(args.data_dir).take(train=args.train_images, val=args.eval_images,
                                            test=args.eval_images)
    space = ConvNetSpace.motivating()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    enc = np.asarray(space.sample(jax.random.fold_in(key, 1), 8 * args.archs))
    _, first = np.unique(enc, axis=0, return_index=True)
    archs = enc[np.sort(first)[:args.archs]]
    rows = [dict(check="machine", backend=jax.default_backend(), devices=len(devices),
                 kinds=sorted({d.device_kind for d in devices}), jax=jax.__version__)]
    print(f"1. speed: {len(archs)} distinct ConvNets, {args.epochs} epoch(s) on "
          f"{len(data.train_labels)} images", flush=True)
    rows.append(speed(space, archs, data, config, jax.random.fold_in(key, 2)))
    print(f"  sharded engine / one-by-one: {rows[-1]['speedup']:.2f}x faster")
    print("2. population axis sharded over every local device", flush=True)
    rows.append(layout(space, archs, data, config, jax.random.fold_in(key, 3)))
    print("3. LaNAS vmapped vs looped", flush=True)
    rows.append(lanas_bitwise(args.searches, args.samples, jax.random.fold_in(key, 4)))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    failed = [r["check"] for r in rows if r.get("ok") is False]
    print(f"wrote {out}; " + (f"FAILED: {', '.join(failed)}" if failed else "all checks passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
