"""`nasjax.search.run`: JSONL log, atomic checkpoints, resume to the same bits (in a new process),
budgets passed to multi-fidelity objectives, stopping at budget/target, clear errors; and
`nasjax.search.scan`, the same rounds in one lax.scan."""

import json
import pathlib
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nasjax.search import base, run, scan
from nasjax.spaces import ConvNetSpace

SPACE = ConvNetSpace(channels=(16, 32), kernels=(3, 5), max_depth=3)
BUDGET, BATCH = 24, 4


def objective(archs, key):
    """Depth-weighted encoding sum plus key-dependent noise (so the objective key matters);
    depth-1 networks fail."""
    a = np.asarray(archs)
    noise = np.asarray(jax.random.uniform(key, (len(a),)))
    return np.where(a[:, 0] == 1, np.nan, a.sum(axis=1) + 0.1 * noise)


def make(name="evolution"):
    config = dict(population_size=6, sample_size=2) if name == "evolution" else dict(max_budget=9.0)
    return base.make(name, SPACE, capacity=64, **config)


def log(workdir) -> list[dict]:
    return [json.loads(line) for line in (pathlib.Path(workdir) / "evaluations.jsonl").read_text().splitlines()]


def leaves(state) -> list[np.ndarray]:
    return [np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
            for x in jax.tree_util.tree_leaves(state)]


def resume_in_new_process(workdir, budget) -> None:
    """Finish the run in `workdir` from a fresh interpreter; its final leaves go to workdir/final.npz."""
    code = (f"import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})\n"
            "import jax, numpy as np, test_search_loop as t\n"
            f"r = t.run(t.make(), t.objective, {budget}, jax.random.key(7), {str(workdir)!r}, "
            f"batch_size={BATCH}, progress=False)\n"
            f"np.savez({str(pathlib.Path(workdir) / 'final.npz')!r}, *t.leaves(r.state))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    return workdir, run(make(), objective, BUDGET, jax.random.key(7), workdir, batch_size=BATCH,
                        progress=False)


def test_log_has_one_line_per_evaluation(uninterrupted):
    workdir, result = uninterrupted
    lines = log(workdir)
    assert [r["index"] for r in lines] == list(range(BUDGET))
    assert [r["round"] for r in lines] == [i // BATCH for i in range(BUDGET)]
    np.testing.assert_array_equal([r["encoding"] for r in lines], result.encodings)
    logged = np.asarray([np.nan if r["score"] is None else r["score"] for r in lines], np.float32)
    np.testing.assert_array_equal(logged, result.scores)
    assert np.isnan(result.scores).any() and np.isfinite(result.best_score)
    assert result.best_score == np.nanmax(result.scores)
    assert all(r["arch_hash"] == SPACE.arch_hash(r["encoding"]) for r in lines)
    sidecar = json.loads((workdir / "run.json").read_text())
    assert sidecar["evaluations"] == BUDGET and "strategy" in sidecar["config"]


@pytest.mark.parametrize("damage", ["none", "log_ahead_of_checkpoint"])
def test_kill_and_resume_in_a_new_process_gives_the_same_bits(tmp_path, uninterrupted, damage):
    full_dir, full = uninterrupted
    run(make(), objective, BUDGET // 2, jax.random.key(7), tmp_path, batch_size=BATCH, progress=False)
    if damage == "log_ahead_of_checkpoint":  # a crash after the log write, before the checkpoint
        with open(tmp_path / "evaluations.jsonl", "a") as f:
            f.write(json.dumps({"index": BUDGET // 2, "score": 1e9}) + "\n" + '{"index": 13, "sco')
    resume_in_new_process(tmp_path, BUDGET)
    resumed, expected = log(tmp_path), log(full_dir)
    assert len(resumed) == BUDGET
    for key in ("index", "round", "encoding", "score", "arch_hash"):
        assert [r[key] for r in resumed] == [r[key] for r in expected]
    with np.load(tmp_path / "final.npz") as z:
        got = [z[f"arr_{i}"] for i in range(len(z.files))]
    want = leaves(full.state)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_budgets_reach_objectives_that_take_them(tmp_path):
    seen = []

    def fidelity(archs, key, budgets):
        seen.append(np.asarray(budgets))
        return objective(archs, key) - 10.0 * np.asarray(budgets)  # small budgets score higher

    result = run(make("successive_halving"), fidelity, 13, jax.random.key(1), tmp_path,
                 batch_size=9, progress=False)
    np.testing.assert_array_equal(np.concatenate(seen), [1.0] * 9 + [3.0] * 3 + [1.0])  # 4th: a filler
    np.testing.assert_array_equal(result.budgets, np.concatenate(seen))
    assert [r["budget"] for r in log(tmp_path)] == np.concatenate(seen).tolist()
    # The best score is the best at the highest budget evaluated, not a cheaper evaluation's.
    top = result.budgets == 3.0
    assert result.best_score == np.nanmax(result.scores[top]) < np.nanmax(result.scores)
    i = int(np.flatnonzero(top)[np.nanargmax(result.scores[top])])
    np.testing.assert_array_equal(result.best_encoding, result.encodings[i])


def test_single_fidelity_objectives_get_no_budget_argument():
    """Only multi-fidelity strategies pass budgets: an objective's own default stays in force."""
    seen = []

    def with_default(archs, key, epochs=10):
        seen.append(epochs)
        return objective(archs, key)

    run(make(), with_default, 2, jax.random.key(0), batch_size=2, progress=False)
    assert seen == [10]


def test_stops_at_target(tmp_path):
    result = run(make(), objective, BUDGET, jax.random.key(7), None, batch_size=2, target=-1e30,
                 progress=False)
    assert result.stopped == "target" and result.evaluations == 2 and result.rounds == 1


def test_clear_errors(tmp_path):
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="budget must be an integer >= 1"):
            run(make(), objective, bad, jax.random.key(0))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        run(make(), objective, 4, jax.random.key(0), batch_size=1.5)
    with pytest.raises(ValueError, match="exceeds the strategy's history capacity"):
        run(make(), objective, 65, jax.random.key(0))
    with pytest.raises(ValueError, match="budget 85 exceeds the 84 architectures of the space"):
        run(base.make("random", SPACE, capacity=100), objective, 85, jax.random.key(0))
    with pytest.raises(ValueError, match="multi-fidelity strategy: the objective must take"):
        run(make("successive_halving"), objective, 4, jax.random.key(0))
    run(make(), objective, 2, jax.random.key(0), tmp_path, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        run(make(), objective, 4, jax.random.key(1), tmp_path, batch_size=2, progress=False)
    with pytest.raises(ValueError, match=r"shape \(1,\) for 2"):
        run(make(), lambda a, k: np.zeros(1), 2, jax.random.key(0), progress=False, batch_size=2)


@pytest.mark.parametrize("bad, message", [
    (dict(capacity=0), "capacity must be an integer >= 1"),
    (dict(capacity=-3), "capacity must be an integer >= 1"),
    (dict(capacity=2.5), "capacity must be an integer >= 1"),
    (dict(space=None), "space must be a nasjax Space"),
])
@pytest.mark.parametrize("name", ["evolution", "lanas", "hyperband"])
def test_make_refuses_bad_space_and_capacity(name, bad, message):
    config = {"space": SPACE, "capacity": 8, **bad}
    with pytest.raises(ValueError, match=message):
        base.make(name, config.pop("space"), **config)


def test_a_smaller_budget_than_the_workdir_holds_warns_and_returns_everything(tmp_path):
    run(make(), objective, 6, jax.random.key(0), tmp_path, batch_size=2, progress=False)
    with pytest.warns(UserWarning, match="already holds 6 evaluations, more than the budget of 3"):
        result = run(make(), objective, 3, jax.random.key(0), tmp_path, batch_size=2, progress=False)
    assert result.evaluations == 6 and len(log(tmp_path)) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same budget: nothing to say
        run(make(), objective, 6, jax.random.key(0), tmp_path, batch_size=2, progress=False)


def jax_objective(archs, key):
    """Like `objective`, in JAX (traceable for `scan`), without failures; exact arithmetic (noise in
    eighths), so the scores have the same bits compiled in a scan or run op by op."""
    noise = jax.random.randint(key, (archs.shape[0],), 0, 8).astype(jnp.float32) * 0.125
    return archs.sum(axis=1).astype(jnp.float32) + noise


@pytest.mark.parametrize("name", ["evolution", "successive_halving"])
def test_scan_asks_what_run_asks(name):
    """scan(rounds, batch) == run(budget = rounds * batch, batch_size = batch): same keys, same rows."""
    if name == "successive_halving":
        obj = lambda archs, key, budgets: jax_objective(archs, key) - budgets  # noqa: E731
    else:
        obj = jax_objective
    strat = make(name)
    final = jax.jit(lambda key: scan(strat, obj, key, 6, BATCH))(jax.random.key(3))
    result = run(strat, lambda a, k, *b: np.asarray(obj(a, k, *b)), 6 * BATCH, jax.random.key(3),
                 batch_size=BATCH, progress=False)
    np.testing.assert_array_equal(np.asarray(final.history.encodings[:6 * BATCH]), result.encodings)
    np.testing.assert_array_equal(np.asarray(final.history.scores[:6 * BATCH]), result.scores)
    # The objective's key matters: another key gives other scores.
    other = jax.jit(lambda key: scan(strat, obj, key, 6, BATCH))(jax.random.key(4))
    assert not np.array_equal(np.asarray(other.history.scores), np.asarray(final.history.scores))


def test_scan_records_each_round():
    strat = make()
    seen = lambda before, archs, after: (before.history.count, archs, after.history.count)  # noqa: E731
    final, (before, archs, after) = jax.jit(
        lambda key: scan(strat, jax_objective, key, 3, BATCH, record=seen))(jax.random.key(0))
    np.testing.assert_array_equal(before, [0, 4, 8])
    np.testing.assert_array_equal(after, before)  # recorded after the ask, before the tell
    np.testing.assert_array_equal(np.asarray(archs).reshape(12, -1), np.asarray(final.history.encodings[:12]))


def test_hparams_must_name_the_strategys_hyperparameters():
    strat = base.make("lanas", SPACE, capacity=8)
    assert sorted(strat.default_hparams()) == ["cp", "cp_scale", "ridge"]
    with pytest.raises(ValueError, match=r"hparams must name exactly \['cp', 'cp_scale', 'ridge'\]"):
        strat.init(jax.random.key(0), {"cp": 1.0})
    state = strat.init(jax.random.key(0), {"cp": 1.0, "cp_scale": 0.0, "ridge": 0.5})
    assert float(state.hparams["cp"]) == 1.0 and state.hparams["ridge"].dtype == jnp.float32
