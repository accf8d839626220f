"""`run`: the host loop for expensive objectives (training, tabular benchmarks); `scan`: the same
ask/evaluate/tell rounds as one in-device `lax.scan`, for objectives that are JAX functions (tabular
benchmarks, synthetic scores), jittable and vmappable over keys and hyperparameters.

Each round: ask `batch_size` architectures, evaluate them, tell the scores, append one JSON line per
evaluation to `workdir/evaluations.jsonl`, then atomically replace `workdir/checkpoint.npz` (every
leaf of the state pytree plus the run's metadata) and the readable sidecar `workdir/run.json`.

Resuming from `workdir` reproduces an uninterrupted run bit for bit: the state comes back exactly
(PRNG keys via `jax.random.key_data` / `wrap_key_data`), round r's objective key is
`fold_in(objective_key, r)` (no key state outside the strategy), and the JSONL is cut back to the
checkpoint's evaluations, so a crash between the log write and the checkpoint loses and duplicates
nothing (the cut rounds are redone, with the same results).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import pathlib
import time
import warnings
import zipfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nasjax.io import CorruptFileError, append_jsonl, atomic_write, read_jsonl
from nasjax.search.base import Strategy

CHECKPOINT, SIDECAR, LOG = "checkpoint.npz", "run.json", "evaluations.jsonl"


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The final state; the best architecture (int32 (*enc)) and score (-inf if every evaluation
    failed; for multi-fidelity strategies, the best at the highest budget evaluated, which is also
    what `target` is compared with); every evaluation in order: encodings int32 (E, *enc), scores float32 (E,), budgets
    float32 (E,) or None for single-fidelity strategies; rounds; why it stopped ("budget"/"target")."""

    state: Any
    best_encoding: np.ndarray
    best_score: float
    encodings: np.ndarray
    scores: np.ndarray
    budgets: np.ndarray | None
    rounds: int
    stopped: str

    @property
    def evaluations(self) -> int:
        return len(self.scores)


def _check_objective(strategy: Strategy, objective: Callable) -> None:
    """A multi-fidelity strategy's objective must take the budgets as its third argument."""
    try:
        inspect.signature(objective).bind(None, None, None)
    except TypeError:
        raise ValueError(f"{type(strategy).__name__} is a multi-fidelity strategy: the objective must "
                         "take (archs, key, budgets), budgets float32 (n,) in the strategy's "
                         "unit (epochs)") from None
    except ValueError:  # no signature to check (some builtins): it is called with the budgets
        pass


def _config(strategy: Strategy, key: jax.Array, batch_size: int) -> dict:
    """What identifies a run: resuming with anything different is refused."""
    return {"strategy": repr(strategy), "batch_size": batch_size,
            "key": np.asarray(jax.random.key_data(key)).tolist()}


def _save(workdir: pathlib.Path, state, meta: dict) -> None:
    leaves = jax.tree_util.tree_leaves(state)
    arrays, impls = {}, []
    for i, leaf in enumerate(leaves):
        is_key = jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
        impls.append(str(jax.random.key_impl(leaf)) if is_key else None)
        arrays[f"leaf{i}"] = np.asarray(jax.random.key_data(leaf) if is_key else leaf)
    meta = {**meta, "key_impls": impls}
    arrays["meta"] = np.asarray(json.dumps(meta))
    atomic_write(workdir / CHECKPOINT, lambda f: np.savez(f, **arrays))
    readable = {k: v for k, v in meta.items() if k != "key_impls"}
    atomic_write(workdir / SIDECAR, lambda f: f.write(json.dumps(readable, indent=2).encode()))


def _load(workdir: pathlib.Path, template, config: dict) -> tuple[Any, dict]:
    path = workdir / CHECKPOINT
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            saved = [z[f"leaf{i}"] for i in range(len(meta["key_impls"]))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # e.g. truncated
        raise CorruptFileError(f"corrupt checkpoint {path}: {type(e).__name__}: {e}") from None
    if meta["config"] != config:
        diff = {k: (meta["config"].get(k), v) for k, v in config.items() if meta["config"].get(k) != v}
        raise ValueError(f"{workdir} holds a run of a different configuration (saved, requested): "
                         f"{diff}; use a fresh workdir")
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(leaves) != len(saved):
        raise CorruptFileError(f"corrupt checkpoint {path}: {len(saved)} leaves, the state has "
                               f"{len(leaves)}")
    restored = []
    for i, (leaf, arr, impl) in enumerate(zip(leaves, saved, meta["key_impls"])):
        value = jax.random.wrap_key_data(arr, impl=impl) if impl else jnp.asarray(arr)
        if value.shape != leaf.shape or value.dtype != leaf.dtype:
            raise CorruptFileError(f"corrupt checkpoint {path}: leaf {i} is {value.dtype}{value.shape}, "
                                   f"expected {leaf.dtype}{leaf.shape}")
        restored.append(value)
    return jax.tree_util.tree_unflatten(treedef, restored), meta


def _best(state) -> tuple[np.ndarray, float]:
    """The best successful evaluation: for multi-fidelity strategies (a `budgets` field), among
    those at the highest budget evaluated so far, since scores at different budgets do not
    compare. (-inf with nothing successful there.)"""
    history = state.history
    encodings, scores = np.asarray(history.encodings), np.asarray(history.scores)
    considered = (np.arange(len(scores)) < int(history.count)) & np.isfinite(scores)
    budgets = getattr(state, "budgets", None)
    if budgets is not None and int(history.count):
        budgets = np.asarray(budgets)
        considered &= budgets == budgets[:int(history.count)].max()
    ranked = np.where(considered, scores, -np.inf)
    i = int(np.argmax(ranked))
    return encodings[i], float(ranked[i])


def run(strategy: Strategy, objective: Callable, budget: int, key: jax.Array,
        workdir: str | os.PathLike | None = None, batch_size: int = 1, target: float | None = None,
        progress: bool = True) -> SearchResult:
    """Search until `budget` evaluations or until a score >= `target`.

    objective(archs int32 (n, *enc), key) -> scores (n,) (numpy or jax, higher is better, NaN =
    failed), or (scores, records) with one JSON-able dict per architecture added to its log line;
    multi-fidelity strategies (those with `ask_with_budget`, e.g. hyperband) call
    objective(archs, key, budgets float32 (n,)) instead, and refuse an objective without that third
    argument; other strategies never pass one (an objective's own defaults stay in force).
    Single-fidelity strategies refuse a budget above the size of a finite space (the rest would be
    re-evaluations); multi-fidelity ones re-evaluate promoted architectures by design. With
    `workdir`, the run is logged and checkpointed every round and resumes from there (a larger
    `budget` extends a finished run; a smaller one than it holds runs nothing and warns, and the
    result holds every evaluation made).
    """
    for name, value in (("budget", budget), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if budget > strategy.capacity:
        raise ValueError(f"budget {budget} exceeds the strategy's history capacity "
                         f"{strategy.capacity}; construct it with capacity >= budget")
    with_budgets = hasattr(strategy, "ask_with_budget")
    size = strategy.space.size()
    if not with_budgets and size is not None and budget > size:
        raise ValueError(f"budget {budget} exceeds the {size} architectures of the space "
                         f"({type(strategy.space).__name__}): the evaluations past {size} would "
                         "repeat architectures; use budget <= space.size()")
    if with_budgets:
        _check_objective(strategy, objective)
    k_init, k_objective = jax.random.split(key)
    config = _config(strategy, key, batch_size)
    init, ask, tell = _programs(strategy)
    state, done, rounds = init(k_init), 0, 0
    if workdir is not None:
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        if (workdir / CHECKPOINT).exists():
            state, meta = _load(workdir, state, config)
            done, rounds = meta["evaluations"], meta["rounds"]
            if done > budget:
                warnings.warn(f"{workdir} already holds {done} evaluations, more than the budget of "
                              f"{budget}: nothing to run; the result holds all {done}",
                              stacklevel=2)
        read_jsonl(workdir / LOG, keep=done)  # later lines are redone

    _, best = _best(state)
    reached = target is not None and best >= target
    bar = tqdm(total=budget, initial=min(done, budget), disable=not progress,
               desc=type(strategy).__name__)
    while done < budget and not reached:
        n = min(batch_size, budget - done)
        if with_budgets:
            archs, budgets, state = ask(state, n)
        else:
            (archs, state), budgets = ask(state, n), None
        k_round = jax.random.fold_in(k_objective, rounds)
        raw = objective(archs, k_round, budgets) if with_budgets else objective(archs, k_round)
        # An objective may also return one dict per architecture, merged into its log line.
        raw, records = raw if isinstance(raw, tuple) else (raw, [{}] * n)
        scores = np.asarray(raw, np.float32)
        if scores.shape != (n,):
            raise ValueError(f"objective returned scores of shape {scores.shape} for {n} "
                             f"architectures; expected ({n},)")
        state = tell(state, archs, jnp.asarray(scores))
        _, best = _best(state)
        reached = target is not None and best >= target
        if workdir is not None:
            _append_log(workdir / LOG, strategy, archs, scores, budgets, done, rounds, records)
            progress_meta = {"evaluations": done + n, "rounds": rounds + 1, "best_score": best,
                             "stopped": "target" if reached else None}
            _save(workdir, state, {"config": config, **progress_meta})
        done, rounds = done + n, rounds + 1
        bar.update(n)
        bar.set_postfix(best=f"{best:.4g}")
    bar.close()

    count = int(state.history.count)
    best_encoding, best = _best(state)
    budgets = getattr(state, "budgets", None)
    return SearchResult(
        state=state, best_encoding=best_encoding, best_score=best,
        encodings=np.asarray(state.history.encodings[:count]),
        scores=np.asarray(state.history.scores[:count]),
        budgets=None if budgets is None else np.asarray(budgets[:count]),
        rounds=rounds, stopped="target" if reached else "budget")


@functools.lru_cache(maxsize=64)
def _programs(strategy: Strategy):
    """The jitted (init, ask, tell) of `strategy`, made once per strategy: runs one after the other
    (seeds, resumes) compile nothing again."""
    ask = strategy.ask_with_budget if hasattr(strategy, "ask_with_budget") else strategy.ask
    return jax.jit(strategy.init), jax.jit(ask, static_argnums=1), jax.jit(strategy.tell)


def scan(strategy: Strategy, objective: Callable, key: jax.Array, rounds: int, batch: int,
         hparams: dict | None = None, record: Callable | None = None, init: Callable | None = None):
    """`rounds` rounds of ask(batch) / objective / tell as one `jax.lax.scan` -> the final state (and,
    with `record`, the records stacked over rounds).

    The keys are `run`'s: init gets the first half of split(key), round r's objective
    fold_in(second half, r); so a `run` with the same key, batch_size and a budget of rounds * batch
    evaluations asks the same architectures. objective(archs int32 (batch, *enc), key) -> float32
    (batch,) must be traceable; multi-fidelity strategies (`ask_with_budget`) call
    objective(archs, key, budgets float32 (batch,)). `hparams`: the strategy's numeric
    hyperparameters (`Strategy.init`; default its own). `record(before, archs, after)`, called each
    round with the state before the ask, the asked architectures and the state after it (before the
    tell), returns a pytree kept per round. `init(key, hparams) -> state`: how the search starts
    (default `strategy.init`; e.g. `LaNAS.transfer_init` with a source).

    Everything is traced: jit it, and `jax.vmap` over keys (and hparams) runs many searches as one
    program, bit for bit the searches run one by one (tests/test_strategies.py).
    """
    k_init, k_objective = jax.random.split(key)
    with_budgets = hasattr(strategy, "ask_with_budget")
    state = (strategy.init if init is None else init)(k_init, hparams)

    def body(state, r):
        k = jax.random.fold_in(k_objective, r)
        if with_budgets:
            archs, budgets, asked = strategy.ask_with_budget(state, batch)
            scores = objective(archs, k, budgets)
        else:
            archs, asked = strategy.ask(state, batch)
            scores = objective(archs, k)
        out = None if record is None else record(state, archs, asked)
        return strategy.tell(asked, archs, scores), out

    state, records = jax.lax.scan(body, state, jnp.arange(rounds))
    return state if record is None else (state, records)


def _append_log(path: pathlib.Path, strategy: Strategy, archs, scores: np.ndarray, budgets,
                start: int, round_: int, records: list[dict]) -> None:
    now = time.time()
    archs = np.asarray(archs)
    budgets = None if budgets is None else np.asarray(budgets)
    append_jsonl(path, [{
        "index": start + i, "round": round_, "encoding": arch.tolist(),
        "arch_hash": strategy.space.arch_hash(arch),
        "score": float(score) if np.isfinite(score) else None,
        "budget": None if budgets is None else float(budgets[i]), "time": now,
        **record} for i, (arch, score, record) in enumerate(zip(archs, scores, records))])


# The checkpoint format of `run`, for other resumable loops (e.g. supernet training in experiments/):
# save_checkpoint(workdir, pytree, meta) / load_checkpoint(workdir, template pytree, meta["config"]).
save_checkpoint, load_checkpoint = _save, _load
