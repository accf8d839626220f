"""The search-space protocol every space implements, and the optional views some spaces add.

An architecture is a fixed-shape integer array (its *encoding*), so that sampling, mutation, validity
checks and features can be `jit`-ed and `vmap`-ed, and a strategy can keep a fixed-capacity history.
A space object holds only static configuration: it is a frozen, hashable dataclass usable as a
`static_argnames` argument. A space knows encodings only; its networks are built by `nasjax.nn`.

Conventions (shapes for one architecture; batch with `jax.vmap`):
  encoding          int32 `space.encoding_shape`
  sample(key, n)    -> int32 (n, *encoding_shape), uniform over valid architectures (n a static int >= 0;
                       a space implements `_sample`)
  is_valid(enc)     -> bool scalar (jittable)
  validate(enc)     -> None, raises `InvalidEncodingError` naming what is wrong (host side)
  size()            -> int number of valid architectures (None if not finite/known)
  enumerate()       -> int32 (size, *encoding_shape), every valid architecture once
  index(enc)        -> int32 position of `enc` in `enumerate()` (jittable; enumerable spaces only)
  mutate(key, enc)  -> a valid one-edit neighbour of `enc`, different from it (jittable)
  neighbors(enc)    -> (int32 (M, *encoding_shape), bool (M,)): every one-edit neighbour; rows whose
                       mask is False are padding (M is static, so it jits)
  features(enc)     -> float32 (num_features,), numeric vector for linear models (LaNAS)
  arch_hash(enc)    -> str, equal for encodings that denote the same network (host side; validates)
  describe(enc)     -> str, human-readable

Optional views, each a small protocol a space class adds as a base (test with isinstance):
`ActionOrders`, hand-designed action spaces for MCTS (host side):
  action_orders()   -> names of the orders;  actions(enc, order) -> the decisions building `enc`
`TokenView`, for sequence models (NAO / RNAS encoder-decoders):
  token_vocab       -> tuple (L,) of vocabulary sizes, one per token position
  to_tokens(enc)    -> int32 (L,), token t in [0, token_vocab[t]) (jittable)
  from_tokens(tok)  -> the encoding (jittable); valid when every token passed `token_mask`, except in
                       spaces whose validity is not a per-position rule (NB-101: connectivity, edges)
  token_mask(tok, t) -> bool (max(token_vocab),): tokens allowed at position t given tok[:t]
  tokens_always_valid -> bool: every sequence passing token_mask decodes to a valid encoding
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Graph(NamedTuple):
    """One panel of an encoding's drawing (`python -m nasjax describe`): vertices (key, label, kind:
    'input' | 'node' | 'output') in topological order, edges (src, dst, label or '')."""

    title: str
    vertices: list
    edges: list


class InvalidEncodingError(ValueError):
    """An encoding does not denote an architecture of the space; the message says why."""


class NotEnumerableError(ValueError):
    """The space is too large (or not finite) to enumerate."""


# Enumerating more than this many architectures as one array is refused (memory, not correctness).
MAX_ENUMERATE = 5_000_000


@dataclasses.dataclass(frozen=True)
class Space(abc.ABC):
    """Base class: static configuration plus pure functions of encodings and keys."""

    # --- static description -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def encoding_shape(self) -> tuple[int, ...]:
        """Shape of one encoding."""

    @property
    @abc.abstractmethod
    def num_features(self) -> int:
        """Length of `features(enc)`."""

    # --- pure, jittable -------------------------------------------------------------------------
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """`n` architectures drawn uniformly from the valid ones: int32 (n, *encoding_shape). `n` is a
        static non-negative int (a ValueError otherwise)."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"{type(self).__name__}.sample: n must be a non-negative int (a static "
                             f"count), got {n!r}")
        return self._sample(key, int(n))

    @abc.abstractmethod
    def _sample(self, key: jax.Array, n: int) -> jax.Array:
        """`sample` for a checked count n >= 0."""

    @abc.abstractmethod
    def is_valid(self, enc: jax.Array) -> jax.Array:
        """Whether `enc` is a valid encoding: bool scalar."""

    def mutate(self, key: jax.Array, enc: jax.Array) -> jax.Array:
        """A valid architecture one edit away from `enc`, uniform over `neighbors(enc)`."""
        nbrs, mask = self.neighbors(enc)
        idx = jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf))
        return nbrs[idx]

    @abc.abstractmethod
    def neighbors(self, enc: jax.Array) -> tuple[jax.Array, jax.Array]:
        """All one-edit neighbours: (int32 (M, *encoding_shape), bool (M,) mask of real rows)."""

    @abc.abstractmethod
    def features(self, enc: jax.Array) -> jax.Array:
        """float32 (num_features,) numeric description for linear models."""

    # --- host side --------------------------------------------------------------------------------
    @abc.abstractmethod
    def validation_errors(self, enc: np.ndarray) -> list[str]:
        """Every problem with one encoding (empty when valid). Shape is already checked."""

    @abc.abstractmethod
    def describe(self, enc: Any) -> str:
        """Human-readable one-line description."""

    def size(self) -> int | None:
        """Number of valid architectures, or None when not finite/known."""
        return None

    def can_enumerate(self) -> bool:
        """Whether `enumerate` and `index` answer (a cell space knows its size but lists no members)."""
        return False

    def enumerate(self) -> np.ndarray:
        """Every valid architecture once: int32 (size, *encoding_shape)."""
        raise NotEnumerableError(f"{type(self).__name__} cannot be enumerated")

    def index(self, enc: jax.Array) -> jax.Array:
        """int32 position of `enc` in `enumerate()` (jittable)."""
        raise NotEnumerableError(f"{type(self).__name__} cannot be enumerated")

    def graphs(self, enc: Any) -> list[Graph]:
        """A valid encoding as the DAGs its papers draw (cells, a layer chain); [] when the space has
        no drawing."""
        return []

    def arch_hash(self, enc: Any) -> str:
        """Identity of the network `enc` denotes (default: its bytes); `InvalidEncodingError` naming
        the problem when `enc` is not one architecture of the space."""
        return hashlib.sha256(self.checked(enc).tobytes()).hexdigest()[:32]

    # --- shared behaviour -------------------------------------------------------------------------
    def validate(self, enc: Any) -> None:
        """Raise `InvalidEncodingError` naming every problem with `enc` (one or a batch)."""
        try:
            arr = np.asarray(enc)
        except ValueError:  # ragged nested lists: numpy cannot make an array of them
            raise InvalidEncodingError(
                f"{type(self).__name__}: encoding is a ragged sequence (rows of different lengths), "
                f"expected shape {tuple(self.encoding_shape)}") from None
        shape = tuple(self.encoding_shape)
        if arr.ndim == len(shape) + 1 and tuple(arr.shape[1:]) == shape:
            for i, row in enumerate(arr):
                try:
                    self.validate(row)
                except InvalidEncodingError as e:
                    raise InvalidEncodingError(f"encoding {i} of the batch: {e}") from None
            return
        if tuple(arr.shape) != shape:
            raise InvalidEncodingError(
                f"{type(self).__name__}: encoding has shape {tuple(arr.shape)}, expected {shape}"
            )
        if not np.issubdtype(arr.dtype, np.integer):
            raise InvalidEncodingError(
                f"{type(self).__name__}: encoding has dtype {arr.dtype}, expected integers"
            )
        errors = self.validation_errors(arr.astype(np.int64))
        if errors:
            raise InvalidEncodingError(f"{type(self).__name__}: " + "; ".join(errors))

    def checked(self, enc: Any) -> np.ndarray:
        """`enc` as an int32 numpy array after `validate` (for host-side builders)."""
        self.validate(enc)
        return np.asarray(enc, np.int32)


class ActionOrders(abc.ABC):
    """Optional view: hand-designed action spaces that build an architecture one decision at a time,
    for MCTS over a fixed action space (`002_*` §2)."""

    @abc.abstractmethod
    def action_orders(self) -> tuple[str, ...]:
        """Names of the action orders `actions` accepts."""

    @abc.abstractmethod
    def actions(self, enc: np.ndarray, order: str) -> list[int]:
        """The decisions (small non-negative ints) building `enc` in `order`, one of
        `action_orders()`. Distinct architectures have distinct sequences, none a prefix of another,
        so the sequences of a space form a tree whose leaves are its architectures (host side)."""

    def check_order(self, order: str) -> None:
        """ValueError unless `order` is one of `action_orders()`."""
        if order not in self.action_orders():
            raise ValueError(f"{type(self).__name__} has no action order {order!r}; it has "
                             f"{list(self.action_orders())}")


class TokenView(abc.ABC):
    """Optional view: an architecture as a token sequence with per-position vocabularies, for sequence
    models (NAO / RNAS encoder-decoders)."""

    @property
    @abc.abstractmethod
    def token_vocab(self) -> tuple[int, ...]:
        """Vocabulary size of each token position of `to_tokens`."""

    @abc.abstractmethod
    def to_tokens(self, enc: jax.Array) -> jax.Array:
        """int32 (len(token_vocab),) token sequence of an encoding (jittable)."""

    @abc.abstractmethod
    def from_tokens(self, tokens: jax.Array) -> jax.Array:
        """The encoding of a token sequence (jittable; inverse of `to_tokens`)."""

    # Whether every token sequence that passes `token_mask` is a valid encoding (then a decoder needs
    # no repair step).
    tokens_always_valid = False  # a class attribute, not a dataclass field

    def token_mask(self, tokens: jax.Array, position: jax.Array) -> jax.Array:
        """bool (max(token_vocab),): the tokens allowed at `position` (traced int) given the earlier
        tokens `tokens[:position]` (later entries are ignored). Default: the position's vocabulary."""
        vocab = self.token_vocab
        return jnp.arange(max(vocab)) < jnp.asarray(vocab)[position]
