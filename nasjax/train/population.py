"""`train_population`: train many architectures of one space, resumably, with per-arch failure isolation.

Arch i trains from `arch_key(key, i)` alone (init, data order, augmentation, drop-path), so its result is
the same as training it by itself with that key. Execution:
  "per_arch": a whole-network program per network module, compiled once and cached, Python loop (the
              only choice for cell spaces). A space whose `trainable` takes the architecture as data
              (DARTS) gives every architecture the same module, so all share one program;
  "layered":  plain ConvNets unit by unit (`layered.py`): one compiled program per layer *shape*, shared
              by every architecture, so new architectures compile almost nothing (the CPU choice:
              `experiments/perf_population.py` measures it against the others);
  "loop":     a Python loop over architectures calling the shared masked program of their depth
              (`masked.py`: max-shape layers, so it pays max-shape FLOPs);
  "sharded":  the population axis of each depth bucket of masked programs sharded over a Mesh's 'pop'
              axis with shard_map, lax.map over local architectures on CPU, vmap on GPU/TPU;
  "auto":     "sharded" on accelerators or when a mesh is given; on CPU "layered" where the space
              allows (ConvNets without batch norm), else "per_arch".
"per_arch" and "layered" keep true-size parameters, so either can continue the other's population.
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nasjax.data import normalize
from nasjax.io import atomic_write
import nasjax.nn
from nasjax.nn import cost, ops
from nasjax.spaces.convnet import ConvNetSpace
from nasjax.train import layered, masked, steps
from nasjax.train.protocol import TrainConfig
from nasjax.train.optim import make_optimizer
from nasjax.train.state import create_state

EXECUTIONS = ("auto", "per_arch", "layered", "loop", "sharded")
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ArchResult:
    """Outcome of one architecture; val_acc has one entry per epoch trained so far."""

    arch: np.ndarray
    val_acc: tuple[float, ...]
    final_val_acc: float
    test_acc: float
    params: int
    flops: float  # 2 x multiply-adds of one image's forward pass (`nasjax.nn.cost`)
    wall_time: float  # seconds, this arch's share of all calls so far
    failed: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class PopulationState:
    """Everything needed to continue training: per-arch TrainStates (host numpy) and bookkeeping."""

    config: TrainConfig
    archs: np.ndarray  # (n, *encoding_shape)
    states: tuple  # n TrainStates (masked-shape params when `shared`)
    shared: bool  # ConvNet archs run on the masked program of their depth
    data_keys: np.ndarray  # (n, 2) uint32
    epochs_done: np.ndarray  # (n,) int
    val_acc: np.ndarray  # (n, config.epochs) float, NaN where not trained
    test_acc: np.ndarray  # (n,) float
    failed: np.ndarray  # (n,) bool
    reasons: tuple[str, ...]
    wall_time: np.ndarray  # (n,) float


def arch_key(key: jax.Array, position: int) -> jax.Array:
    """The training key of the architecture at `position` of a population trained with `key`."""
    return jax.random.fold_in(key, position)


# --- networks -------------------------------------------------------------------------------------
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


def _program_id(space, enc, config: TrainConfig, num_classes: int, execution: str) -> tuple:
    """Architectures with the same id share one program: ("depth", d) is a masked ConvNet, ("module", m)
    the whole-network program of module m, ("layered", enc) a ConvNet's chain of per-shape programs."""
    if execution in ("loop", "sharded"):
        return ("depth", int(enc[0]))
    if execution == "layered":
        return ("layered", tuple(np.asarray(enc).ravel().tolist()))
    return ("module", trainable(space, enc, config, num_classes)[0])


def _encoding(space, program_id: tuple) -> np.ndarray:
    return np.asarray(program_id[1], np.int32).reshape(space.encoding_shape)


@functools.lru_cache(maxsize=None)
def _apply(space, config: TrainConfig, program_id: tuple, num_classes: int):
    if program_id[0] == "depth":
        return steps.module_apply(masked.masked_module(space, program_id[1], num_classes))
    return steps.module_apply(program_id[1])


def _extra(space, enc, config: TrainConfig, num_classes: int, shared: bool) -> tuple:
    """The runtime arrays a shared program takes for `enc`: masks, or the space's trainable extras."""
    if shared:
        return tuple(jnp.asarray(m) for m in masked.masks(space, enc))
    return tuple(jnp.asarray(e) for e in trainable(space, enc, config, num_classes)[1])


@functools.lru_cache(maxsize=None)
def _init_fn(module):
    """Jitted init of `module` (rngs, x, extra) -> variables, one program per module. (Eager init of a
    cell network dispatches thousands of small ops: ~20 s for a tiny DARTS net.) x is an argument, not
    a constant XLA would fold the network's first layers on."""
    return jax.jit(lambda rngs, x, extra: module.init(rngs, x, *extra, train=False))


def _init(space, enc, config: TrainConfig, key, num_classes: int, tx, shared: bool,
          image_shape: tuple[int, int, int]):
    """TrainState of one architecture (masked shapes when `shared`)."""
    k_init, k_drop, k_rng = jax.random.split(key, 3)
    if layered.supports(space):  # no per-architecture init program (seconds of compilation each)
        variables = {"params": layered.init_params(space, enc, k_init, num_classes)}
    else:
        module, extra = trainable(space, enc, config, num_classes)
        variables = _init_fn(module)({"params": k_init, "dropout": k_drop}, jnp.zeros((1, *image_shape)),
                                     tuple(jnp.asarray(e) for e in extra))
    if shared:
        variables = masked.embed(space, enc, variables, num_classes)
    return create_state(variables, tx, k_rng)


# --- compiled programs (cached per space, config, program, data size) -----------------------------
@functools.lru_cache(maxsize=None)
def _epoch_fn(space, config: TrainConfig, program_id: tuple, num_classes: int, steps_per_epoch: int):
    if program_id[0] == "layered":
        return functools.partial(layered.train_epoch, layered.plan(space, _encoding(space, program_id)),
                                 config)
    apply = _apply(space, config, program_id, num_classes)
    tx = make_optimizer(config, steps_per_epoch)
    return jax.jit(functools.partial(steps.train_epoch, apply, tx, config),
                   compiler_options=ops.compiler_options())


@functools.lru_cache(maxsize=None)
def _eval_fn(space, config: TrainConfig, program_id: tuple, num_classes: int):
    """accuracy(state, extra, images, labels) -> scalar. The layered engine evaluates in batches of the
    training batch size: its forward units are then the training step's programs (no compilation), and
    its last batch pads fewer than batch_size images (3,558 evaluation images: 26 at 128, 942 at the
    default eval_batch_size 500)."""
    if program_id[0] == "layered":
        return functools.partial(layered.accuracy, layered.plan(space, _encoding(space, program_id)),
                                 batch_size=config.batch_size)
    apply = _apply(space, config, program_id, num_classes)
    accuracy = jax.jit(functools.partial(steps.accuracy, apply), static_argnums=4,
                       compiler_options=ops.compiler_options())
    return lambda state, extra, images, labels: accuracy(state, extra, images, labels, config.eval_batch_size)


@functools.lru_cache(maxsize=None)
def _sharded_epoch_fn(space, config: TrainConfig, program_id: tuple, num_classes: int,
                      steps_per_epoch: int, mesh: Mesh):
    apply = _apply(space, config, program_id, num_classes)
    tx = make_optimizer(config, steps_per_epoch)
    one = functools.partial(steps.train_epoch, apply, tx, config)
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


# --- the engine -------------------------------------------------------------------------------------
def _to_host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def init_population(space, archs, config: TrainConfig, keys, steps_per_epoch: int, shared: bool,
                    num_classes: int = 10, image_shape: tuple[int, int, int] = (32, 32, 3)
                    ) -> tuple[PopulationState, list]:
    """Population state at epoch 0 from one training key per arch, and each arch's (param count, flops)."""
    archs = np.stack([space.checked(a) for a in np.asarray(archs)])
    tx = make_optimizer(config, steps_per_epoch)
    states, data_keys, info = [], [], []
    for i, enc in enumerate(archs):
        k_train, k_data = jax.random.split(keys[i])
        state = _init(space, enc, config, k_train, num_classes, tx, shared, image_shape)
        states.append(_to_host(state))
        data_keys.append(np.asarray(k_data))
        info.append(arch_info(space, enc, config, num_classes, image_shape))
    n = len(archs)
    return PopulationState(config=config, archs=archs, states=tuple(states), shared=shared,
                           data_keys=np.stack(data_keys),
                           epochs_done=np.zeros(n, int), val_acc=np.full((n, config.epochs), np.nan),
                           test_acc=np.full(n, np.nan), failed=np.zeros(n, bool), reasons=("",) * n,
                           wall_time=np.zeros(n)), info


def _check_loss(losses) -> str:
    losses = np.asarray(losses)
    bad = ~np.isfinite(losses)
    return f"non-finite loss {losses[bad][0]} at step {int(np.argmax(bad))} of the epoch" if bad.any() else ""


def train_population(space, archs, data, config: TrainConfig, key: jax.Array | None = None, *,
                     state: PopulationState | None = None, epochs: int | None = None,
                     keys=None, mesh: Mesh | None = None, execution: str = "auto",
                     num_classes: int = 10) -> tuple[list[ArchResult], PopulationState]:
    """Train `archs` (n, *encoding_shape) of `space` on `data` (a nasjax.data.Dataset) up to `epochs`.

    epochs: total epochs trained after this call (default config.epochs); `state` continues an earlier
    call (then archs/key may be None), giving the same bits as one call with the larger budget.
    keys: optional (n, 2) training keys, one per arch, instead of `arch_key(key, i)`; an arch trained
    alone with keys=[arch_key(key, i)] gets the bits it gets at position i of the population.
    Returns one ArchResult per arch and the PopulationState to continue from.
    """
    if key is not None and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)  # states hold raw uint32 keys, so they save as plain arrays
    if execution not in EXECUTIONS:
        raise ValueError(f"execution must be one of {EXECUTIONS}, got {execution!r}")
    target = config.epochs if epochs is None else epochs
    if not 0 <= target <= config.epochs:
        raise ValueError(f"epochs={target} outside [0, config.epochs={config.epochs}]")
    n_train = len(data.train_labels)
    if n_train < config.batch_size:
        raise ValueError(f"{n_train} training images < batch_size {config.batch_size}")
    spe = n_train // config.batch_size
    image_shape = tuple(data.train_images.shape[1:])
    if execution == "auto":
        if mesh is not None or jax.default_backend() != "cpu":
            execution = "sharded"
        else:
            execution = "layered" if layered.supports(space) else "per_arch"
    if execution == "layered" and not layered.supports(space):
        raise ValueError(f"execution 'layered' runs plain ConvNets without batch norm, not {space}")
    if not isinstance(space, ConvNetSpace):
        execution = "per_arch"  # no shared program: each architecture is its own
    if execution == "sharded" and mesh is None:
        mesh = Mesh(np.array(jax.devices()), ("pop",))
    shared = execution in ("loop", "sharded")
    t0 = time.perf_counter()
    if state is None:
        if key is None and keys is None:
            raise ValueError("need a key to start a population (or a state to continue)")
        if keys is None:
            keys = [arch_key(key, i) for i in range(len(archs))]
        if len(keys) != len(archs):
            raise ValueError(f"{len(keys)} keys for {len(archs)} architectures")
        state, info = init_population(space, archs, config, keys, spe, shared, num_classes, image_shape)
    else:
        if state.shared != shared:
            raise ValueError(f"execution {execution!r} cannot continue a population trained with "
                             f"{'masked' if state.shared else 'per-architecture'} programs")
        if state.config != config:
            raise ValueError(f"config differs from the saved population's: {state.config} vs {config}")
        info = [arch_info(space, a, config, num_classes, image_shape) for a in state.archs]
    init_time = time.perf_counter() - t0
    images = jax.device_put(normalize(data.train_images))
    labels = jax.device_put(jnp.asarray(data.train_labels, jnp.int32))
    val = (normalize(data.val_images), jnp.asarray(data.val_labels, jnp.int32))
    test = (normalize(data.test_images), jnp.asarray(data.test_labels, jnp.int32))

    states = list(state.states)
    epochs_done, val_acc = state.epochs_done.copy(), state.val_acc.copy()
    failed, reasons, wall = state.failed.copy(), list(state.reasons), state.wall_time + init_time / len(states)
    test_acc = state.test_acc.copy()
    extras = [_extra(space, a, config, num_classes, shared) for a in state.archs]
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(state.archs):
        groups.setdefault(_program_id(space, a, config, num_classes, execution), []).append(i)

    for pid, members in groups.items():  # insertion order: the first architecture's program first
        evaluate = _eval_fn(space, config, pid, num_classes)
        for epoch in range(int(min(epochs_done[members])), target):
            active = [i for i in members if not failed[i] and epochs_done[i] == epoch]
            if not active:
                continue
            t = time.perf_counter()
            if execution == "sharded":
                new, losses = _sharded_epoch(space, config, pid, num_classes, spe, mesh,
                                             [states[i] for i in active], [extras[i] for i in active],
                                             state.data_keys[active], epoch, images, labels)
            else:
                fn = _epoch_fn(space, config, pid, num_classes, spe)
                out = [fn(states[i], extras[i], state.data_keys[i], epoch, images, labels) for i in active]
                new, losses = [o[0] for o in out], [o[1] for o in out]
            for j, i in enumerate(active):
                reason = _check_loss(losses[j])
                if reason:
                    failed[i], reasons[i] = True, f"epoch {epoch}: {reason}"
                    continue
                states[i] = _to_host(new[j])
                val_acc[i, epoch] = float(evaluate(states[i], extras[i], *val))
                epochs_done[i] = epoch + 1
            wall[active] += (time.perf_counter() - t) / len(active)
        for i in members:
            if not failed[i] and epochs_done[i] > 0:
                test_acc[i] = float(evaluate(states[i], extras[i], *test))

    new_state = dataclasses.replace(state, states=tuple(states), epochs_done=epochs_done, val_acc=val_acc,
                                    test_acc=test_acc, failed=failed, reasons=tuple(reasons), wall_time=wall)
    return results(new_state, info), new_state


def _sharded_epoch(space, config, pid, num_classes, spe, mesh, states, extras, data_keys, epoch,
                   images, labels):
    """Stack, pad to a multiple of the mesh size (repeating the last arch), run, unstack."""
    n, size = len(states), mesh.devices.size
    pad = -n % size
    take = list(range(n)) + [n - 1] * pad
    stack = lambda xs: jax.tree.map(lambda *l: np.stack(l), *[xs[t] for t in take])  # noqa: E731
    shard = NamedSharding(mesh, P("pop"))
    args = [jax.device_put(stack(x), shard) for x in (states, extras, list(data_keys))]
    fn = _sharded_epoch_fn(space, config, pid, num_classes, spe, mesh)
    new, losses = fn(*args, epoch, images, labels)
    new, losses = _to_host(new), np.asarray(losses)
    return [jax.tree.map(lambda a: a[j], new) for j in range(n)], list(losses[:n])


def arch_info(space, enc, config: TrainConfig, num_classes: int = 10,
              image_shape: tuple[int, int, int] = (32, 32, 3)) -> tuple[int, float]:
    """(parameter count of the network `enc` denotes, forward FLOPs of one image of `image_shape`, see
    `nasjax.nn.cost`), from shapes only."""
    module, extra = trainable(space, enc, config, num_classes)
    zero = jax.random.PRNGKey(0)
    x = jnp.zeros((1, *image_shape))
    shapes = jax.eval_shape(lambda: module.init({"params": zero, "dropout": zero}, x, *extra))
    # FLOPs of the network `enc` alone: its own module, the choices built in.
    network = nasjax.nn.build(space, enc, num_classes=num_classes)
    return nasjax.nn.param_count(space, enc, shapes["params"]), cost.forward_flops(
        network, jax.eval_shape(lambda: network.init(zero, x)), image_shape)


def results(state: PopulationState, info) -> list[ArchResult]:
    """One ArchResult per arch of a population state; info: (param count, flops) per arch."""
    out = []
    for i, a in enumerate(state.archs):
        accs = tuple(float(v) for v in state.val_acc[i, :state.epochs_done[i]])
        out.append(ArchResult(arch=a, val_acc=accs, final_val_acc=accs[-1] if accs else float("nan"),
                              test_acc=float(state.test_acc[i]), params=info[i][0], flops=info[i][1],
                              wall_time=float(state.wall_time[i]), failed=bool(state.failed[i]),
                              reason=state.reasons[i]))
    return out


def save_population(path, state: PopulationState) -> None:
    """Write a population state (host numpy pytrees) to `path`, atomically; `load_population` reads
    it back."""
    atomic_write(path, lambda f: pickle.dump({"format": FORMAT_VERSION, "state": state}, f))


def load_population(path) -> PopulationState:
    with open(path, "rb") as f:
        blob = pickle.load(f)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a nasjax population state (format {FORMAT_VERSION})")
    return blob["state"]


def select(state: PopulationState, indices) -> PopulationState:
    """The population of the architectures at `indices` only (e.g. successive halving's survivors);
    continuing it gives each of them the same bits as continuing the whole population."""
    idx = np.asarray(indices, int)
    return dataclasses.replace(state, archs=state.archs[idx], states=tuple(state.states[i] for i in idx),
                               data_keys=state.data_keys[idx], epochs_done=state.epochs_done[idx],
                               val_acc=state.val_acc[idx], test_acc=state.test_acc[idx],
                               failed=state.failed[idx], reasons=tuple(state.reasons[i] for i in idx),
                               wall_time=state.wall_time[idx])
