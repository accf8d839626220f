"""Population training speed on real CIFAR-10: one-by-one jitted training vs the engine vs PyTorch eager.

For `--archs` distinct networks of the LaNAS motivating ConvNet space, trains each for `--epochs` epochs
on the training split (SGD momentum, cosine lr, crop+flip) and evaluates validation and test accuracy:
  (a) one-by-one: a fresh jitted program per network (true size, `module.init`, one whole-epoch
      program), compilation included, with nasjax's conv path (and with plain Flax `nn.Conv` under
      --flax-baseline); ratios are to the first (nasjax conv);
  (b) the engine: `train_population` with each execution in --executions ("layered" is the CPU default:
      per-layer-shape programs shared by all networks; "per_arch": whole-network programs; "loop" and
      "sharded": masked max-shape programs per depth);
  (c) PyTorch CPU eager doing the same work (networks, batch, epochs, crop+flip augmentation, SGD
      momentum with the cosine schedule, weight decay, clipping, validation per epoch, test at the end),
      when torch imports.
Every execution evaluates in batches of the training batch size (the layered engine's choice), and
all run with freed host memory kept for reuse (`nasjax.runtime`, as lanas_cifar.py runs;
--malloc default keeps glibc's own policy, which page-faults large buffers in afresh).
Prints architectures/hour and images/s, ratios to (a), where the time goes (training steps,
augmentation, evaluation, compilation, host loop and set-up) for the layered engine (from a second,
warm run with its calls timed) and for PyTorch, and the GFLOP/s of one single-net training step as a
fraction of a measured f32 matmul peak; writes one JSON line per row to --jsonl. With
--compile-cache DIR a second run of the same command loads its programs instead of compiling them.

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

import jax
import jax.numpy as jnp
import numpy as np

import nasjax.nn
from nasjax.data import load_cifar10, normalize
from nasjax.experiment.cli import COUNT, Parser, add_population_flags
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.timing import interleaved_medians, matmul_peaks, plain_flax
from nasjax.nn import ops
from nasjax.runtime import reuse_host_memory, use_compile_cache
from nasjax.spaces import ConvNetSpace
from nasjax.train import (TrainConfig, create_state, make_optimizer, module_apply,
                          train_population)
from nasjax.train import layered, steps
from nasjax.train.population import arch_info


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
        module = nasjax.nn.build(space, enc)
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


class PhaseTimer:
    """Seconds spent per named phase (a dict that `with timer("name"):` adds to)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def torch_eager(space, archs, data, config, seed):
    """PyTorch CPU eager doing the engine's work: the same networks, batch, epochs, shuffling, crop +
    flip augmentation (pad `crop_padding` with black pixels), SGD momentum with the cosine schedule,
    weight decay and global-norm clipping, a validation pass per epoch and a test pass at the end.
    -> (seconds, PhaseTimer), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from nasjax.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD

    torch.manual_seed(seed)
    as_nchw = lambda a: torch.from_numpy(np.array(normalize(a))).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    x, y = as_nchw(data.train_images), torch.from_numpy(np.asarray(data.train_labels)).long()
    evals = [(as_nchw(data.val_images), torch.from_numpy(np.asarray(data.val_labels)).long()),
             (as_nchw(data.test_images), torch.from_numpy(np.asarray(data.test_labels)).long())]
    pad, b, hw = config.crop_padding, config.batch_size, x.shape[-1]
    black = torch.tensor(-np.asarray(CIFAR10_MEAN) / np.asarray(CIFAR10_STD), dtype=torch.float32)
    rows = torch.arange(hw)
    spe = len(y) // b
    timer = PhaseTimer()

    def augment(batch):
        canvas = black.view(1, 3, 1, 1).expand(b, 3, hw + 2 * pad, hw + 2 * pad).clone()
        canvas[:, :, pad:pad + hw, pad:pad + hw] = batch
        dy, dx = torch.randint(0, 2 * pad + 1, (2, b))
        iy = (dy[:, None] + rows)[:, None, :, None].expand(b, 3, hw, hw)
        ix = (dx[:, None] + rows)[:, None, None, :].expand(b, 3, hw, hw)
        crop = canvas[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None], iy, ix]
        flip = torch.rand(b) < 0.5
        return torch.where(flip[:, None, None, None], crop.flip(3), crop)

    def accuracy(net, images, labels):
        with torch.no_grad():
            return sum(int((net(images[i:i + config.eval_batch_size]).argmax(1) ==
                            labels[i:i + config.eval_batch_size]).sum())
                       for i in range(0, len(labels), config.eval_batch_size)) / len(labels)

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
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.epochs * spe, config.final_lr)
        for _ in range(config.epochs):
            perm = torch.randperm(len(y))
            for s in range(spe):
                idx = perm[s * b:(s + 1) * b]
                with timer("augmentation"):
                    batch = augment(x[idx])
                with timer("training steps"):
                    loss = torch.nn.functional.cross_entropy(net(batch), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
                    opt.step()
                    schedule.step()
            with timer("evaluation"):
                accuracy(net, *evals[0])
        with timer("evaluation"):
            accuracy(net, *evals[1])
    seconds = time.perf_counter() - start
    timer.seconds["host loop and set-up"] = seconds - sum(timer.seconds.values())
    return seconds, timer


def engine_phases(space, archs, data, config, key, cold_seconds) -> PhaseTimer:
    """Where the layered engine's time goes: a second (warm) run of the same population, with its
    batch preparation (augmentation), forward+backward, optimizer update and evaluation calls each
    blocked on and timed (XLA:CPU runs dispatched work in order, so a call left unblocked would bill
    its time to the next blocked one; the pipelining between them is lost, and the warm total is
    printed beside it); compilation is the cold run's time minus the warm run's."""
    timer = PhaseTimer()

    def timed(phase, fn):
        def run(*args, **kwargs):
            with timer(phase):
                return jax.block_until_ready(fn(*args, **kwargs))
        return run

    names = ("train_epoch", "next_batch", "_gradients", "_update_fn", "accuracy")
    originals = {name: getattr(layered, name) for name in names}
    layered.train_epoch = timed("epoch", originals["train_epoch"])
    layered.next_batch = timed("augmentation", originals["next_batch"])
    layered._gradients = timed("forward+backward", originals["_gradients"])
    layered._update_fn = lambda *a: timed("update", originals["_update_fn"](*a))
    layered.accuracy = timed("evaluation", originals["accuracy"])
    try:
        start = time.perf_counter()
        train_population(space, archs, data, config, key, execution="layered")
        warm = time.perf_counter() - start
    finally:
        for name, fn in originals.items():
            setattr(layered, name, fn)
    timer.seconds.pop("epoch")  # holds the three timed phases and their host loop
    timer.seconds["training steps"] = timer.seconds.pop("forward+backward") + timer.seconds.pop("update")
    timer.seconds["compilation"] = cold_seconds - warm
    timer.seconds["host loop and set-up"] = (warm - timer.seconds["training steps"] - timer.seconds["augmentation"]
                                             - timer.seconds["evaluation"])
    return timer


def single_step_gflops(space, data, config, key) -> tuple[float, float]:
    """(GFLOP/s, ms) of one jitted training step of the depth-4/32ch/3x3 net on a batch."""
    enc = space.encode([(32, 3)] * 4)
    module = nasjax.nn.build(space, enc)
    tx = make_optimizer(config, 1)
    x = jnp.asarray(normalize(data.train_images[:config.batch_size]))
    y = jnp.asarray(data.train_labels[:config.batch_size])
    state = create_state(module.init(key, x[:1]), tx, key)
    step = jax.jit(functools.partial(steps.train_step, module_apply(module), tx, config),
                   compiler_options=ops.compiler_options())
    ms = interleaved_medians({"step": lambda: jax.block_until_ready(step(state, (), x, y))}, 5)["step"]
    flops = 3.0 * arch_info(space, enc, config)[1] * config.batch_size  # forward + 2x backward
    return flops / ms / 1e6, ms


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    add_population_flags(p, train_images=0, eval_images=0)
    p.add_argument("--host-devices", type=COUNT, default=1, help="forced CPU host devices (sharded engine)")
    p.add_argument("--executions", default="layered")
    p.add_argument("--flax-baseline", action="store_true",
                   help="also time one-by-one training in plain Flax (nn.Conv, nn.max_pool, default XLA "
                        "options; slow on CPU: autodiff's convolutions inside the epoch's scan run 25-250x "
                        "slower than at the top level)")
    p.add_argument("--compile-cache", default=None, metavar="DIR",
                   help="keep compiled programs in DIR (nasjax.runtime): a second run loads them")
    p.add_argument("--malloc", choices=("reuse", "default"), default="reuse",
                   help="reuse: keep freed host memory for reuse (nasjax.runtime), as lanas_cifar.py "
                        "does; default: glibc's own policy")
    p.add_argument("--jsonl", default="perf_population.jsonl")
    return p.parse_args(argv)



def main(argv=None) -> int:
    return run_main(lambda: perf_population(parse_args(argv)))


def perf_population(args: argparse.Namespace) -> None:
    """The timings: printed and appended to --jsonl."""
    if args.host_devices > 1:  # XLA reads its flags at the process's first computation
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.host_devices}"
    key = jax.random.PRNGKey(args.seed)
    data = load_cifar10(args.data_dir).take(train=args.train_images, val=args.eval_images,
                                            test=args.eval_images)
    space = ConvNetSpace.motivating()
    if args.compile_cache:
        print(f"compile cache: {use_compile_cache(args.compile_cache)}")
    if args.malloc == "reuse":  # every execution below, PyTorch's included, runs with it
        print(f"host memory kept for reuse (nasjax.runtime): {reuse_host_memory()}")
    # Every execution evaluates in training-sized batches, the layered engine's choice (its forward
    # programs are the training step's): PyTorch ran 20 % faster per image at 128 than at 500.
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.batch_size)
    archs = distinct_archs(space, args.archs, jax.random.fold_in(key, 1))
    images = args.archs * args.epochs * (len(data.train_labels) // config.batch_size) * config.batch_size
    print(f"{len(archs)} distinct archs, depths {np.bincount(archs[:, 0]).tolist()}, {args.epochs} epoch(s) "
          f"on {len(data.train_labels)} images, eval on {len(data.val_labels)} + {len(data.test_labels)}, batch {config.batch_size}, backend {jax.default_backend()} "
          f"x{len(jax.devices())}", flush=True)
    rows = []
    baselines = [("one-by-one jit, nasjax conv", False)]
    if args.flax_baseline:
        baselines.append(("one-by-one jit, flax nn.Conv", True))
    for name, flax_conv in baselines:
        seconds, _ = one_by_one(space, archs, data, config, key, flax_conv)
        rows.append((name, seconds))
        print(f"  {name} (compile incl.): {seconds:.1f} s", flush=True)
    phases = {}
    for execution in args.executions.split(","):
        start = time.perf_counter()
        train_population(space, archs, data, config, key, execution=execution)
        rows.append((f"engine {execution}", time.perf_counter() - start))
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f} s", flush=True)
        if execution == "layered":
            phases["engine layered"] = engine_phases(space, archs, data, config, key, rows[-1][1]).seconds
    torch_run = torch_eager(space, archs, data, config, args.seed)
    if torch_run is not None:
        rows.append(("pytorch cpu eager, same work", torch_run[0]))
        phases["pytorch"] = torch_run[1].seconds
    else:
        print("  pytorch: not installed, skipped")
    base = rows[0][1]
    print(f"{'execution':34s} {'seconds':>9s} {'archs/hour':>11s} {'images/s':>9s} {'vs one-by-one':>14s}")
    with open(args.jsonl, "w") as f:
        for name, sec in rows:
            row = dict(execution=name, seconds=round(sec, 2), archs_per_hour=round(len(archs) * 3600 / sec, 1),
                       images_per_s=round(images / sec, 1), ratio_vs_one_by_one=round(base / sec, 3),
                       archs=len(archs), epochs=args.epochs, train_images=len(data.train_labels),
                       seed=args.seed, devices=len(jax.devices()), malloc=args.malloc)
            f.write(json.dumps(row) + "\n")
            print(f"{name:34s} {sec:9.1f} {row['archs_per_hour']:11.1f} {row['images_per_s']:9.1f} "
                  f"{row['ratio_vs_one_by_one']:13.2f}x")
        if phases:
            names = list(phases)
            order = ["training steps", "augmentation", "evaluation", "compilation", "host loop and set-up"]
            print(f"where the time goes (s): {'phase':22s}" + "".join(f"{n:>16s}" for n in names))
            for phase in order:
                print(f"{'':25s}{phase:22s}" + "".join(f"{phases[n].get(phase, 0.0):16.1f}" for n in names))
            f.write(json.dumps(dict(phases={n: {k: round(v, 2) for k, v in p.items()}
                                            for n, p in phases.items()})) + "\n")
        totals = dict(rows)
        if "engine layered" in totals and "pytorch cpu eager, same work" in totals:
            print(f"engine layered / PyTorch on equal work: "
                  f"{totals['engine layered'] / totals['pytorch cpu eager, same work']:.2f}x the time")
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
    sys.exit(main())
