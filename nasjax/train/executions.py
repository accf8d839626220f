"""How a population's epochs run: one small protocol, four executions, chosen once per backend.

An execution groups the architectures that share compiled programs (`group`), gives each its
TrainState and runtime arrays (`init`, `extra`), and trains or evaluates a group (`epoch`,
`evaluator`); `supports(space)` says whether it can run a space's networks at all. Arch i's bits do
not depend on its group-mates. The executions:
  PerArch:  a whole-network program per network module, compiled once and cached (the only choice for
            cell spaces). A space with a supernet (DARTS) gives every architecture the same module,
            the architecture as data, so all share one program;
  Layered:  plain ConvNets unit by unit (`layered.py`): one compiled program per layer *shape*, shared
            by every architecture, so new architectures compile almost nothing (the CPU choice:
            `experiments/perf_population.py` measures it against the others);
  Masked:   a Python loop over architectures calling the shared masked ConvNet of their depth
            (`nasjax.nn.convnet`: max-shape layers, so it pays max-shape FLOPs);
  Sharded:  the population axis of each depth's masked program sharded over a Mesh's 'pop' axis with
            shard_map, lax.map over local architectures on CPU, vmap on GPU/TPU.
`choose` takes the first execution supporting the space of the backend's order: Sharded then PerArch
on accelerators or with a mesh, Layered then PerArch on CPU. PerArch and Layered keep true-size
parameters, so either can continue the other's population (`shared` is False for both).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Hashable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import nasjax.nn
from nasjax.nn import convnet, ops
from nasjax.train import layered, masked, steps
from nasjax.train.optim import make_optimizer
from nasjax.train.protocol import TrainConfig
from nasjax.train.state import TrainState, create_state


def trainable(space, enc, config: TrainConfig, num_classes: int):
    """(module, extra) that trains `enc` under `config`'s protocol, called as module(x, *extra, train=...):
    the space's supernet with the architecture as data where it has one (every architecture then shares
    one module and one compiled program), else its network. Protocol switches that are off are not
    passed (networks without an auxiliary head or drop-path take no such option)."""
    protocol = {name: value for name, value in (("auxiliary", config.auxiliary_weight > 0),
                                                 ("drop_path_rate", config.drop_path)) if value}
    if nasjax.nn.has_supernet(space):
        return (nasjax.nn.supernet(space, num_classes=num_classes, **protocol),
                (nasjax.nn.arch_data(space, space.checked(enc)),))
    return nasjax.nn.build(space, enc, num_classes=num_classes, **protocol), ()


class Execution(Protocol):
    """One way to run a population's training (module docstring). `shared`: parameters in masked
    (max) shapes. Evaluators map (state, extra, images, labels) to an accuracy scalar."""

    shared: bool

    def supports(self, space) -> bool: ...

    def group(self, space, enc, config: TrainConfig, num_classes: int) -> Hashable: ...

    def extra(self, space, enc, config: TrainConfig, num_classes: int) -> tuple: ...

    def epoch(self, space, config: TrainConfig, group, num_classes: int, steps_per_epoch: int, states: list,
              extras: list, data_keys, epoch: int, images, labels) -> tuple[list, list]: ...

    def evaluator(self, space, config: TrainConfig, group, num_classes: int): ...


# --- initial states (every execution) -------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _init_fn(module):
    """Jitted init of `module` (rngs, x, extra) -> variables, one program per module. (Eager init of a
    cell network dispatches thousands of small ops: ~20 s for a tiny DARTS net.) x is an argument, not
    a constant XLA would fold the network's first layers on."""
    return jax.jit(lambda rngs, x, extra: module.init(rngs, x, *extra, train=False))


def init(execution: Execution, space, enc, config: TrainConfig, key, num_classes: int, tx,
         image_shape: tuple[int, int, int]) -> TrainState:
    """TrainState of one architecture (masked shapes when `execution.shared`)."""
    k_init, k_drop, k_rng = jax.random.split(key, 3)
    if layered.supports(space):  # no per-architecture init program (seconds of compilation each)
        variables = {"params": layered.init_params(space, enc, k_init, num_classes)}
    else:
        module, extra = trainable(space, enc, config, num_classes)
        variables = _init_fn(module)({"params": k_init, "dropout": k_drop}, jnp.zeros((1, *image_shape)),
                                     tuple(jnp.asarray(e) for e in extra))
    if execution.shared:
        variables = masked.embed(space, enc, variables, num_classes)
    return create_state(variables, tx, k_rng)


# --- whole-network programs (cached per module, config, data size) ---------------------------------
@functools.lru_cache(maxsize=None)
def _epoch_fn(module, config: TrainConfig, steps_per_epoch: int):
    tx = make_optimizer(config, steps_per_epoch)
    return jax.jit(functools.partial(steps.train_epoch, steps.module_apply(module), tx, config),
                   compiler_options=ops.compiler_options())


@functools.lru_cache(maxsize=None)
def _eval_fn(module, config: TrainConfig):
    accuracy = jax.jit(functools.partial(steps.accuracy, steps.module_apply(module)), static_argnums=4,
                       compiler_options=ops.compiler_options())
    return lambda state, extra, images, labels: accuracy(state, extra, images, labels, config.eval_batch_size)


class _OneByOne:
    """An execution that trains a group's architectures one after the other with the group's one-arch
    epoch function, `epoch_fn(...)(state, extra, data_key, epoch, images, labels) -> (state, losses)`."""

    def epoch(self, space, config, group, num_classes, steps_per_epoch, states, extras, data_keys, epoch,
              images, labels):
        fn = self.epoch_fn(space, config, group, num_classes, steps_per_epoch)
        out = [fn(s, e, d, epoch, images, labels) for s, e, d in zip(states, extras, data_keys)]
        return [o[0] for o in out], [o[1] for o in out]


class _WholeNetwork(_OneByOne):
    """A one-by-one execution whose group stands for one whole-network module, `module(space, group,
    num_classes)`, trained and evaluated by the programs cached per module."""

    def epoch_fn(self, space, config, group, num_classes, steps_per_epoch):
        return _epoch_fn(self.module(space, group, num_classes), config, steps_per_epoch)

    def evaluator(self, space, config, group, num_classes):
        return _eval_fn(self.module(space, group, num_classes), config)


@dataclasses.dataclass(frozen=True)
class PerArch(_WholeNetwork):
    """Groups are the network modules themselves."""

    shared = False

    def supports(self, space) -> bool:
        return True

    def group(self, space, enc, config, num_classes):
        return trainable(space, enc, config, num_classes)[0]

    def extra(self, space, enc, config, num_classes):
        return tuple(jnp.asarray(e) for e in trainable(space, enc, config, num_classes)[1])

    def module(self, space, group, num_classes):
        return group


@dataclasses.dataclass(frozen=True)
class Layered(_OneByOne):
    """Groups are encodings (tuples); the unit programs are shared through jit's shape cache."""

    shared = False

    def supports(self, space) -> bool:
        return layered.supports(space)

    def group(self, space, enc, config, num_classes):
        return tuple(np.asarray(enc).ravel().tolist())

    def extra(self, space, enc, config, num_classes):
        return ()

    def _plan(self, space, group):
        return layered.plan(space, np.asarray(group, np.int32).reshape(space.encoding_shape))

    def epoch_fn(self, space, config, group, num_classes, steps_per_epoch):
        return functools.partial(layered.train_epoch, self._plan(space, group), config)

    def evaluator(self, space, config, group, num_classes):
        """Batches of the training batch size: the forward units are then the training step's programs
        (no compilation), and the last batch pads fewer than batch_size images (3,558 evaluation
        images: 26 at 128, 942 at the default eval_batch_size 500)."""
        return functools.partial(layered.accuracy, self._plan(space, group), batch_size=config.batch_size)


@dataclasses.dataclass(frozen=True)
class Masked(_WholeNetwork):
    """Groups are depths; one masked ConvNet program per depth, a Python loop over the architectures."""

    shared = True

    def supports(self, space) -> bool:
        return convnet.is_convnet_space(space)

    def group(self, space, enc, config, num_classes):
        return int(enc[0])

    def extra(self, space, enc, config, num_classes):
        return tuple(jnp.asarray(m) for m in convnet.masks(space, enc))

    def module(self, space, group, num_classes):
        return convnet.masked(space, group, num_classes)


@functools.lru_cache(maxsize=None)
def _sharded_epoch_fn(module, config: TrainConfig, steps_per_epoch: int, mesh: Mesh):
    tx = make_optimizer(config, steps_per_epoch)
    one = functools.partial(steps.train_epoch, steps.module_apply(module), tx, config)
    accelerated = mesh.devices.flat[0].platform != "cpu"

    def local(states, extras, data_keys, epoch, images, labels):
        f = lambda s, e, d: one(s, e, d, epoch, images, labels)  # noqa: E731
        if accelerated:
            return jax.vmap(f)(states, extras, data_keys)
        return jax.lax.map(lambda a: f(*a), (states, extras, data_keys))

    pop = P("pop")
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(pop, pop, pop, P(), P(), P()),
                                 out_specs=(pop, pop), check_vma=False),
                   compiler_options=ops.compiler_options(mesh.devices.flat[0].platform))


def _to_host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


@dataclasses.dataclass(frozen=True)
class Sharded(Masked):
    """`Masked`'s programs with the population axis sharded over `mesh`'s 'pop' axis."""

    mesh: Mesh | None = None

    def epoch(self, space, config, group, num_classes, steps_per_epoch, states, extras, data_keys, epoch,
              images, labels):
        """Stack, pad to a multiple of the mesh size (repeating the last arch), run, unstack."""
        n, size = len(states), self.mesh.devices.size
        take = list(range(n)) + [n - 1] * (-n % size)
        stack = lambda xs: jax.tree.map(lambda *l: np.stack(l), *[xs[t] for t in take])  # noqa: E731
        shard = NamedSharding(self.mesh, P("pop"))
        args = [jax.device_put(stack(x), shard) for x in (states, extras, list(data_keys))]
        fn = _sharded_epoch_fn(self.module(space, group, num_classes), config, steps_per_epoch, self.mesh)
        new, losses = fn(*args, epoch, images, labels)
        new, losses = _to_host(new), np.asarray(losses)
        return [jax.tree.map(lambda a: a[j], new) for j in range(n)], list(losses[:n])


EXECUTIONS = ("auto", "per_arch", "layered", "loop", "sharded")


def choose(name: str, space, mesh: Mesh | None = None) -> Execution:
    """The execution called `name` (one of EXECUTIONS) for `space`; "auto" picks by backend (module
    docstring). ValueError when the named one cannot run the space's networks."""
    if name not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {name!r}")
    if name == "auto":
        accelerated = mesh is not None or jax.default_backend() != "cpu"
        order = ("sharded", "per_arch") if accelerated else ("layered", "per_arch")
        name = next(n for n in order if _make(n, mesh).supports(space))
    execution = _make(name, mesh)
    if not execution.supports(space):
        raise ValueError(f"execution {name!r} cannot run the networks of {space}")
    return execution


def _make(name: str, mesh: Mesh | None) -> Execution:
    if name == "sharded":
        return Sharded(mesh if mesh is not None else Mesh(np.array(jax.devices()), ("pop",)))
    return {"per_arch": PerArch, "layered": Layered, "loop": Masked}[name]()
