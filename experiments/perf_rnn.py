"""Time one language-model training step, nasjax (jit) vs the same model in PyTorch eager, interleaved.

    python experiments/perf_rnn.py                       # DARTS_V2_RNN cell, 35 steps x batch 64 x 256 units
    python experiments/perf_rnn.py --hidden 850 --rounds 5

The step: embedding (PTB's 10,000 words, dropout on rows) -> locked dropout -> the DARTS_V2_RNN recurrent
cell over `--bptt` steps (input / recurrent dropout masks) -> locked dropout -> decoder tied to the
embedding -> cross-entropy + DARTS' temporal activation regularisation -> backward -> gradient clipping
-> SGD with weight decay. nasjax: `nasjax.train.lm.train_step` on `nasjax.nn.build` (the cell fixed
at trace time: the input half of s_0's projection hoisted out of the scan as one matmul; nodes reading
the same state share one matmul). PyTorch: DARTS' rnn/model.py cell written out in eager PyTorch (one
matmul per node per step) with the same input projection hoisted. Rounds alternate between the two;
the median step time of each and the ratio PyTorch / nasjax (> 1: nasjax faster) are printed, with
`uptime`'s load (the machine is shared: the ratio, from one interleaved run, is what to compare).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import nasjax.nn
from nasjax.experiment.cli import COUNT, Parser, UsageError, integer
from nasjax.experiment.cli import main as run_main
from nasjax.spaces import DARTS_V2_RNN, RNNCellSpace
from nasjax.train import lm

VOCAB = 10_000
DROPOUT = dict(dropout=0.75, dropout_h=0.25, dropout_x=0.75, dropout_i=0.2, dropout_e=0.1)  # DARTS'
def torch_darts_lm(hidden: int, genotype, seed: int, threads: int):
    """DARTS' RNNModel + DARTSCell (quark0/darts rnn/model.py) in eager PyTorch, tied weights, initialised
    from `seed` on `threads` threads (0: PyTorch's default), and its training step
    `step(model, opt, config, tokens, targets, hidden) -> hidden`. PyTorch is imported here, so the flags
    parse (and --help works) without it."""
    try:
        import torch
    except ImportError:
        raise UsageError("perf_rnn compares against PyTorch: pip install torch") from None
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    activations = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda g: g}

    def mask(shape, rate):
        return torch.bernoulli(torch.full(shape, 1 - rate)) / (1 - rate)

    class TorchDARTSLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            init = functools.partial(torch.empty, dtype=torch.float32)
            self.embedding = torch.nn.Parameter(init(VOCAB, hidden).uniform_(-0.1, 0.1))
            self.w0 = torch.nn.Parameter(init(2 * hidden, 2 * hidden).uniform_(-0.04, 0.04))
            self.ws = torch.nn.Parameter(init(len(genotype.recurrent), hidden, 2 * hidden).uniform_(-0.04, 0.04))
            self.bias = torch.nn.Parameter(torch.zeros(VOCAB))

        def forward(self, tokens, state):
            steps, batch = tokens.shape
            table = self.embedding * mask((VOCAB, 1), DROPOUT["dropout_e"])
            x = torch.nn.functional.embedding(tokens, table)
            x = x * mask((1, batch, hidden), DROPOUT["dropout_i"])
            x = x * mask((batch, hidden), DROPOUT["dropout_x"])
            h_mask = mask((batch, hidden), DROPOUT["dropout_h"])
            x_proj = (x.reshape(steps * batch, hidden) @ self.w0[:hidden]).view(steps, batch, 2 * hidden)
            outputs = []
            for t in range(steps):
                c, g = torch.split(x_proj[t] + (state * h_mask) @ self.w0[hidden:], hidden, dim=-1)
                states = [state + torch.sigmoid(c) * (torch.tanh(g) - state)]
                for i, (name, pred) in enumerate(genotype.recurrent):
                    s = states[pred]
                    c, g = torch.split((s * h_mask) @ self.ws[i], hidden, dim=-1)
                    states.append(s + torch.sigmoid(c) * (activations[name](g) - s))
                state = torch.stack([states[i] for i in genotype.concat]).mean(0)
                outputs.append(state)
            raw = torch.stack(outputs)
            out = raw * mask((1, batch, hidden), DROPOUT["dropout"])
            return out @ self.embedding.T + self.bias, state, raw

    def step(model, opt, config: lm.LMConfig, tokens, targets, state):
        logits, state, raw = model(tokens, state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
        loss = loss + config.beta * (raw[1:] - raw[:-1]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        return state.detach()

    return TorchDARTSLM(), step


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--hidden", type=COUNT, default=256)
    p.add_argument("--batch", type=COUNT, default=64)
    p.add_argument("--bptt", type=COUNT, default=35)
    p.add_argument("--rounds", type=COUNT, default=4)
    p.add_argument("--steps", type=COUNT, default=5, help="timed steps per round and implementation")
    p.add_argument("--torch-threads", type=integer(0), default=0, help="0: PyTorch's default")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run_main(lambda: perf_rnn(parse_args(argv)))


def perf_rnn(args: argparse.Namespace) -> None:
    """The measurements: printed, and written where the flags say."""

    tmodel, torch_step = torch_darts_lm(args.hidden, DARTS_V2_RNN, seed=0, threads=args.torch_threads)
    import torch  # present: torch_darts_lm refused its absence

    space = RNNCellSpace()
    model = nasjax.nn.build(space, space.from_genotype(*DARTS_V2_RNN), num_classes=VOCAB,
                            hidden_size=args.hidden, **DROPOUT)
    config = lm.LMConfig(batch_size=args.batch, bptt=args.bptt)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, (args.bptt, args.batch)).astype(np.int32)
    targets = rng.integers(0, VOCAB, (args.bptt, args.batch)).astype(np.int32)
    step = jax.jit(functools.partial(lm.train_step, model, config))
    state = lm.init_state(model, config, jax.random.key(0))
    x, y = jnp.asarray(tokens), jnp.asarray(targets)
    t0 = time.perf_counter()
    state, loss = step(state, x, y)
    loss.block_until_ready()
    print(f"nasjax compile + first step: {time.perf_counter() - t0:.1f} s", flush=True)

    opt = torch.optim.SGD(tmodel.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    tx, ty = torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(targets.astype(np.int64))
    hidden = torch_step(tmodel, opt, config, tx, ty, torch.zeros(args.batch, args.hidden))  # warm-up

    times = {"nasjax": [], "pytorch": []}
    for r in range(args.rounds):
        for name in ("nasjax", "pytorch") if r % 2 == 0 else ("pytorch", "nasjax"):
            for _ in range(args.steps):
                t0 = time.perf_counter()
                if name == "nasjax":
                    state, loss = step(state, x, y)
                    loss.block_until_ready()
                else:
                    hidden = torch_step(tmodel, opt, config, tx, ty, hidden)
                times[name].append(time.perf_counter() - t0)
            recent = np.median(times[name][-args.steps:]) * 1e3
            print(f"round {r} {name}: {recent:.1f} ms per step", flush=True)
    nj, pt = np.median(times["nasjax"]) * 1e3, np.median(times["pytorch"]) * 1e3
    print(f"training step, DARTS_V2_RNN cell, bptt {args.bptt} x batch {args.batch} x hidden {args.hidden}, "
          f"vocab {VOCAB} ({args.rounds} interleaved rounds x {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}):")
    print(f"  nasjax  {nj:8.1f} ms (median; min {min(times['nasjax']) * 1e3:.1f})")
    print(f"  pytorch {pt:8.1f} ms (median; min {min(times['pytorch']) * 1e3:.1f})")
    print(f"  PyTorch / nasjax = {pt / nj:.2f}")


if __name__ == "__main__":
    sys.exit(main())
