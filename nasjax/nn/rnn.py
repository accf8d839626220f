"""DARTS' recurrent language model (rnn/model.py) around the cells of `nasjax.spaces.rnn`, and its
registration as the networks of both recurrent spaces (`nasjax.nn.build`, `nasjax.nn.supernet`).

`build` fixes the cell at trace time (`RNNLanguageModel(nodes=...)`); `supernet` takes it as data,
`arch_data(space, enc)` = `cell_arrays`: input weights (N, N + 1), activation ids into `ACTIVATIONS`
(N,) and output weights (N,), so one compiled program trains any cell of a configuration and the same
program is the weight-sharing supernet. Both have the same parameters.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from nasjax.nn.api import Networks, register
from nasjax.spaces.rnn import ACTIVATIONS, RecurrentSpace, output_weights

INIT_RANGE = 0.04  # DARTS rnn/model.py INITRANGE for W_0 and W_i


@struct.dataclass
class CellArrays:
    """A recurrent cell as arrays (batch with a leading axis): inputs float32 (N, N + 1), node i's
    weights over states 0..N (rows sum to 1, zero at and after i + 1); activation int32 (N,) ids into
    `ACTIVATIONS`; output float32 (N,) weights of the intermediate nodes in the new hidden state (sum 1)."""

    inputs: jax.Array
    activation: jax.Array
    output: jax.Array


def _activate(ids: jax.Array, g: jax.Array) -> jax.Array:
    """ACTIVATIONS[ids](g) for a traced id (a select, exact: no blending of values)."""
    return jnp.where(ids == 0, jnp.tanh(g), jnp.where(ids == 1, jax.nn.relu(g),
                     jnp.where(ids == 2, jax.nn.sigmoid(g), g)))


_STATIC_ACT = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "identity": lambda g: g}


def _uniform(scale: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -scale, scale)


def _locked_mask(key, rate: float, shape, dtype=jnp.float32):
    """Variational dropout: one Bernoulli mask scaled by 1 / keep, reused over every time step."""
    keep = 1.0 - rate
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / keep


class RNNLanguageModel(nn.Module):
    """DARTS' RNN language model (rnn/model.py): embedding dropout -> locked dropout -> recurrent cell
    over the sequence (lax.scan) -> locked dropout -> linear decoder tied to the embedding (+ bias).

    `nodes` fixes the cell at trace time: per node (activation name, predecessor state indices), and
    `concat` the averaged states (1-based). With `nodes=None` the cell is an argument (`CellArrays`), so
    one compiled program serves every cell of `num_nodes` nodes: the weight-sharing supernet. Both modes
    have the same parameters: embedding (V, H), W0 (2H, 2H), Ws (N, H, 2H), decoder_bias (V,).

    __call__(tokens int32 (T, B), hidden float32 (B, H), cell=None, train=False) ->
      (logits float32 (T, B, V), new hidden (B, H), cell outputs before dropout (T, B, H)).
    Training draws from the rng stream 'dropout'. Dropout rates: `dropout` on the cell outputs,
    `dropout_h` / `dropout_x` on the recurrent / input connections inside the cell, `dropout_i` on the
    embedded inputs (all locked over time), `dropout_e` on whole embedding rows (words).
    """

    vocab_size: int
    num_nodes: int
    hidden_size: int = 850
    nodes: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    concat: tuple[int, ...] | None = None
    dropout: float = 0.75
    dropout_h: float = 0.25
    dropout_x: float = 0.75
    dropout_i: float = 0.2
    dropout_e: float = 0.1

    @nn.compact
    def __call__(self, tokens: jax.Array, hidden: jax.Array, cell: CellArrays | None = None,
                 train: bool = False):
        if (cell is None) == (self.nodes is None):
            raise ValueError("give the cell either as the module's `nodes` (fixed) or as `cell` (data), "
                             "exactly one of them")
        h_size, n = self.hidden_size, self.num_nodes
        embedding = self.param("embedding", _uniform(0.1), (self.vocab_size, h_size))
        w0 = self.param("W0", _uniform(INIT_RANGE), (2 * h_size, 2 * h_size))
        ws = self.param("Ws", _uniform(INIT_RANGE), (n, h_size, 2 * h_size))
        bias = self.param("decoder_bias", nn.initializers.zeros, (self.vocab_size,))
        steps, batch = tokens.shape

        x_mask = h_mask = None
        table = embedding
        if train:
            k_e, k_i, k_x, k_h, k_o = jax.random.split(self.make_rng("dropout"), 5)
            if self.dropout_e:
                table = embedding * _locked_mask(k_e, self.dropout_e, (self.vocab_size, 1))
        x = table[tokens]  # (T, B, H)
        if train:
            x = x * _locked_mask(k_i, self.dropout_i, (1, batch, h_size)) if self.dropout_i else x
            x_mask = _locked_mask(k_x, self.dropout_x, (batch, h_size)) if self.dropout_x else None
            h_mask = _locked_mask(k_h, self.dropout_h, (batch, h_size)) if self.dropout_h else None
        if x_mask is not None:
            x = x * x_mask
        # The input half of s_0's projection for every step at once: one (T B, H) x (H, 2H) matmul
        # outside the scan instead of T small ones inside it.
        x_proj = (x.reshape(steps * batch, h_size) @ w0[:h_size]).reshape(steps, batch, 2 * h_size)
        w0h = w0[h_size:]

        def masked(s):
            return s if h_mask is None else s * h_mask

        def highway(s, proj, act):
            c, g = jnp.split(proj, 2, axis=-1)
            return s + jax.nn.sigmoid(c) * (act(g) - s)

        if self.nodes is not None:
            step = self._fixed_step(ws, w0h, masked, highway)
        else:
            step = self._data_step(cell, ws, w0h, masked, highway)
        hidden, outputs = jax.lax.scan(step, hidden, x_proj)
        out = outputs
        if train and self.dropout:
            out = out * _locked_mask(k_o, self.dropout, (1, batch, h_size))
        logits = out @ embedding.T + bias
        return logits, hidden, outputs

    def _fixed_step(self, ws, w0h, masked, highway):
        """One time step of the cell in `nodes`. Nodes reading the same states share one matmul
        against their W_i side by side (DARTS_V2: 8 nodes, 5 matmuls)."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, preds) in enumerate(self.nodes):
            groups.setdefault(tuple(preds), []).append(i)
        # A group can run once its last input exists; states are produced in index order.
        order = sorted(groups, key=max)
        w_groups = {p: jnp.concatenate([ws[i] for i in groups[p]], axis=-1) for p in order}
        n_states = len(self.nodes) + 1

        def step(h, xp):
            states: list[Any] = [highway(h, xp + masked(h) @ w0h, jnp.tanh)] + [None] * (n_states - 1)
            pending = list(order)
            while pending:  # trace-time schedule: a group whose inputs are all computed
                preds = next(p for p in pending if all(states[j] is not None for j in p))
                pending.remove(preds)
                s = states[preds[0]] if len(preds) == 1 else sum(states[j] for j in preds) / len(preds)
                proj = masked(s) @ w_groups[preds]
                for k, i in enumerate(groups[preds]):
                    part = proj[:, 2 * k * self.hidden_size:2 * (k + 1) * self.hidden_size]
                    states[i + 1] = highway(s, part, _STATIC_ACT[self.nodes[i][0]])
            out = jnp.mean(jnp.stack([states[j] for j in self.concat]), axis=0)
            return out, out

        return step

    def _data_step(self, cell: CellArrays, ws, w0h, masked, highway):
        """One time step of the cell given as arrays: every node weighs all states (zero for those it
        does not read) and selects its activation, so any cell of N nodes runs in the same program."""
        n = self.num_nodes

        def node(states, i):
            s = jnp.einsum("j,jbh->bh", cell.inputs[i], states)
            new = highway(s, masked(s) @ ws[i], lambda g: _activate(cell.activation[i], g))
            return states.at[i + 1].set(new), None

        def step(h, xp):
            states = jnp.zeros((n + 1,) + h.shape, h.dtype).at[0].set(
                highway(h, xp + masked(h) @ w0h, jnp.tanh))
            # A loop over the nodes, not N unrolled copies: the program (and its compile time) stays
            # small, and the supernet is vmapped over cells and differentiated.
            states, _ = jax.lax.scan(node, states, jnp.arange(n))
            out = jnp.einsum("j,jbh->bh", cell.output, states[1:])
            return out, out

        return step


def cell_arrays(space: RecurrentSpace, enc: jax.Array) -> CellArrays:
    """The cell `enc` denotes as data for `RNNLanguageModel(nodes=None)` (jittable)."""
    adjacency, acts = space.inputs_and_activations(jnp.asarray(enc, jnp.int32))
    inputs = adjacency / jnp.sum(adjacency, axis=1, keepdims=True)
    global_ids = jnp.asarray([ACTIVATIONS.index(a) for a in space.activations], jnp.int32)[acts]
    return CellArrays(inputs, global_ids, output_weights(adjacency, space.output))


def build(space: RecurrentSpace, enc, *, num_classes: int = 10000, hidden_size: int = 850,
          **dropout) -> RNNLanguageModel:
    """The language model with the cell of `enc` fixed (`num_classes` = vocabulary size; dropout rates as
    keyword arguments, see `RNNLanguageModel`; defaults: DARTS' evaluation, 850 units)."""
    return RNNLanguageModel(vocab_size=num_classes, num_nodes=space.num_nodes, hidden_size=hidden_size,
                            nodes=space.nodes(enc), concat=space.concat(enc), **dropout)


def supernet(space: RecurrentSpace, *, num_classes: int = 10000, hidden_size: int = 850,
             **dropout) -> RNNLanguageModel:
    """The same language model with the cell as an argument (`cell_arrays`): weight sharing."""
    return RNNLanguageModel(vocab_size=num_classes, num_nodes=space.num_nodes, hidden_size=hidden_size,
                            **dropout)


def example_input(module: RNNLanguageModel) -> tuple:
    """One example for `module.init`: a BPTT window of 35 tokens (35, 1) and the hidden state (1, hidden)."""
    return (jax.ShapeDtypeStruct((35, 1), jnp.int32), jax.ShapeDtypeStruct((1, module.hidden_size), jnp.float32))


register(RecurrentSpace, Networks(build=build, supernet=supernet, arch_data=cell_arrays, example_input=example_input))
