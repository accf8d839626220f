"""Population training speed on real CIFAR-10: one-by-one jitted training vs the engine vs PyTorch eager.

For `--archs` distinct networks of the LaNAS motivating ConvNet space, trains each for `--epochs` epochs
on the training split (SGD momentum, cosine lr, crop+flip) and evaluates validation and test accuracy:
  (a) one-by-one: a fresh jitted program per network (true size, `module.init`, one whole-epoch
      program), compilation included, with nasjax's conv path (and with plain Flax `nn.Conv` under
      --flax-baseline); ratios are to the first (nasjax conv);
  (b) the engine: `train_population` with each execution in --executions ("layered" is the CPU default:
      per-layer-shape programs shared by all networks; "per_arch": whole-network programs; "loop" and
      "sharded": masked max-shape programs per depth);
  (c) PyTorch CPU eager, same networks and batch, when torch imports.
Prints architectures/hour and images/s, ratios to (a), and the GFLOP/s of one single-net training step
as a fraction of a measured f32 matmul peak; writes one JSON line per row to --jsonl.

  python experiments/perf_population.py --data-dir ../shared/data --archs 16 --epochs 1 \
      --train-images 1024 --eval-images 500
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("NASJAX_DATA_DIR"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--archs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-images", type=int, default=0, help="use the first N training images (0: all)")
    p.add_argument("--eval-images", type=int, default=0,
                   help="use the first N validation and test images (0: all)")
    p.add_argument("--host-devices", type=int, default=1, help="forced CPU host devices (sharded engine)")
    p.add_argument("--executions", default="layered")
    p.add_argument("--flax-baseline", action="store_true",
                   help="also time one-by-one training in plain Flax (nn.Conv, nn.max_pool, default XLA "
                        "options; slow on CPU: autodiff's convolutions inside the epoch's scan run 25-250x "
                        "slower than at the top level)")
    p.add_argument("--jsonl", default="perf_population.jsonl")
    return p.parse_args()


ARGS = parse_args()
if ARGS.host_devices > 1:  # must precede importing jax
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={ARGS.host_devices}"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from nasjax.data import load_cifar10, normalize  # noqa: E402
from nasjax.spaces import ConvNetSpace, ops  # noqa: E402
from nasjax.train import (TrainConfig, create_state, make_optimizer, module_apply,  # noqa: E402
                          train_population)
from nasjax.train import steps  # noqa: E402
from nasjax.train.population import arch_info  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from perf_conv import interleaved_medians, matmul_peaks, plain_flax  # noqa: E402


def distinct_archs(space, n, key):
    """n distinct encodings, sampled uniformly over networks (first occurrences, in sampling order)."""
    enc = np.asarray(space.sample(key, 8 * n))
    _, first = np.unique(enc, axis=0, return_index=True)
    return enc[np.sort(first)[:n]]


def one_by_one(space, archs, data, config, key, flax_conv: bool):
    """Fresh true-size programs per network: (seconds, val accuracies). flax_conv: plain Flax networks
    (`nn.Conv`, `nn.max_pool`, XLA's default compiler options) instead of nasjax's (same parameters)."""
    with plain_flax() if flax_conv else contextlib.nullcontext():
        return _one_by_one(space, archs, data, config, key, None if flax_conv else ops.compiler_options())


def _one_by_one(space, archs, data, config, key, options):
    spe = len(data.train_labels) // config.batch_size
    tx = make_optimizer(config, spe)
    x, y = jnp.asarray(normalize(data.train_images)), jnp.asarray(data.train_labels)
    val = (normalize(data.val_images), jnp.asarray(data.val_labels))
    test = (normalize(data.test_images), jnp.asarray(data.test_labels))
    start, accs = time.perf_counter(), []
    for i, enc in enumerate(archs):
        module = space.to_module(enc)
        k_init, k_data = jax.random.split(jax.random.fold_in(key, i))
        variables = module.init(k_init, x[:1])
        state = create_state(variables, tx, k_init)
        apply = module_apply(module)
        epoch = jax.jit(functools.partial(steps.train_epoch, apply, tx, config), compiler_options=options)
        evaluate = jax.jit(functools.partial(steps.accuracy, apply), static_argnums=4,
                           compiler_options=options)
        for e in range(config.epochs):
            state, _ = epoch(state, (), k_data, e, x, y)
            acc = float(evaluate(state, (), *val, config.eval_batch_size))
        float(evaluate(state, (), *test, config.eval_batch_size))
        accs.append(acc)
    return time.perf_counter() - start, accs


def torch_eager(space, archs, data, config, seed):
    """PyTorch CPU eager for the same networks (no augmentation): seconds, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(normalize(data.train_images))).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.asarray(data.train_labels)).long()
    xv = torch.from_numpy(np.asarray(normalize(data.val_images))).permute(0, 3, 1, 2).contiguous()
    start = time.perf_counter()
    for enc in archs:
        layers, cin = [], 3
        for (c, k), pool in zip(space.layers(enc), space.pool_positions(enc)):
            layers += [torch.nn.Conv2d(cin, c, k, padding=k // 2), torch.nn.ReLU()]
            if pool:
                layers.append(torch.nn.MaxPool2d(2))
            cin = c
        net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                  torch.nn.Linear(cin, 10))
        opt = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
        for _ in range(config.epochs):
            perm = torch.randperm(len(y))
            for s in range(len(y) // config.batch_size):
                idx = perm[s * config.batch_size:(s + 1) * config.batch_size]
                loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                opt.step()
            with torch.no_grad():
                net(xv).argmax(1)
    return time.perf_counter() - start


def single_step_gflops(space, data, config, key) -> tuple[float, float]:
    """(GFLOP/s, ms) of one jitted training step of the depth-4/32ch/3x3 net on a batch."""
    enc = space.encode([(32, 3)] * 4)
    module = space.to_module(enc)
    tx = make_optimizer(config, 1)
    x = jnp.asarray(normalize(data.train_images[:config.batch_size]))
    y = jnp.asarray(data.train_labels[:config.batch_size])
    state = create_state(module.init(key, x[:1]), tx, key)
    step = jax.jit(functools.partial(steps.train_step, module_apply(module), tx, config),
                   compiler_options=ops.compiler_options())
    ms = interleaved_medians({"step": lambda: jax.block_until_ready(step(state, (), x, y))}, 5)["step"]
    flops = 3.0 * arch_info(space, enc, config)[1] * config.batch_size  # forward + 2x backward
    return flops / ms / 1e6, ms


def main():
    key = jax.random.PRNGKey(ARGS.seed)
    data = load_cifar10(ARGS.data_dir)
    if ARGS.train_images:
        data = data._replace(train_images=data.train_images[:ARGS.train_images],
                             train_labels=data.train_labels[:ARGS.train_images])
    if ARGS.eval_images:
        data = data._replace(val_images=data.val_images[:ARGS.eval_images],
                             val_labels=data.val_labels[:ARGS.eval_images],
                             test_images=data.test_images[:ARGS.eval_images],
                             test_labels=data.test_labels[:ARGS.eval_images])
    space = ConvNetSpace.motivating()
    config = TrainConfig(epochs=ARGS.epochs, batch_size=ARGS.batch_size)
    archs = distinct_archs(space, ARGS.archs, jax.random.fold_in(key, 1))
    images = ARGS.archs * ARGS.epochs * (len(data.train_labels) // config.batch_size) * config.batch_size
    print(f"{len(archs)} distinct archs, depths {np.bincount(archs[:, 0]).tolist()}, {ARGS.epochs} epoch(s) "
          f"on {len(data.train_labels)} images, eval on {len(data.val_labels)} + {len(data.test_labels)}, batch {config.batch_size}, backend {jax.default_backend()} "
          f"x{len(jax.devices())}", flush=True)
    rows = []
    baselines = [("one-by-one jit, nasjax conv", False)]
    if ARGS.flax_baseline:
        baselines.append(("one-by-one jit, flax nn.Conv", True))
    for name, flax_conv in baselines:
        seconds, _ = one_by_one(space, archs, data, config, key, flax_conv)
        rows.append((name, seconds))
        print(f"  {name} (compile incl.): {seconds:.1f} s", flush=True)
    for execution in ARGS.executions.split(","):
        start = time.perf_counter()
        train_population(space, archs, data, config, key, execution=execution)
        rows.append((f"engine {execution}", time.perf_counter() - start))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} s", flush=True)
    seconds = torch_eager(space, archs, data, config, ARGS.seed)
    if seconds is not None:
        rows.append(("pytorch cpu eager", seconds))
    else:
        print("  pytorch: not installed, skipped")
    base = rows[0][1]
    print(f"{'execution':34s} {'seconds':>9s} {'archs/hour':>11s} {'images/s':>9s} {'vs one-by-one':>14s}")
    with open(ARGS.jsonl, "w") as f:
        for name, sec in rows:
            row = dict(execution=name, seconds=round(sec, 2), archs_per_hour=round(len(archs) * 3600 / sec, 1),
                       images_per_s=round(images / sec, 1), ratio_vs_one_by_one=round(base / sec, 3),
                       archs=len(archs), epochs=ARGS.epochs, train_images=len(data.train_labels),
                       seed=ARGS.seed, devices=len(jax.devices()))
            f.write(json.dumps(row) + "\n")
            print(f"{name:34s} {sec:9.1f} {row['archs_per_hour']:11.1f} {row['images_per_s']:9.1f} "
                  f"{row['ratio_vs_one_by_one']:13.2f}x")
        peaks = matmul_peaks(5, key)
        peak = peaks["xla"]
        gfs, ms = single_step_gflops(space, data, config, key)
        print(f"single-net step (depth 4, 32 ch, 3x3, batch {config.batch_size}): {ms:.0f} ms, {gfs:.1f} GFLOP/s "
              f"= {gfs / peak:.1%} of the {peak:.1f} GFLOP/s XLA f32 matmul peak"
              + (f" (PyTorch's: {peaks['torch']:.1f} GFLOP/s)" if "torch" in peaks else ""))
        f.write(json.dumps(dict(single_step_ms=round(ms, 1), gflop_per_s=round(gfs, 1),
                                matmul_peak_gflop_per_s=round(peak, 1), frac_of_peak=round(gfs / peak, 3)))
                + "\n")


if __name__ == "__main__":
    main()
