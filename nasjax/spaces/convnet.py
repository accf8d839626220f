"""Plain VGG-style ConvNets (LaNAS `002_*` §2 and A.1): a stack of Conv-ReLU (optional BN) layers.

Encoding, int32 (1 + 2 * max_depth,):
  [depth, channel_idx[0..max_depth-1], kernel_idx[0..max_depth-1]]
indices into `channels` / `kernels`; entries of layers at or beyond `depth` are -1 (padding), so every
network has exactly one encoding.

Network (`nasjax.nn.build`, `nasjax.nn.convnet`): for each layer Conv(k x k, c, SAME) [-> BN] -> ReLU, a
2x2 max-pool after every `pool_every` layers (0: never), global average pooling, Dense(num_classes).
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from nasjax.spaces.base import MAX_ENUMERATE, ActionOrders, Graph, NotEnumerableError, Space, TokenView

PAD = -1


def pool_positions(pool_every: int, depth: int, image_size: int) -> tuple[bool, ...]:
    """Whether layer i < depth is followed by a 2x2 max-pool ("VALID": an odd row or column is
    dropped): after every `pool_every`-th layer (0: never), while the feature map is larger than one
    pixel. The one statement of the rule; every engine and the FLOPs count ask for it here."""
    out, size = [], image_size
    for i in range(depth):
        pool = bool(pool_every) and (i + 1) % pool_every == 0 and size > 1
        size = size // 2 if pool else size
        out.append(pool)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class ConvNetSpace(Space, TokenView, ActionOrders):
    """Depth in [min_depth, max_depth]; each layer independently picks a channel count and kernel."""

    channels: tuple[int, ...] = (32, 64)
    kernels: tuple[int, ...] = (3, 5)
    min_depth: int = 1
    max_depth: int = 5
    pool_every: int = 2
    batch_norm: bool = False

    def __post_init__(self):
        # Any sequence of ints is accepted; tuples keep the space hashable (a static jit argument).
        for field in ("channels", "kernels"):
            value = getattr(self, field)
            try:
                object.__setattr__(self, field, tuple(int(v) for v in value))
            except (TypeError, ValueError):
                raise ValueError(f"{field} must be a sequence of ints, got {value!r}") from None
        if not 1 <= self.min_depth <= self.max_depth:
            raise ValueError(f"need 1 <= min_depth <= max_depth, got {self.min_depth}, {self.max_depth}")
        if not self.channels or not self.kernels:
            raise ValueError("channels and kernels must be non-empty")
        if any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernel sizes must be odd and positive, got {self.kernels}")

    # --- presets ----------------------------------------------------------------------------------
    @classmethod
    def motivating(cls, **overrides) -> "ConvNetSpace":
        """LaNAS §2: depth 1-5, C in {32, 64}, K in {3, 5}: 1,364 networks."""
        return cls(**{**dict(channels=(32, 64), kernels=(3, 5), min_depth=1, max_depth=5), **overrides})

    @classmethod
    def convnet60k(cls, **overrides) -> "ConvNetSpace":
        """ConvNet-60K's ranges (LaNAS A.1): depth 1-8, C in {32, 64, 96}, K in {3, 5}."""
        return cls(**{**dict(channels=(32, 64, 96), kernels=(3, 5), min_depth=1, max_depth=8),
                      **overrides})

    # --- static description -------------------------------------------------------------------
    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return (1 + 2 * self.max_depth,)

    @property
    def num_features(self) -> int:
        return 1 + 2 * self.max_depth

    @property
    def _choices_per_layer(self) -> int:
        return len(self.channels) * len(self.kernels)

    def split(self, enc):
        """(depth scalar, channel idx (max_depth,), kernel idx (max_depth,)) of an encoding."""
        d = self.max_depth
        return enc[0], enc[1:1 + d], enc[1 + d:]

    def layer_mask(self, enc: jax.Array) -> jax.Array:
        """bool (max_depth,): which layers are present."""
        return jnp.arange(self.max_depth) < enc[0]

    def _join(self, depth, ch, kn):
        mask = jnp.arange(self.max_depth) < depth
        return jnp.concatenate([jnp.asarray(depth, jnp.int32)[None],
                                jnp.where(mask, ch, PAD).astype(jnp.int32),
                                jnp.where(mask, kn, PAD).astype(jnp.int32)])

    # --- pure, jittable ---------------------------------------------------------------------------
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        k_depth, k_ch, k_kn = jax.random.split(key, 3)
        depths = jnp.arange(self.min_depth, self.max_depth + 1)
        # P(depth = L) is proportional to the number of networks of depth L: uniform over networks.
        logits = depths * np.log(self._choices_per_layer)
        depth = depths[jax.random.categorical(k_depth, logits, shape=(n,))]
        ch = jax.random.randint(k_ch, (n, self.max_depth), 0, len(self.channels))
        kn = jax.random.randint(k_kn, (n, self.max_depth), 0, len(self.kernels))
        return jax.vmap(self._join)(depth, ch, kn)

    def is_valid(self, enc: jax.Array) -> jax.Array:
        depth, ch, kn = self.split(enc)
        mask = jnp.arange(self.max_depth) < depth
        active_ok = (ch >= 0) & (ch < len(self.channels)) & (kn >= 0) & (kn < len(self.kernels))
        pad_ok = (ch == PAD) & (kn == PAD)
        return ((depth >= self.min_depth) & (depth <= self.max_depth)
                & jnp.all(jnp.where(mask, active_ok, pad_ok)))

    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Edits: change one layer's channels or kernel; append a layer (any choice); drop the last."""
        d, nc, nk = self.max_depth, len(self.channels), len(self.kernels)
        depth, ch, kn = self.split(jnp.asarray(enc))
        rows, valid = [], []
        for i in range(d):
            for delta in range(1, nc):
                rows.append(self._join(depth, ch.at[i].set((ch[i] + delta) % nc), kn))
                valid.append(i < depth)
            for delta in range(1, nk):
                rows.append(self._join(depth, ch, kn.at[i].set((kn[i] + delta) % nk)))
                valid.append(i < depth)
        can_grow = depth < self.max_depth
        slot = jnp.minimum(depth, d - 1)
        for c, k in itertools.product(range(nc), range(nk)):
            rows.append(self._join(depth + 1, ch.at[slot].set(c), kn.at[slot].set(k)))
            valid.append(can_grow)
        rows.append(self._join(depth - 1, ch, kn))
        valid.append(depth > self.min_depth)
        return jnp.stack(rows), jnp.stack([jnp.asarray(v) for v in valid])

    def features(self, enc: jax.Array) -> jax.Array:
        """[depth, channels of layers 1..D (0 if absent), kernel sizes of layers 1..D (0 if absent)]."""
        depth, ch, kn = self.split(enc)
        mask = jnp.arange(self.max_depth) < depth
        c = jnp.where(mask, jnp.asarray(self.channels)[jnp.clip(ch, 0)], 0)
        k = jnp.where(mask, jnp.asarray(self.kernels)[jnp.clip(kn, 0)], 0)
        return jnp.concatenate([depth[None], c, k]).astype(jnp.float32)

    tokens_always_valid = True

    @property
    def token_vocab(self) -> tuple[int, ...]:
        """[depth, channel index + 1 per layer, kernel index + 1 per layer]: token 0 of a layer is the
        padding of an absent layer."""
        d = self.max_depth
        return (d + 1,) + (len(self.channels) + 1,) * d + (len(self.kernels) + 1,) * d

    def to_tokens(self, enc: jax.Array) -> jax.Array:
        enc = jnp.asarray(enc, jnp.int32)
        return enc.at[1:].add(1)

    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens, jnp.int32)
        return tokens.at[1:].add(-1)

    def token_mask(self, tokens: jax.Array, position: jax.Array) -> jax.Array:
        """Depth in [min_depth, max_depth]; then a layer's tokens are 0 (padding) exactly when the
        layer is at or beyond the depth (tokens[0])."""
        vocab = self.token_vocab
        t = jnp.arange(max(vocab))
        present = (position - 1) % self.max_depth < tokens[0]
        layer_ok = jnp.where(present, (t >= 1) & (t < jnp.asarray(vocab)[position]), t == 0)
        return jnp.where(position == 0, (t >= self.min_depth) & (t <= self.max_depth), layer_ok)

    # --- host side --------------------------------------------------------------------------------
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        depth, ch, kn = self.split(enc)
        if not self.min_depth <= depth <= self.max_depth:
            return [f"depth {depth} outside [{self.min_depth}, {self.max_depth}]"]
        errors = []
        for i in range(self.max_depth):
            if i < depth:
                if not 0 <= ch[i] < len(self.channels):
                    errors.append(f"layer {i}: channel index {ch[i]} out of range "
                                  f"[0, {len(self.channels)}) for channels {self.channels}")
                if not 0 <= kn[i] < len(self.kernels):
                    errors.append(f"layer {i}: kernel index {kn[i]} out of range "
                                  f"[0, {len(self.kernels)}) for kernels {self.kernels}")
            elif ch[i] != PAD or kn[i] != PAD:
                errors.append(f"layer {i} is beyond depth {depth} but not padded with {PAD}")
        return errors

    def size(self) -> int:
        b = self._choices_per_layer
        return sum(b ** L for L in range(self.min_depth, self.max_depth + 1))

    def can_enumerate(self) -> bool:
        return True

    def enumerate(self) -> np.ndarray:
        if self.size() > MAX_ENUMERATE:
            raise NotEnumerableError(f"{self.size():,} networks exceed MAX_ENUMERATE={MAX_ENUMERATE:,}")
        nc, b, d = len(self.channels), self._choices_per_layer, self.max_depth
        blocks = []
        for depth in range(self.min_depth, d + 1):
            codes = np.arange(b ** depth)
            # Mixed radix: layer i's choice is digit i of the code (last layer varies fastest).
            digits = (codes[:, None] // b ** np.arange(depth - 1, -1, -1)[None]) % b
            block = np.full((len(codes), 1 + 2 * d), PAD, np.int32)
            block[:, 0] = depth
            block[:, 1:1 + depth] = digits // len(self.kernels) % nc
            block[:, 1 + d:1 + d + depth] = digits % len(self.kernels)
            blocks.append(block)
        return np.concatenate(blocks)

    def index(self, enc: jax.Array) -> jax.Array:
        b, d = self._choices_per_layer, self.max_depth
        depth, ch, kn = self.split(enc)
        offsets = np.cumsum([0] + [b ** L for L in range(self.min_depth, d + 1)])
        digit = jnp.clip(ch, 0) * len(self.kernels) + jnp.clip(kn, 0)
        power = jnp.asarray(b, jnp.int32) ** jnp.clip(depth - 1 - jnp.arange(d), 0)
        place = jnp.where(jnp.arange(d) < depth, power, 0)
        return (jnp.asarray(offsets)[depth - self.min_depth] + jnp.sum(digit * place)).astype(jnp.int32)

    def pool_positions(self, enc, image_size: int = 32) -> tuple[bool, ...]:
        """Whether each present layer of `enc` is followed by a 2x2 max-pool, for square inputs of
        `image_size` pixels (see the module-level `pool_positions`)."""
        return pool_positions(self.pool_every, len(self.layers(enc)), image_size)

    def action_orders(self) -> tuple[str, ...]:
        """LaNAS §2's two action spaces: "sequential" (per layer: add a layer or stop, then its kernel,
        then its channels; add/stop only where both are possible: from layer `min_depth` on, below
        `max_depth`) and "global" (the depth, then every layer's kernel, then every layer's channels)."""
        return ("sequential", "global")

    def actions(self, enc: np.ndarray, order: str) -> list[int]:
        self.check_order(order)
        depth, ch, kn = self.split(np.asarray(enc))
        depth = int(depth)
        if order == "global":
            return [depth - self.min_depth, *kn[:depth].tolist(), *ch[:depth].tolist()]
        stop, add = 0, 1
        seq = []
        for i in range(depth):
            seq += ([add] if i >= self.min_depth else []) + [int(kn[i]), int(ch[i])]
        return seq + ([stop] if depth < self.max_depth else [])

    def layers(self, enc) -> list[tuple[int, int]]:
        """[(channels, kernel size)] of the present layers."""
        depth, ch, kn = self.split(self.checked(enc))
        return [(self.channels[ch[i]], self.kernels[kn[i]]) for i in range(depth)]

    def graphs(self, enc) -> list[Graph]:
        """The layer chain: image, each conv (and its pooling), the classifier."""
        layers, pools = self.layers(enc), self.pool_positions(enc)
        vertices = [(0, "image", "input")] + [
            (i + 1, f"conv{k}x{k} {c}" + (" + pool" if pool else ""), "node")
            for i, ((c, k), pool) in enumerate(zip(layers, pools))] + [(len(layers) + 1, "classifier", "output")]
        return [Graph("network", vertices, [(i, i + 1, "") for i in range(len(layers) + 1)])]

    def describe(self, enc) -> str:
        layers = ", ".join(f"conv{k}x{k}-{c}" for c, k in self.layers(enc))
        pool = f"pool every {self.pool_every}" if self.pool_every else "no pooling"
        return f"ConvNet depth {len(self.layers(enc))}: {layers} ({pool})"

    def encode(self, layers: list[tuple[int, int]]) -> np.ndarray:
        """Encoding of [(channels, kernel size)] per layer, e.g. [(32, 3), (64, 5)]."""
        d = self.max_depth
        if not self.min_depth <= len(layers) <= d:
            raise ValueError(f"{len(layers)} layers outside [{self.min_depth}, {d}]")
        enc = np.full((1 + 2 * d,), PAD, np.int32)
        enc[0] = len(layers)
        try:
            for i, (c, k) in enumerate(layers):
                enc[1 + i], enc[1 + d + i] = self.channels.index(c), self.kernels.index(k)
        except (ValueError, IndexError):
            raise ValueError(f"layers {layers} not expressible with channels {self.channels}, "
                             f"kernels {self.kernels}, max depth {d}") from None
        self.validate(enc)
        return enc
