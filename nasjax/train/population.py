"""`train_population`: train many architectures of one space, resumably, with per-arch failure isolation.

Arch i trains from `arch_key(key, i)` alone (init, data order, augmentation, drop-path), so its result is
the same as training it by itself with that key. How the epochs run is an execution
(`nasjax.train.executions`: per architecture, layered, masked, sharded), chosen once per call; the loop
here trains each group of architectures that share programs, epoch by epoch.
"""

from __future__ import annotations

import dataclasses
import pickle
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

import nasjax.nn
from nasjax.data import normalize
from nasjax.io import atomic_write
from nasjax.nn import cost
from nasjax.train import executions
from nasjax.train.executions import Execution
from nasjax.train.optim import evaluation_state, make_optimizer
from nasjax.train.protocol import TrainConfig
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
    shared: bool  # params in the masked shapes of a shared program (`Execution.shared`)
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


def _to_host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def init_population(space, archs, config: TrainConfig, keys, steps_per_epoch: int, execution: Execution,
                    num_classes: int = 10, image_shape: tuple[int, int, int] = (32, 32, 3)
                    ) -> tuple[PopulationState, list]:
    """Population state at epoch 0 from one training key per arch, for `execution` (its parameter
    shapes), and each arch's (param count, flops)."""
    archs = np.stack([space.checked(a) for a in np.asarray(archs)])
    tx = make_optimizer(config, steps_per_epoch)
    states, data_keys, info = [], [], []
    for i, enc in enumerate(archs):
        k_train, k_data = jax.random.split(keys[i])
        state = executions.init(execution, space, enc, config, k_train, num_classes, tx, image_shape)
        states.append(_to_host(state))
        data_keys.append(np.asarray(k_data))
        info.append(arch_info(space, enc, config, num_classes, image_shape))
    n = len(archs)
    return PopulationState(config=config, archs=archs, states=tuple(states), shared=execution.shared,
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
    engine = executions.choose(execution, space, mesh)
    target = config.epochs if epochs is None else epochs
    if not 0 <= target <= config.epochs:
        raise ValueError(f"epochs={target} outside [0, config.epochs={config.epochs}]")
    n_train = len(data.train_labels)
    if n_train < config.batch_size:
        raise ValueError(f"{n_train} training images < batch_size {config.batch_size}")
    spe = n_train // config.batch_size
    image_shape = tuple(data.train_images.shape[1:])
    t0 = time.perf_counter()
    if state is None:
        if key is None and keys is None:
            raise ValueError("need a key to start a population (or a state to continue)")
        if keys is None:
            keys = [arch_key(key, i) for i in range(len(archs))]
        if len(keys) != len(archs):
            raise ValueError(f"{len(keys)} keys for {len(archs)} architectures")
        state, info = init_population(space, archs, config, keys, spe, engine, num_classes, image_shape)
    else:
        if state.shared != engine.shared:
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
    extras = [engine.extra(space, a, config, num_classes) for a in state.archs]
    groups: dict = {}
    for i, a in enumerate(state.archs):
        groups.setdefault(engine.group(space, a, config, num_classes), []).append(i)

    for group, members in groups.items():  # insertion order: the first architecture's program first
        evaluate = engine.evaluator(space, config, group, num_classes)
        for epoch in range(int(min(epochs_done[members])), target):
            active = [i for i in members if not failed[i] and epochs_done[i] == epoch]
            if not active:
                continue
            t = time.perf_counter()
            new, losses = engine.epoch(space, config, group, num_classes, spe, [states[i] for i in active],
                                       [extras[i] for i in active], state.data_keys[active], epoch,
                                       images, labels)
            for j, i in enumerate(active):
                reason = _check_loss(losses[j])
                if reason:
                    failed[i], reasons[i] = True, f"epoch {epoch}: {reason}"
                    continue
                states[i] = _to_host(new[j])
                val_acc[i, epoch] = float(evaluate(evaluation_state(config, states[i]), extras[i], *val))
                epochs_done[i] = epoch + 1
            wall[active] += (time.perf_counter() - t) / len(active)
        for i in members:
            if not failed[i] and epochs_done[i] > 0:
                test_acc[i] = float(evaluate(evaluation_state(config, states[i]), extras[i], *test))

    new_state = dataclasses.replace(state, states=tuple(states), epochs_done=epochs_done, val_acc=val_acc,
                                    test_acc=test_acc, failed=failed, reasons=tuple(reasons), wall_time=wall)
    return results(new_state, info), new_state


def arch_info(space, enc, config: TrainConfig, num_classes: int = 10,
              image_shape: tuple[int, int, int] = (32, 32, 3)) -> tuple[int, float]:
    """(parameter count of the network `enc` denotes, forward FLOPs of one image of `image_shape`, see
    `nasjax.nn.cost`), from shapes only."""
    module, extra = executions.trainable(space, enc, config, num_classes)
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
