"""One way to get a network from a search space: `build`, `supernet`, `arch_data`, `param_count`.

A space (`nasjax.spaces`) only knows encodings. The networks of a space type are registered here by
that space's network module (`nasjax/nn/<space>.py`), with `register(SpaceType, Networks(...))`, so
nothing dispatches on concrete space classes elsewhere:

  build(space, enc, **options) -> Flax module of the network `enc` denotes, its choices built in
      (stand-alone; FLOPs are counted on it). Options are keywords of the space's builder: always
      `num_classes` (image classes, or a language model's vocabulary), then its own (sizes, dropout,
      DARTS' protocol: auxiliary, drop_path_rate); an option the builder does not take is a
      ValueError naming it. Defaults are the builder's (10 classes for images).
  supernet(space, **options) -> one Flax module for every architecture of `space`,
      the architecture given as data: `module.apply(variables, x, arch_data(space, enc), train=...)`.
      Equal modules share one compiled program. ValueError for a space without one (`has_supernet`).
  arch_data(space, enc) -> the pytree of arrays the supernet takes for `enc` (jittable, vmappable).
  param_count(space, enc, params) -> parameters of the network `enc` denotes among `params`, a tree
      of its supernet (or of `build(space, enc)`: default, every leaf).
  example_input(space, module) -> the abstract arguments of one example that `module.init(key, *args)`
      takes: one CIFAR image unless the space's networks read something else (`reads_images`).

Registrations are looked up along the space class's MRO, so a subclass inherits its parent's networks.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from nasjax.data.cifar10 import IMAGE_SHAPE


@dataclasses.dataclass(frozen=True)
class Networks:
    """How the networks of one space type are made (the functions take the space first).

    build(space, enc, *, num_classes, **options) -> module, choices built in;
    supernet(space, *, num_classes, **options) -> module(x, arch, train=...), or None (no weight sharing);
    arch_data(space, enc) -> arch, jittable (required with supernet);
    param_count(space, enc, params) -> int, or None: every leaf of `params` counts;
    example_input(module) -> the abstract arguments (jax.ShapeDtypeStruct) of one example that
    `module.init(key, *args)` takes, for networks that do not read images; None: one CIFAR image."""

    build: Callable[..., Any]
    supernet: Callable[..., Any] | None = None
    arch_data: Callable[..., Any] | None = None
    param_count: Callable[..., int] | None = None
    example_input: Callable[..., tuple] | None = None

    def __post_init__(self):
        if (self.supernet is None) != (self.arch_data is None):
            raise ValueError("Networks: supernet and arch_data come together (the supernet takes the "
                             "architecture as arch_data)")


_REGISTRY: dict[type, Networks] = {}


def register(space_type: type, networks: Networks) -> None:
    """Make `networks` the way to build networks of `space_type` (and its subclasses)."""
    if not isinstance(space_type, type):
        raise ValueError(f"register needs a space class, got {space_type!r}")
    _REGISTRY[space_type] = networks


def networks(space) -> Networks:
    """The registered `Networks` of `space`'s class (or the nearest registered base class)."""
    for cls in type(space).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    raise ValueError(f"no networks registered for {type(space).__name__}; a space's network module "
                     "registers them with nasjax.nn.register")


def _check_options(fn: Callable, space, options: dict, fixed: int) -> None:
    """ValueError naming every option `fn` (after its `fixed` positional arguments) does not take."""
    params = list(inspect.signature(fn).parameters.values())[fixed:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{type(space).__name__}'s networks take no option {', '.join(map(repr, unknown))}; "
                         f"options: {', '.join(known) or 'none'}")


def build(space, enc, /, **options):
    """The network `enc` denotes, as a Flax module with its choices built in (module docstring)."""
    fn = networks(space).build
    _check_options(fn, space, options, fixed=2)
    return fn(space, enc, **options)


def has_supernet(space) -> bool:
    """Whether `space` has a weight-sharing network taking the architecture as data."""
    return networks(space).supernet is not None


def supernet(space, /, **options):
    """One module for every architecture of `space`, called as module(x, arch_data(space, enc), ...)."""
    fn = networks(space).supernet
    if fn is None:
        raise ValueError(f"{type(space).__name__} has no weight-sharing supernet")
    _check_options(fn, space, options, fixed=1)
    return fn(space, **options)


def arch_data(space, enc):
    """The arrays `supernet(space)` takes for `enc` (jittable: no validation here)."""
    fn = networks(space).arch_data
    if fn is None:
        raise ValueError(f"{type(space).__name__} has no weight-sharing supernet")
    return fn(space, enc)


def param_count(space, enc, params) -> int:
    """Parameters of the network `enc` denotes among `params` (module docstring)."""
    fn = networks(space).param_count
    if fn is None:
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
    return fn(space, enc, params)


def reads_images(space) -> bool:
    """Whether `space`'s networks read images (B, 32, 32, 3); a language model reads tokens."""
    return networks(space).example_input is None


def example_input(space, module) -> tuple:
    """The abstract arguments of one example that `module.init(key, *args)` takes (`Networks`)."""
    fn = networks(space).example_input
    return (jax.ShapeDtypeStruct((1, *IMAGE_SHAPE), jnp.float32),) if fn is None else fn(module)
