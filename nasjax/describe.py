"""`python -m nasjax describe SPACE ENCODING`: an architecture's genotype, exact parameter count, FLOPs
and a drawing.

The encoding is given as the space's own notation: a list (the encoding array, nested or flat, or the
NASNet space's reference flat list), or a string form (DARTS-style 'Genotype(...)', NAS-Bench-201's
'|op~0|+...'). Parameters are counted as the reference networks count them (`nasjax.nn.param_count`:
the chosen ops' and the shared layers', no auxiliary head unless asked for, which is then reported
on its own line); FLOPs are `nasjax.nn.cost`'s for one CIFAR image (32x32x3). The drawing is the
cell as DARTS-family papers draw it (a DAG: cell inputs, nodes, the concatenated output; ops on the
edges; a recurrent cell with its activations), NAS-Bench-101's cell with ops on the vertices, or a
ConvNet's layer sequence. Recurrent spaces' language models (10,000 words) get no image FLOPs.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from typing import Callable

import jax
import numpy as np

import nasjax.nn
from nasjax.data.cifar10 import IMAGE_SHAPE
from nasjax.nn import cost
from nasjax.spaces import (ConvNetSpace, DARTSSpace, Graph, InvalidEncodingError, NASBench101Space,
                           NASBench201Space, NASNetSpace, RNNCellSpace, RNNDAGSpace, Space)
from nasjax.spaces.nasnet import PAPER_OPS

# name -> (space, {describe flag: the space's network option})
SPACES: dict[str, tuple[Callable[[], Space], dict[str, str]]] = {
    "nasnet": (NASNetSpace, dict(channels="init_channels", layers="layers", auxiliary="auxiliary")),
    "nasnet-paper": (lambda: NASNetSpace(ops=PAPER_OPS),
                     dict(channels="init_channels", layers="layers", auxiliary="auxiliary")),
    "darts": (DARTSSpace, dict(channels="init_channels", layers="layers", auxiliary="auxiliary")),
    "nasbench101": (NASBench101Space, dict(channels="stem_channels", layers="cells_per_stack")),
    "nasbench201": (NASBench201Space, dict(channels="channels", layers="cells_per_stage")),
    "convnet-motivating": (ConvNetSpace.motivating, {}),
    "convnet60k": (ConvNetSpace.convnet60k, {}),
    "rnn-darts": (RNNCellSpace, dict(channels="hidden_size")),
    "rnn-lstm10k": (RNNDAGSpace, dict(channels="hidden_size")),
}


class UsageError(Exception):
    """A bad command line or encoding: one line, exit status 2."""


def parse_encoding(space: Space, text: str) -> np.ndarray:
    """The valid encoding `text` gives (module docstring); `InvalidEncodingError` naming the problem."""
    text = text.strip()
    if text[:1] in "[(":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InvalidEncodingError(f"{text[:60]!r} is not a list of ints") from None
        flat = isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value)
        if flat and hasattr(space, "from_list"):  # the space's own flat form (NASNet: the reference's list)
            return space.from_list(value)
        if flat and len(value) == math.prod(space.encoding_shape):
            value = np.reshape(value, space.encoding_shape)
        return space.checked(value)
    for reader in ("parse", "from_genotype", "from_string"):
        if hasattr(space, reader):
            return np.asarray(getattr(space, reader)(text))
    raise InvalidEncodingError(f"{type(space).__name__} reads encodings as lists only, got {text[:60]!r}")


def network_options(name: str, channels: int | None, layers: int | None, auxiliary: bool) -> dict:
    """The `nasjax.nn.build` options the describe flags stand for in space `name`."""
    table = SPACES[name][1]
    options = {}
    for flag, value in (("channels", channels), ("layers", layers), ("auxiliary", auxiliary or None)):
        if value is None:
            continue
        if flag not in table:
            raise UsageError(f"--{flag} does not apply to {name}; its flags: "
                             f"{', '.join('--' + f for f in table) or 'none'}")
        options[table[flag]] = value
    return options


def _variables(space: Space, module):
    """The module's variables as shapes (`jax.eval_shape`: nothing is computed)."""
    return jax.eval_shape(module.init, jax.random.key(0), *nasjax.nn.example_input(space, module))


def cost_lines(space: Space, enc: np.ndarray, options: dict) -> list[str]:
    """'params N' (without an auxiliary head), then 'auxiliary head params M' when asked for, then
    'flops F' for image networks."""
    module = nasjax.nn.build(space, enc, **options)
    variables = _variables(space, module)
    params = dict(variables["params"])
    aux = params.pop("auxiliary_head", None)
    lines = [f"params {nasjax.nn.param_count(space, enc, params)}"]
    if aux is not None:
        with_aux = nasjax.nn.param_count(space, enc, {**params, "auxiliary_head": aux})
        lines.append(f"auxiliary head params {with_aux - nasjax.nn.param_count(space, enc, params)}")
    if nasjax.nn.reads_images(space):
        lines.append(f"flops {int(cost.forward_flops(module, variables, IMAGE_SHAPE))}")
    return lines


# --- drawings ------------------------------------------------------------------------------------------
def graphs(space: Space, enc: np.ndarray) -> list[Graph]:
    """What to draw for `enc` (`Space.graphs`): the cells of a cell space, NB-101's cell, a ConvNet's
    layers, an RNN cell."""
    drawn = space.graphs(enc)
    if not drawn:
        raise InvalidEncodingError(f"no drawing for {type(space).__name__}")
    return drawn


def _layout(graph: Graph) -> dict:
    """(x, y) per vertex: x its longest-path depth from the inputs (outputs last), y spread per column."""
    depth = {key: 0 for key, _, kind in graph.vertices if kind == "input"}
    for key, _, kind in graph.vertices:  # vertices come in topological order
        if kind == "node":
            depth[key] = 1 + max((depth[a] for a, b, _ in graph.edges if b == key), default=0)
    last = 1 + max(depth.values())
    for key, _, kind in graph.vertices:
        if kind == "output":
            depth[key] = last
    columns: dict = {}
    for key, _, _ in graph.vertices:
        columns.setdefault(depth[key], []).append(key)
    return {key: (2.6 * x, 1.4 * ((len(col) - 1) / 2 - row)) for x, col in columns.items()
            for row, key in enumerate(col)}


def draw(graph_list: list[Graph], path: str) -> None:
    """Write the panels of `graph_list` to the PNG `path`, one above the other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    colors = {"input": "#b8e0b0", "node": "#b8d4f0", "output": "#f5e6a0"}
    layouts = [_layout(g) for g in graph_list]
    width = max(max(x for x, _ in lay.values()) for lay in layouts) + 2.5
    heights = [max(y for _, y in lay.values()) - min(y for _, y in lay.values()) + 2.5 for lay in layouts]
    fig, axes = plt.subplots(len(graph_list), 1, figsize=(max(6.0, 1.1 * width), 1.1 * sum(heights)),
                             gridspec_kw=dict(height_ratios=heights), squeeze=False)
    for ax, graph, pos in zip(axes[:, 0], graph_list, layouts):
        seen: dict = {}
        for src, dst, label in graph.edges:
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            # Repeated edges (the same input twice) bend apart; edges over a column bend round its vertices.
            repeat = seen[(src, dst)] = seen.get((src, dst), -1) + 1
            rad = (0.25 if x2 - x1 > 3.0 else 0.0) + 0.3 * repeat * (-1) ** repeat
            ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                         mutation_scale=12, shrinkA=22, shrinkB=22, lw=1.0,
                                         color="black" if label else "0.55", zorder=1))
            if label:  # on the curve (a quadratic Bezier), past the middle so labels from one vertex part
                t, cx, cy = 0.6, (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
                lx = (1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t ** 2 * x2
                ly = (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t ** 2 * y2
                ax.text(lx, ly, label, fontsize=7, ha="center", va="center", zorder=3,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        for key, label, kind in graph.vertices:
            x, y = pos[key]
            ax.text(x, y, label, ha="center", va="center", fontsize=9, zorder=4,
                    bbox=dict(boxstyle="round,pad=0.4", fc=colors[kind], ec="black", lw=0.8))
        xs, ys = [x for x, _ in pos.values()], [y for _, y in pos.values()]
        ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
        ax.set_aspect("equal")
        ax.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
        ax.set_title(graph.title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the command ---------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{message} (see --help)")


def main(argv=None) -> int:
    """`describe SPACE ENCODING [--channels C] [--layers L] [--auxiliary] [--out PNG]`: prints the
    description, 'params N' and 'flops F', writes the drawing. Exit 2 with one line on bad input."""
    p = _Parser(prog="python -m nasjax describe", description=__doc__.split("\n\n")[0])
    p.add_argument("space", help=f"one of {', '.join(SPACES)}")
    p.add_argument("encoding", help="the architecture: a list, or the space's string form (module docstring)")
    p.add_argument("--channels", type=int, default=None, help="network width (the space's default if not given)")
    p.add_argument("--layers", type=int, default=None, help="network depth (cells; the space's default if not given)")
    p.add_argument("--auxiliary", action="store_true", help="add the auxiliary head (cell spaces)")
    p.add_argument("--out", default="cell.png", help="where the drawing goes (PNG)")
    try:
        args = p.parse_args(argv)
        if args.space not in SPACES:
            raise UsageError(f"unknown space {args.space!r}; spaces: {', '.join(SPACES)}")
        space = SPACES[args.space][0]()
        options = network_options(args.space, args.channels, args.layers, args.auxiliary)
        enc = parse_encoding(space, args.encoding)
        lines = [space.describe(enc)]
        if hasattr(space, "to_list"):
            lines.append(f"list {space.to_list(enc)}")
        lines += cost_lines(space, enc, options)
        draw(graphs(space, enc), args.out)
    except (UsageError, ValueError) as e:  # InvalidEncodingError is a ValueError
        print(f"describe: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines + [f"drawing {args.out}"]))
    return 0
