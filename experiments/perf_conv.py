"""CPU convolution speed: plain Flax (`nn.Conv`, `nn.max_pool`, default XLA options) vs nasjax (its conv
path, `ops.max_pool`, `ops.compiler_options()`) vs PyTorch eager, in one run.

Times one SGD-momentum training step (batch B, 32x32x3, Conv-ReLU SAME, 2x2 max-pool every 2 layers,
GAP, Dense) for two ConvNets, forward+backward of a single 5x5/96-channel layer, and, to show where
the time goes, each convolution (fwd, dX, dW) of the costliest layers on its own. All cases run in
interleaved rounds. Prints ms, conv GFLOP/s (a step counts forward, dW, and dX except for the network
input), the fraction of XLA's f32 matmul peak measured in the same run (PyTorch's peak is printed
too), and speed ratios (baseline time / nasjax time: > 1 means nasjax is faster); writes the rows to
a CSV.

  python experiments/perf_conv.py --batch 128 --steps 5 --csv perf_conv.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import time
import unittest.mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nasjax.spaces import ConvNetSpace, ops
from nasjax.spaces.convnet import pool_positions

NETWORKS = {"depth4-32ch-3x3": [(32, 3)] * 4, "depth2-64ch-5x5": [(64, 5)] * 2}
LAYER = "layer-5x5-96ch"
OP_LAYERS = [(32, 64, 5), (32, 32, 3), (16, 96, 5)]  # (size, channels, kernel) timed op by op


def interleaved_medians(fns: dict, steps: int) -> dict[str, float]:
    """Median wall ms of each `fns[name]()` over `steps` rounds that call every fn in turn, after two
    warm-up calls each (compile, caches): drifts in machine speed hit all fns alike."""
    for fn in fns.values():
        fn(), fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def conv_gflop(layers, batch: int, size: int = 32, pool_every: int = 2, cin: int = 3) -> float:
    """Training-step conv GFLOP: forward + dW + dX per layer, no dX for the network input."""
    total = 0.0
    for i, ((c, k), pool) in enumerate(zip(layers, pool_positions(pool_every, len(layers), size))):
        fwd = 2.0 * batch * size * size * k * k * cin * c
        total += fwd * (2 if i == 0 else 3)
        cin = c
        size = size // 2 if pool else size
    return total / 1e9


def matmul_peaks(steps: int, key) -> dict[str, float]:
    """GFLOP/s of a large f32 matmul (4096x2048 @ 2048x2048) in XLA (jitted jnp.dot, nasjax's options)
    and, when installed, PyTorch: the ceiling a convolution can reach in each."""
    n = 2048
    a, b = jax.random.normal(key, (2 * n, n)), jax.random.normal(key, (n, n))
    dot = jax.jit(jnp.dot, compiler_options=ops.compiler_options())
    fns = {"xla": lambda: dot(a, b).block_until_ready()}
    try:
        import torch
        ta, tb = torch.tensor(np.asarray(a)), torch.tensor(np.asarray(b))
        out = torch.empty(2 * n, n)
        fns["torch"] = lambda: torch.mm(ta, tb, out=out)
    except ImportError:
        pass
    return {name: 2.0 * 2 * n ** 3 / (ms * 1e6) for name, ms in interleaved_medians(fns, steps).items()}


@contextlib.contextmanager
def plain_flax():
    """Within: nasjax's spaces build their ConvNets from `nn.Conv` and `nn.max_pool` (plain Flax)."""
    with unittest.mock.patch.object(ops, "Conv", nn.Conv), unittest.mock.patch.object(
            ops, "max_pool", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))):
        yield


def jax_train_step(layers, batch: int, key, flax_conv: bool):
    """A jitted SGD-momentum step of the ConvNet as nasjax compiles it, or with flax_conv, plain Flax:
    `nn.Conv`, `nn.max_pool` and XLA's default compiler options."""
    space = ConvNetSpace(channels=(32, 64), kernels=(3, 5), max_depth=len(layers))
    module = space.to_module(space.encode(layers))
    kx, ky, kp = jax.random.split(key, 3)
    x = jax.random.normal(kx, (batch, 32, 32, 3))
    y = jax.random.randint(ky, (batch,), 0, 10)
    opt = optax.sgd(0.01, momentum=0.9)

    def step(params, opt_state):
        loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(module.apply(p, x), y).mean()
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    with plain_flax() if flax_conv else contextlib.nullcontext():
        params = module.init(kp, x[:1])
        options = None if flax_conv else ops.compiler_options()
        compiled = jax.jit(step, compiler_options=options).lower(params, opt.init(params)).compile()
    state = {"p": params, "s": opt.init(params)}

    def run():
        state["p"], state["s"] = compiled(state["p"], state["s"])
        jax.block_until_ready(state["p"])
    return run


def conv_variant(nasjax: bool) -> tuple[str, dict | None]:
    """(conv impl, compiler options): nasjax's, or plain XLA's."""
    return ("auto", ops.compiler_options()) if nasjax else ("xla", None)


def jax_layer_step(batch: int, size: int, key, nasjax: bool):
    """Forward + backward (dX, dW) of one 5x5, 96 -> 96 channel SAME conv, as nasjax or plain XLA
    compiles it."""
    kx, kw = jax.random.split(key)
    x, w = jax.random.normal(kx, (batch, size, size, 96)), jax.random.normal(kw, (5, 5, 96, 96)) * 0.02
    impl, options = conv_variant(nasjax)
    grad = jax.jit(jax.grad(lambda x, w: jnp.sum(ops.conv2d(x, w, impl=impl) ** 2), (0, 1)),
                   compiler_options=options)
    return lambda: jax.block_until_ready(grad(x, w))


def jax_conv_ops(batch: int, size: int, channels: int, kernel: int, key, nasjax: bool) -> dict:
    """{"fwd", "dX", "dW"}: closures computing one SAME conv's output, input or kernel gradient (given
    dY) as nasjax compiles it, or as plain XLA does when not `nasjax`."""
    kx, kw, ky = jax.random.split(key, 3)
    x = jax.random.normal(kx, (batch, size, size, channels))
    w = jax.random.normal(kw, (kernel, kernel, channels, channels)) * 0.02
    dy = jax.random.normal(ky, x.shape)
    impl, options = conv_variant(nasjax)
    conv = lambda x, w: ops.conv2d(x, w, impl=impl)  # noqa: E731
    fns = {"fwd": conv, "dX": lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0],
           "dW": lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]}
    compiled = {op: jax.jit(fn, compiler_options=options) for op, fn in fns.items()}
    args = {"fwd": (x, w), "dX": (x, w, dy), "dW": (x, w, dy)}
    return {op: (lambda op=op: compiled[op](*args[op]).block_until_ready()) for op in fns}


def torch_conv_ops(batch: int, size: int, channels: int, kernel: int) -> dict:
    """PyTorch's closures for `jax_conv_ops`' ops, or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    x = torch.randn(batch, channels, size, size)
    w = torch.randn(channels, channels, kernel, kernel) * 0.02
    dy, pad = torch.randn_like(x), kernel // 2
    return {"fwd": lambda: torch.nn.functional.conv2d(x, w, padding=pad),
            "dX": lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=pad),
            "dW": lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=pad)}


def torch_steps(batch: int, size: int, seed: int):
    """PyTorch CPU eager step closures {name: fn}, or {} when torch is not installed."""
    try:
        import torch
    except ImportError:
        return {}
    torch.manual_seed(seed)
    torch.set_num_threads(2)

    def net(layers):
        mods, cin = [], 3
        for i, (c, k) in enumerate(layers):
            mods += [torch.nn.Conv2d(cin, c, k, padding="same"), torch.nn.ReLU()]
            if (i + 1) % 2 == 0:
                mods.append(torch.nn.MaxPool2d(2))
            cin = c
        body = torch.nn.Sequential(*mods)
        head = torch.nn.Linear(cin, 10)
        model = torch.nn.ModuleDict({"body": body, "head": head})
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(body(x).mean((2, 3))), y)
            loss.backward()
            opt.step()
        return step

    def layer():
        x = torch.randn(batch, 96, size, size, requires_grad=True)
        w = (torch.randn(96, 96, 5, 5) * 0.02).requires_grad_()

        def step():
            x.grad = w.grad = None
            (torch.nn.functional.conv2d(x, w, padding="same") ** 2).sum().backward()
        return step

    return {**{name: net(layers) for name, layers in NETWORKS.items()}, LAYER: layer()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after warm-up (median)")
    ap.add_argument("--layer-size", type=int, default=16, help="spatial size of the single-layer case")
    ap.add_argument("--skip-flax", action="store_true", help="skip the (slow) plain nn.Conv baseline")
    ap.add_argument("--csv", default="perf_conv.csv")
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1:
        ap.error("--steps and --batch must be >= 1")
    key = jax.random.key(args.seed)
    peaks = matmul_peaks(args.steps, key)
    peak = peaks["xla"]
    print(f"backend {jax.default_backend()}, nasjax conv impl {ops.resolve_impl()}, batch {args.batch}, "
          f"median of {args.steps} interleaved rounds; f32 matmul peak: "
          + ", ".join(f"{name} {g:.1f} GFLOP/s" for name, g in peaks.items()))

    gflop = {name: conv_gflop(layers, args.batch) for name, layers in NETWORKS.items()}
    gflop[LAYER] = 3 * 2.0 * args.batch * args.layer_size ** 2 * 25 * 96 * 96 / 1e9
    torch_fns = torch_steps(args.batch, args.layer_size, args.seed)
    cases = {}
    for name in gflop:
        fns = {}
        if name == LAYER:
            fns["nasjax"] = jax_layer_step(args.batch, args.layer_size, key, nasjax=True)
            if not args.skip_flax:
                fns["flax"] = jax_layer_step(args.batch, args.layer_size, key, nasjax=False)
        else:
            fns["nasjax"] = jax_train_step(NETWORKS[name], args.batch, key, flax_conv=False)
            if not args.skip_flax:
                fns["flax"] = jax_train_step(NETWORKS[name], args.batch, key, flax_conv=True)
        if name in torch_fns:
            fns["torch"] = torch_fns[name]
        cases[name] = fns
    # Where the time goes: each convolution of the costliest layers on its own.
    for size, channels, kernel in OP_LAYERS:
        op_fns = {"nasjax": jax_conv_ops(args.batch, size, channels, kernel, key, nasjax=True),
                  "flax": {} if args.skip_flax else jax_conv_ops(args.batch, size, channels, kernel, key, False),
                  "torch": torch_conv_ops(args.batch, size, channels, kernel)}
        for op in ("fwd", "dX", "dW"):
            name = f"{op} {kernel}x{kernel}/{channels}ch {size}px"
            gflop[name] = 2.0 * args.batch * size * size * kernel ** 2 * channels ** 2 / 1e9
            cases[name] = {impl: fns[op] for impl, fns in op_fns.items() if fns}

    rows = []
    for name, fns in cases.items():
        ms = interleaved_medians(fns, args.steps)
        for impl, t in ms.items():
            gfs = gflop[name] / (t / 1e3)
            rows.append(dict(case=name, impl=impl, ms_per_step=round(t, 1), gflop=round(gflop[name], 2),
                             gflop_per_s=round(gfs, 1), frac_xla_matmul_peak=round(gfs / peak, 3),
                             speedup_of_nasjax=round(t / ms["nasjax"], 2)))
            print(f"{name:22s} {impl:7s} {t:9.1f} ms {gfs:6.1f} GFLOP/s {gfs / peak:5.2f} of XLA peak "
                  f"  {impl}/nasjax time ratio {t / ms['nasjax']:.2f}", flush=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
