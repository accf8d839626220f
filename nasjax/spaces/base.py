"""The search-space protocol every space implements.

An architecture is a fixed-shape integer array (its *encoding*), so that sampling, mutation, validity
checks and features can be `jit`-ed and `vmap`-ed, and a strategy can keep a fixed-capacity history.
A space object holds only static configuration: it is a frozen, hashable dataclass usable as a
`static_argnames` argument.

Conventions (shapes for one architecture; batch with `jax.vmap`):
  encoding          int32 `space.encoding_shape`
  sample(key, n)    -> int32 (n, *encoding_shape), uniform over valid architectures
  is_valid(enc)     -> bool scalar (jittable)
  validate(enc)     -> None, raises `InvalidEncodingError` naming what is wrong (host side)
  size()            -> int number of valid architectures (None if not finite/known)
  enumerate()       -> int32 (size, *encoding_shape), every valid architecture once
  index(enc)        -> int32 position of `enc` in `enumerate()` (jittable; enumerable spaces only)
  mutate(key, enc)  -> a valid one-edit neighbour of `enc`, different from it (jittable)
  neighbors(enc)    -> (int32 (M, *encoding_shape), bool (M,)): every one-edit neighbour; rows whose
                       mask is False are padding (M is static, so it jits)
  features(enc)     -> float32 (num_features,), numeric vector for linear models (LaNAS)
  arch_hash(enc)    -> str, equal for encodings that denote the same network (host side)
  describe(enc)     -> str, human-readable
  to_module(enc, num_classes, ...) -> a pure Flax Linen module
  trainable(enc, num_classes, auxiliary, drop_path_rate) -> (module, extra): what the training engine
                       trains, called as module(x, *extra, train=...); equal modules share one program
  param_count(enc, params) -> int parameters of the network `enc` denotes among its module's `params`
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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
    @abc.abstractmethod
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """`n` architectures drawn uniformly from the valid ones: int32 (n, *encoding_shape)."""

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

    @abc.abstractmethod
    def to_module(self, enc: Any, num_classes: int = 10, **kwargs):
        """A Flax Linen module computing the network `enc` denotes."""

    def trainable(self, enc: Any, num_classes: int = 10, auxiliary: bool = False,
                  drop_path_rate: float = 0.0) -> tuple[Any, tuple]:
        """(module, extra arrays) the training engine trains for `enc`, calling module(x, *extra,
        train=...). Architectures whose modules are equal share one compiled program: a space that
        passes the architecture as data in `extra` compiles once for all of them. Default: `to_module`
        with no extra (one program per architecture), no auxiliary head or drop-path."""
        if auxiliary or drop_path_rate:
            raise ValueError(f"{type(self).__name__}'s networks have no auxiliary head or drop-path "
                             f"(auxiliary={auxiliary}, drop_path_rate={drop_path_rate})")
        return self.to_module(enc, num_classes), ()

    def param_count(self, enc: Any, params: Any) -> int:
        """Parameters of the network `enc` denotes among `params`, the tree of its `trainable` module
        (default: all of them; a weight-sharing module holds more than one network's)."""
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))

    def size(self) -> int | None:
        """Number of valid architectures, or None when not finite/known."""
        return None

    def enumerate(self) -> np.ndarray:
        """Every valid architecture once: int32 (size, *encoding_shape)."""
        raise NotEnumerableError(f"{type(self).__name__} cannot be enumerated")

    def index(self, enc: jax.Array) -> jax.Array:
        """int32 position of `enc` in `enumerate()` (jittable)."""
        raise NotEnumerableError(f"{type(self).__name__} cannot be enumerated")

    def arch_hash(self, enc: Any) -> str:
        """Identity of the network `enc` denotes (default: its bytes)."""
        return hashlib.sha256(np.asarray(enc, np.int32).tobytes()).hexdigest()[:32]

    # --- shared behaviour -------------------------------------------------------------------------
    def validate(self, enc: Any) -> None:
        """Raise `InvalidEncodingError` naming every problem with `enc` (one or a batch)."""
        arr = np.asarray(enc)
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
