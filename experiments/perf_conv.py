"""CPU convolution speed: plain Flax (`nn.Conv`, `nn.max_pool`, default XLA options) vs nasjax (its conv
path, `ops.max_pool`, `ops.compiler_options()`) vs PyTorch eager, in one run.

Times one SGD-momentum training step (batch B, 32x32x3, Conv-ReLU SAME, 2x2 max-pool every 2 layers,
GAP, Dense) for two ConvNets, forward+backward of a single 5x5/96-channel layer, and, to show where
the time goes, each convolution (fwd, dX, dW) of the costliest layers on its own. DARTS: its ops
(depthwise 3x3, dilated depthwise 3x3, 3x3 max and avg pool at 32x32x16, batch 64: fwd, fwd+bwd, and
fwd+bwd inside lax.scan) and a whole DARTS network's training step (DARTS_V2_CNN, 5 cells x 16 channels,
batch 64, the genotype as data as the engine trains it) against the same network in PyTorch eager
(--darts-only runs just these). All cases run in
interleaved rounds. Prints ms, conv GFLOP/s (a step counts forward, dW, and dX except for the network
input), the fraction of XLA's f32 matmul peak measured in the same run (PyTorch's peak is printed
too), and speed ratios (baseline time / nasjax time: > 1 means nasjax is faster); writes the rows to
a CSV.

  python experiments/perf_conv.py --batch 128 --steps 5 --csv perf_conv.csv
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import unittest.mock

import jax
import jax.numpy as jnp
import optax

from nasjax.experiment.cli import COUNT, SEED, Parser, integer
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.timing import interleaved_medians, matmul_peaks, plain_flax
from nasjax.io import write_csv
from nasjax.nn import build, ops, supernet
from nasjax.spaces import DARTS_V2_CNN, ConvNetSpace, DARTSSpace
from nasjax.spaces.convnet import pool_positions

NETWORKS = {"depth4-32ch-3x3": [(32, 3)] * 4, "depth2-64ch-5x5": [(64, 5)] * 2}
LAYER = "layer-5x5-96ch"
OP_LAYERS = [(32, 64, 5), (32, 32, 3), (16, 96, 5)]  # (size, channels, kernel) timed op by op
DARTS = dict(layers=5, init_channels=16, batch=64)  # the DARTS network step (genotype DARTS_V2_CNN)
# DARTS' ops at 32x32x16, batch 64: (name, nasjax/XLA fn(x, w, impl), PyTorch fn(x, w))
TAPS_OPS = ("dw3x3", "dil3x3-d2", "maxpool3x3", "avgpool3x3")


def conv_gflop(layers, batch: int, size: int = 32, pool_every: int = 2, cin: int = 3) -> float:
    """Training-step conv GFLOP: forward + dW + dX per layer, no dX for the network input."""
    total = 0.0
    for i, ((c, k), pool) in enumerate(zip(layers, pool_positions(pool_every, len(layers), size))):
        fwd = 2.0 * batch * size * size * k * k * cin * c
        total += fwd * (2 if i == 0 else 3)
        cin = c
        size = size // 2 if pool else size
    return total / 1e9


def jax_train_step(layers, batch: int, key, flax_conv: bool):
    """A jitted SGD-momentum step of the ConvNet as nasjax compiles it, or with flax_conv, plain Flax:
    `nn.Conv`, `nn.max_pool` and XLA's default compiler options."""
    space = ConvNetSpace(channels=(32, 64), kernels=(3, 5), max_depth=len(layers))
    module = build(space, space.encode(layers))
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


# --- DARTS: its ops and a whole network's training step ----------------------------------------------
def jax_taps_ops(name: str, batch: int, key, nasjax: bool) -> dict:
    """{"fwd", "fwd+bwd", "fwd+bwd in scan"} closures for one DARTS op at 32x32x16 as nasjax (its CPU
    path, compiler options) or plain XLA compiles it; "in scan" runs 2 iterations of a lax.scan, per
    iteration."""
    kx, kw = jax.random.split(key)
    x, w = jax.random.normal(kx, (batch, 32, 32, 16)), jax.random.normal(kw, (3, 3, 16)) * 0.3
    impl, options = ("auto", ops.compiler_options()) if nasjax else ("xla", None)
    op = {"dw3x3": lambda x, w: ops.depthwise_conv2d(x, w, 1, 1, impl=impl),
          "dil3x3-d2": lambda x, w: ops.depthwise_conv2d(x, w, 1, 2, impl=impl),
          "maxpool3x3": lambda x, w: ops.max_pool_window(x, 3, 1, impl),
          "avgpool3x3": lambda x, w: ops.avg_pool_window(x, 3, 1, impl)}[name]
    grad = jax.grad(lambda x, w: jnp.sum(op(x, w) ** 2), (0, 1))
    fns = {"fwd": jax.jit(op, compiler_options=options), "fwd+bwd": jax.jit(grad, compiler_options=options),
           "fwd+bwd in scan": jax.jit(lambda x, w: jax.lax.scan(
               lambda c, _: (c + 1.0, grad(x + c, w)), 0.0, None, length=2)[1], compiler_options=options)}
    return {k: (lambda f=f: jax.block_until_ready(f(x, w))) for k, f in fns.items()}


def torch_taps_ops(name: str, batch: int) -> dict:
    """PyTorch's {"fwd", "fwd+bwd"} closures for `jax_taps_ops`' op, or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    x = torch.randn(batch, 16, 32, 32, requires_grad=True)
    w = (torch.randn(16, 1, 3, 3) * 0.3).requires_grad_()
    op = {"dw3x3": lambda: torch.nn.functional.conv2d(x, w, padding=1, groups=16),
          "dil3x3-d2": lambda: torch.nn.functional.conv2d(x, w, padding=2, dilation=2, groups=16),
          "maxpool3x3": lambda: torch.nn.functional.max_pool2d(x, 3, 1, 1),
          "avgpool3x3": lambda: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)}[name]

    def both():
        x.grad = w.grad = None
        (op() ** 2).sum().backward()

    def fwd():
        with torch.no_grad():
            op()
    return {"fwd": fwd, "fwd+bwd": both}


def jax_darts_step(key, nasjax: bool):
    """A jitted SGD-momentum step of DARTS' network (DARTS_V2_CNN, `DARTS` size) as the engine trains it:
    the genotype as data (one program for every genotype). With nasjax=False: XLA's own ops and options."""
    space = DARTSSpace(init_channels=DARTS["init_channels"], layers=DARTS["layers"])
    module, genotype = supernet(space), space.from_genotype(*DARTS_V2_CNN)
    kx, ky, kp = jax.random.split(key, 3)
    x = jax.random.normal(kx, (DARTS["batch"], 32, 32, 3))
    y = jax.random.randint(ky, (DARTS["batch"],), 0, 10)
    opt = optax.sgd(0.01, momentum=0.9)
    options = ops.compiler_options() if nasjax else None

    def step(params, stats, opt_state, genotype):
        def loss_fn(p):
            logits, updates = module.apply({"params": p, "batch_stats": stats}, x, genotype, train=True,
                                           mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates
        grads, updates = jax.grad(loss_fn, has_aux=True)(params)
        upd, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, upd), updates["batch_stats"], opt_state

    with contextlib.nullcontext() if nasjax else unittest.mock.patch.object(
            ops, "resolve_impl", lambda impl="auto": "xla"):
        variables = jax.jit(lambda k: module.init(k, x[:1], genotype))(kp)
        compiled = jax.jit(step, compiler_options=options).lower(
            variables["params"], variables["batch_stats"], opt.init(variables["params"]), genotype).compile()
    state = {"p": variables["params"], "b": variables["batch_stats"], "s": opt.init(variables["params"])}

    def run():
        state["p"], state["b"], state["s"] = compiled(state["p"], state["b"], state["s"], genotype)
        jax.block_until_ready(state["p"])
    return run


def torch_darts_step(seed: int):
    """PyTorch eager SGD-momentum step of the same network (DARTS' NetworkCIFAR ops, DARTS_V2_CNN, no
    auxiliary head, no drop-path), or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    nn_ = torch.nn
    torch.manual_seed(seed)
    torch.set_num_threads(2)

    def dw_pw_bn(c, k, stride, dilation):
        return [nn_.ReLU(), nn_.Conv2d(c, c, k, stride, dilation * (k - 1) // 2, dilation, groups=c, bias=False),
                nn_.Conv2d(c, c, 1, bias=False), nn_.BatchNorm2d(c)]

    class FactorizedReduce(nn_.Module):
        def __init__(self, cin, c):
            super().__init__()
            self.a, self.b = nn_.Conv2d(cin, c // 2, 1, 2, bias=False), nn_.Conv2d(cin, c // 2, 1, 2, bias=False)
            self.bn = nn_.BatchNorm2d(c)

        def forward(self, x):
            x = torch.relu(x)
            return self.bn(torch.cat([self.a(x), self.b(x[:, :, 1:, 1:])], 1))

    def op(name, c, stride):
        if name == "max_pool_3x3":
            return nn_.MaxPool2d(3, stride, 1)
        if name == "avg_pool_3x3":
            return nn_.AvgPool2d(3, stride, 1, count_include_pad=False)
        if name == "skip_connect":
            return nn_.Identity() if stride == 1 else FactorizedReduce(c, c)
        k = int(name[-1])
        if name.startswith("sep_conv"):
            return nn_.Sequential(*dw_pw_bn(c, k, stride, 1), *dw_pw_bn(c, k, 1, 1))
        return nn_.Sequential(*dw_pw_bn(c, k, stride, 2))

    class Cell(nn_.Module):
        def __init__(self, edges, c0, c1, c, reduction, reduction_prev):
            super().__init__()
            self.pre0 = FactorizedReduce(c0, c) if reduction_prev else nn_.Sequential(
                nn_.ReLU(), nn_.Conv2d(c0, c, 1, bias=False), nn_.BatchNorm2d(c))
            self.pre1 = nn_.Sequential(nn_.ReLU(), nn_.Conv2d(c1, c, 1, bias=False), nn_.BatchNorm2d(c))
            self.edges = edges
            self.ops = nn_.ModuleList(op(name, c, 2 if reduction and j < 2 else 1) for name, j in edges)

        def forward(self, s0, s1):
            states = [self.pre0(s0), self.pre1(s1)]
            for i in range(len(self.edges) // 2):
                states.append(sum(self.ops[2 * i + s](states[self.edges[2 * i + s][1]]) for s in range(2)))
            return torch.cat(states[2:], 1)

    class Network(nn_.Module):
        def __init__(self, c, layers):
            super().__init__()
            self.stem = nn_.Sequential(nn_.Conv2d(3, 3 * c, 3, padding=1, bias=False), nn_.BatchNorm2d(3 * c))
            c0 = c1 = 3 * c
            self.cells, reduction_prev = nn_.ModuleList(), False
            for i in range(layers):
                reduction = i in (layers // 3, 2 * layers // 3)
                c = 2 * c if reduction else c
                edges = DARTS_V2_CNN.reduce if reduction else DARTS_V2_CNN.normal
                self.cells.append(Cell(edges, c0, c1, c, reduction, reduction_prev))
                c0, c1, reduction_prev = c1, 4 * c, reduction
            self.classifier = nn_.Linear(c1, 10)

        def forward(self, x):
            s0 = s1 = self.stem(x)
            for cell in self.cells:
                s0, s1 = s1, cell(s0, s1)
            return self.classifier(s1.mean((2, 3)))

    model = Network(DARTS["init_channels"], DARTS["layers"])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(DARTS["batch"], 3, 32, 32), torch.randint(0, 10, (DARTS["batch"],))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def parse_args(argv=None) -> argparse.Namespace:
    ap = Parser(__doc__)
    ap.add_argument("--seed", type=SEED, default=0)
    ap.add_argument("--batch", type=COUNT, default=128)
    ap.add_argument("--steps", type=COUNT, default=5, help="timed steps after warm-up (median)")
    ap.add_argument("--layer-size", type=integer(2), default=16, help="spatial size of the single-layer case")
    ap.add_argument("--skip-flax", action="store_true", help="skip the (slow) plain nn.Conv baseline")
    ap.add_argument("--darts-only", action="store_true", help="only DARTS' op rows and network step")
    ap.add_argument("--csv", default="perf_conv.csv")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    return run_main(lambda: perf_conv(parse_args(argv)))


def perf_conv(args: argparse.Namespace) -> None:
    """The measurements: printed, and written where the flags say."""
    key = jax.random.key(args.seed)
    peaks = matmul_peaks(args.steps, key)
    peak = peaks["xla"]
    print(f"backend {jax.default_backend()}, nasjax conv impl {ops.resolve_impl()}, batch {args.batch}, "
          f"median of {args.steps} interleaved rounds; f32 matmul peak: "
          + ", ".join(f"{name} {g:.1f} GFLOP/s" for name, g in peaks.items()))

    gflop = {} if args.darts_only else {name: conv_gflop(layers, args.batch) for name, layers in NETWORKS.items()}
    if not args.darts_only:
        gflop[LAYER] = 3 * 2.0 * args.batch * args.layer_size ** 2 * 25 * 96 * 96 / 1e9
    torch_fns = {} if args.darts_only else torch_steps(args.batch, args.layer_size, args.seed)
    cases = {}
    for name in list(gflop):
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
    for size, channels, kernel in [] if args.darts_only else OP_LAYERS:
        op_fns = {"nasjax": jax_conv_ops(args.batch, size, channels, kernel, key, nasjax=True),
                  "flax": {} if args.skip_flax else jax_conv_ops(args.batch, size, channels, kernel, key, False),
                  "torch": torch_conv_ops(args.batch, size, channels, kernel)}
        for op in ("fwd", "dX", "dW"):
            name = f"{op} {kernel}x{kernel}/{channels}ch {size}px"
            gflop[name] = 2.0 * args.batch * size * size * kernel ** 2 * channels ** 2 / 1e9
            cases[name] = {impl: fns[op] for impl, fns in op_fns.items() if fns}

    # DARTS: its ops (fwd, fwd+bwd, inside lax.scan) and the network step.
    for op_name in TAPS_OPS:
        variants = {"nasjax": jax_taps_ops(op_name, DARTS["batch"], key, nasjax=True),
                    "flax": {} if args.skip_flax else jax_taps_ops(op_name, DARTS["batch"], key, nasjax=False),
                    "torch": torch_taps_ops(op_name, DARTS["batch"])}
        for kind in ("fwd", "fwd+bwd", "fwd+bwd in scan"):
            name = f"{op_name} {kind}"
            gflop[name] = float("nan")
            cases[name] = {impl: fns[kind] for impl, fns in variants.items() if kind in fns}
    darts = f"darts {DARTS['layers']}x{DARTS['init_channels']} step"
    gflop[darts] = float("nan")
    cases[darts] = {"nasjax": jax_darts_step(key, nasjax=True)}
    if not args.skip_flax:
        cases[darts]["flax"] = jax_darts_step(key, nasjax=False)
    torch_step = torch_darts_step(args.seed)
    if torch_step is not None:
        cases[darts]["torch"] = torch_step

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
    write_csv(args.csv, rows)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    sys.exit(main())
