"""Recurrent cells on Penn Treebank: random search with weight sharing vs random search with early
stopping vs LaNAS, at equal cost; resumable.

    python experiments/rnn_ptb.py                       # CPU size (~15 min on a 2-core CPU)
    python experiments/rnn_ptb.py --data-dir ../shared/data --workdir runs/rnn_ptb

Cost is counted in training tokens (one token = one forward + backward step of one model on one
target word): RS-ES runs until it has spent `--budget-chunks` chunks of `--chunk-windows` windows
(bptt x batch tokens each; its last round may pass that), and RS-WS and LaNAS get what it spent;
wall time is reported beside it. Each method searches
`RNNCellSpace(--nodes)` (DARTS' cell; language model: `--hidden` units, tied embedding, the PTB
vocabulary), training on the first `--train-tokens` training tokens (cycled) and validating on the
first `--valid-tokens` validation tokens:

* RS-WS (`000_*`): the weight-sharing supernet is trained for the whole budget, each window through a
  cell drawn uniformly; then `--ws-candidates` random cells are ranked by their shared-weight validation
  perplexity (`nasjax.search.run` with "random"; forward passes only, not counted as training).
* RS-ES (`000_*`): successive halving ("hyperband" with one bracket) from `--es-min` to `--es-max`
  chunks per cell, eta `--eta`, each cell trained from scratch at its rung's budget; evaluations are
  taken in order until the budget is spent.
* LaNAS (`002_*`): `--lanas-chunks` chunks per cell, so budget / lanas-chunks cells.
Cells of one round are trained together in one vmapped program (the cell is data).

Final evaluation: each method's best cell is trained from scratch `--final-seeds` times for
`--final-epochs` passes over `--final-train-tokens` (DARTS' SGD->ASGD protocol), all together, and
its validation and test perplexity reported (mean over seeds). The unigram perplexity is beside them.

Work directory: config.json; supernet/ (checkpoint of the weight-sharing training, per chunk group);
rs_ws/, rs_es/, lanas/ (`nasjax.search.run` logs and checkpoints: evaluations.jsonl has the cell,
validation perplexity, tokens); final.jsonl; summary.csv, summary.md, rnn_ptb.png (best validation
perplexity found vs training tokens spent). Re-running the same command resumes (same bits); other
flags on the same directory are refused. An accelerator run, e.g.:

    python experiments/rnn_ptb.py --workdir runs/rnn_gpu --hidden 300 --batch 64 --bptt 35 \
        --train-tokens 0 --valid-tokens 0 --chunk-windows 100 --budget-chunks 400 --population 8 \
        --ws-candidates 100 --es-max 27 --lanas-chunks 9 --final-epochs 20 --final-train-tokens 0
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from nasjax import search
from nasjax.data import load_ptb, unigram_perplexity
from nasjax.experiment import UsageError, begin, check_config, data_fingerprint, own_workdir
from nasjax.experiment.cli import COUNT, IMAGES, SEED, Parser, check, check_data_dir, folder, integer, real
from nasjax.experiment.cli import main as run_main
from nasjax.experiment.outputs import pyplot, save_figure
from nasjax.io import atomic_write_bytes, write_csv
from nasjax.search.loop import load_checkpoint, save_checkpoint
import nasjax.nn
from nasjax.spaces import RNNCellSpace
from nasjax.train import lm

METHODS = ("RS-WS", "RS-ES", "LaNAS")


def parse_args(argv=None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--data-dir", type=folder, default=None, help="folder with ptb/ (default $NASJAX_DATA_DIR)")
    p.add_argument("--workdir", type=folder, default="runs/rnn_ptb")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--nodes", type=COUNT, default=8)
    p.add_argument("--hidden", type=COUNT, default=32)
    p.add_argument("--batch", type=COUNT, default=16)
    p.add_argument("--bptt", type=COUNT, default=20)
    p.add_argument("--lr", type=real(0, lo_open=True), default=20.0)
    p.add_argument("--dropout", type=real(0, 1, hi_open=True), default=0.1, help="every dropout rate of the model")
    p.add_argument("--train-tokens", type=IMAGES, default=32_000, help="0: all")
    p.add_argument("--valid-tokens", type=IMAGES, default=8_000, help="0: all")
    p.add_argument("--test-tokens", type=IMAGES, default=0, help="0: all")
    p.add_argument("--chunk-windows", type=COUNT, default=10)
    p.add_argument("--budget-chunks", type=COUNT, default=36)
    p.add_argument("--population", type=COUNT, default=4, help="cells trained together")
    p.add_argument("--ws-candidates", type=COUNT, default=16)
    p.add_argument("--es-min", type=COUNT, default=1)
    p.add_argument("--es-max", type=COUNT, default=9)
    p.add_argument("--eta", type=integer(2), default=3)
    p.add_argument("--lanas-chunks", type=COUNT, default=3)
    p.add_argument("--final-epochs", type=COUNT, default=2)
    p.add_argument("--final-train-tokens", type=IMAGES, default=64_000, help="0: all")
    p.add_argument("--final-seeds", type=COUNT, default=1)
    args = p.parse_args(argv)
    check((args.es_max >= args.es_min, "need --es-max >= --es-min"),
          (args.lanas_chunks <= args.budget_chunks and args.es_max <= args.budget_chunks,
           "--lanas-chunks and --es-max must not exceed --budget-chunks"))
    return args


def windows(stream: np.ndarray, args, tokens: int, flag: str):
    """`lm.windows` of the first `tokens` of `stream` (0: all); UsageError naming `flag` when they do
    not fill one window of --bptt + 1 tokens in each of --batch columns."""
    n = min(tokens or len(stream), len(stream))
    if n // args.batch - 1 < args.bptt:
        raise UsageError(f"{flag} {tokens}: {n} tokens do not fill one window of --batch {args.batch} x "
                         f"(--bptt {args.bptt} + 1) tokens")
    return lm.windows(stream, args.batch, args.bptt, tokens)


class Trainer:
    """The compiled programs shared by every method: a population of cells trained chunk by chunk
    (the cell is data, so one program), the supernet's chunk, and validation."""

    def __init__(self, args, space: RNNCellSpace, data):
        self.space, self.args = space, args
        rate = args.dropout
        self.model = nasjax.nn.supernet(space, num_classes=data.vocab_size, hidden_size=args.hidden,
                                        dropout=rate, dropout_h=rate, dropout_x=rate, dropout_i=rate, dropout_e=0.0)
        self.config = lm.LMConfig(batch_size=args.batch, bptt=args.bptt, eval_batch_size=args.batch,
                                  lr=args.lr)
        x, y = windows(data.train, args, args.train_tokens, "--train-tokens")
        chunks = x.shape[0] // args.chunk_windows
        if chunks < 1:
            raise UsageError(f"--train-tokens {args.train_tokens} gives {x.shape[0]} windows, fewer than "
                             f"--chunk-windows {args.chunk_windows}")
        shape = (chunks, args.chunk_windows) + x.shape[1:]
        self.chunks = (x[:chunks * args.chunk_windows].reshape(shape),
                       y[:chunks * args.chunk_windows].reshape(shape))
        self.valid = windows(data.valid, args, args.valid_tokens, "--valid-tokens")
        self.tokens_per_chunk = args.chunk_windows * args.bptt * args.batch
        model, config = self.model, self.config
        self._init = jax.jit(jax.vmap(functools.partial(lm.init_state, model, config)))
        self._train = jax.jit(jax.vmap(functools.partial(lm.train_windows, model, config),
                                       in_axes=(0, None, None, 0)))
        self._loss = jax.jit(jax.vmap(lambda s, c, x, y: lm.evaluate(model, lm.eval_params(s), x, y, c),
                                      in_axes=(0, 0, None, None)))
        self.supernet_init = jax.jit(functools.partial(lm.init_state, model, config))
        self.supernet_chunk = jax.jit(functools.partial(lm.train_supernet, model, config, space))
        self.shared_loss = jax.jit(functools.partial(lm.shared_weight_loss, model, space))

    def chunk(self, i: int):
        """Chunk i of the cycled training windows: inputs / targets (chunk_windows, bptt, batch)."""
        j = i % self.chunks[0].shape[0]
        return self.chunks[0][j], self.chunks[1][j]

    def train_cells(self, encodings: np.ndarray, n_chunks: int, key: jax.Array) -> np.ndarray:
        """Validation cross-entropy float64 (n,) of cells trained from scratch for `n_chunks` chunks,
        `--population` at a time (the last group padded with copies); NaN for a diverged cell."""
        p, out = self.args.population, []
        for start in range(0, len(encodings), p):
            group = encodings[start:start + p]
            padded = np.concatenate([group, np.repeat(group[-1:], p - len(group), axis=0)])
            cells = jax.vmap(functools.partial(nasjax.nn.arch_data, self.space))(jnp.asarray(padded))
            per_window = jax.tree_util.tree_map(
                lambda a: jnp.broadcast_to(a[:, None], (p, self.args.chunk_windows) + a.shape[1:]), cells)
            state = self._init(jax.random.split(jax.random.fold_in(key, start), p))
            for i in range(n_chunks):
                x, y = self.chunk(i)
                state, _ = self._train(state, x, y, per_window)
            loss = np.asarray(self._loss(state, cells, *self.valid))
            loss = np.where(np.asarray(state.failed), np.nan, loss)
            out.append(loss[:len(group)])
        return np.concatenate(out).astype(np.float64)


def _records(space, encodings, losses, tokens_each) -> list[dict]:
    return [{"cell": space.describe(e), "val_ppl": float(lm.perplexity(l)) if np.isfinite(l) else None,
             "train_tokens": int(t)} for e, l, t in zip(encodings, losses, tokens_each)]


def rs_ws(trainer: Trainer, key: jax.Array, workdir: pathlib.Path, budget_chunks: int):
    """Supernet training (checkpointed after every chunk), then ranking by shared weights."""
    k_super, k_search = jax.random.split(key)
    folder = workdir / "supernet"
    folder.mkdir(exist_ok=True)
    state = trainer.supernet_init(k_super)
    config = {"method": "RS-WS supernet", "budget_chunks": budget_chunks}
    done = 0
    if (folder / "checkpoint.npz").exists():
        state, meta = load_checkpoint(folder, state, config)
        done = meta["chunks"]
    t0 = time.time()
    for i in tqdm(range(done, budget_chunks), desc="RS-WS supernet", initial=done, total=budget_chunks):
        state, _ = trainer.supernet_chunk(state, *trainer.chunk(i))
        save_checkpoint(folder, state, {"config": config, "chunks": i + 1})
    train_seconds = time.time() - t0
    params = lm.eval_params(state)

    def objective(archs, _key):
        losses = np.asarray(trainer.shared_loss(params, archs, *trainer.valid), np.float64)
        return -losses, _records(trainer.space, np.asarray(archs), losses, [0] * len(losses))

    strategy = search.make("random", trainer.space, capacity=trainer.args.ws_candidates)
    result = search.run(strategy, objective, budget=trainer.args.ws_candidates, key=k_search,
                        workdir=workdir / "rs_ws", batch_size=trainer.args.ws_candidates)
    tokens = budget_chunks * trainer.tokens_per_chunk
    # The supernet's training is spent before the first candidate is ranked.
    curve = [(tokens, -s) for s in np.maximum.accumulate(np.nan_to_num(result.scores, nan=-np.inf))]
    return result.best_encoding, curve, train_seconds


def rs_es(trainer: Trainer, key: jax.Array, workdir: pathlib.Path, budget_chunks: int):
    """Successive halving over random cells, `--population` per round, extended round by round until
    the chunk budget is spent (the last round may pass it; the other methods get what this spent)."""
    args = trainer.args
    strategy = search.make("hyperband", trainer.space, min_budget=float(args.es_min),
                           max_budget=float(args.es_max), eta=args.eta, brackets=1, capacity=4096)
    folder = workdir / "rs_es"
    t0 = time.time()
    while True:
        spent, done = _spent(folder)
        if spent >= budget_chunks * trainer.tokens_per_chunk:
            break
        _run_search(trainer, strategy, key, folder, done + args.population, args.population,
                    lambda budgets: np.asarray(budgets, int))
    encoding, curve, _ = _run_search(trainer, strategy, key, folder, done, args.population, None)
    return encoding, curve, time.time() - t0


def _spent(folder: pathlib.Path) -> tuple[int, int]:
    """(training tokens, evaluations) logged in a search's evaluations.jsonl."""
    path = folder / "evaluations.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return sum(json.loads(line)["train_tokens"] for line in lines), len(lines)


def lanas(trainer: Trainer, key: jax.Array, workdir: pathlib.Path, budget_chunks: int):
    """LaNAS with a fixed training budget per cell."""
    args = trainer.args
    evaluations = max(1, round(budget_chunks / args.lanas_chunks))
    n_select = min(args.population, evaluations)
    strategy = search.make("lanas", trainer.space, capacity=evaluations, height=2, n_init=n_select,
                           n_select=n_select)
    return _run_search(trainer, strategy, key, workdir / "lanas", evaluations, n_select,
                       lambda budgets: np.full(n_select, args.lanas_chunks))


def _run_search(trainer, strategy, key, folder, evaluations, batch_size, chunks_of):
    """`nasjax.search.run` with an objective training each cell for its budget in chunks; returns the
    best cell, the best-so-far curve over training tokens, and the wall time of this invocation."""
    def objective(archs, k, budgets=None):
        archs = np.asarray(archs)
        n_chunks = chunks_of(budgets)[:len(archs)]
        losses = np.empty(len(archs))
        for c in np.unique(n_chunks):  # one group per budget: cells trained together
            idx = np.flatnonzero(n_chunks == c)
            losses[idx] = trainer.train_cells(archs[idx], int(c), jax.random.fold_in(k, int(c)))
        tokens = n_chunks * trainer.tokens_per_chunk
        return -losses, _records(trainer.space, archs, losses, tokens)

    t0 = time.time()
    result = search.run(strategy, objective, budget=evaluations, key=key, workdir=folder,
                        batch_size=batch_size)
    spent = [json.loads(line)["train_tokens"] for line in (folder / "evaluations.jsonl").open()]
    best = np.maximum.accumulate(np.nan_to_num(result.scores, nan=-np.inf))
    return result.best_encoding, list(zip(np.cumsum(spent).tolist(), (-best).tolist())), time.time() - t0


def final_windows(args, data) -> tuple:
    """The final evaluation's training, validation and test windows (UsageError if one is empty)."""
    return (windows(data.train, args, args.final_train_tokens, "--final-train-tokens"),
            windows(data.valid, args, args.valid_tokens, "--valid-tokens"),
            windows(data.test, args, args.test_tokens, "--test-tokens"))


def final_evaluation(args, space, data, winners: dict, key, path: pathlib.Path, splits) -> dict:
    """Each winner trained from scratch `--final-seeds` times, all together, on `splits` (train,
    valid, test windows): {method: record}."""
    if path.exists():
        return {r["method"]: r for r in map(json.loads, path.read_text().splitlines())}
    rate = args.dropout
    model = nasjax.nn.supernet(space, num_classes=data.vocab_size, hidden_size=args.hidden, dropout=rate,
                               dropout_h=rate, dropout_x=rate, dropout_i=rate, dropout_e=0.0)
    config = lm.LMConfig(batch_size=args.batch, bptt=args.bptt, eval_batch_size=args.batch, lr=args.lr)
    train, valid, test = splits
    names = list(winners)
    encs = np.stack([winners[m] for m in names for _ in range(args.final_seeds)])
    cells = jax.vmap(functools.partial(nasjax.nn.arch_data, space))(jnp.asarray(encs))
    t0 = time.time()
    fit = lm.fit(model, config, key, train, valid, args.final_epochs, cells=cells, population=len(encs),
                 progress=True)
    test_loss = jax.jit(jax.vmap(lambda s, c, x, y: lm.evaluate(model, lm.eval_params(s), x, y, c),
                                 in_axes=(0, 0, None, None)))(fit.state, cells, *test)
    test_ppl = np.where(fit.failed, np.nan, lm.perplexity(test_loss)).reshape(len(names), -1)
    val_ppl = fit.val_ppl[-1].reshape(len(names), -1)
    records = {m: {"method": m, "cell": space.describe(winners[m]), "val_ppl": float(np.mean(val_ppl[i])),
                   "test_ppl": float(np.mean(test_ppl[i])), "seeds": args.final_seeds,
                   "train_tokens_each": fit.tokens, "seconds_all": time.time() - t0}
               for i, m in enumerate(names)}
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records.values()).encode())
    return records


def rnn_ptb(args) -> str:
    t0 = time.time()
    check_data_dir(args.data_dir)
    data = load_ptb(args.data_dir)
    space = RNNCellSpace(num_nodes=args.nodes)
    # Both refuse token counts too small for one window before the work directory is touched.
    trainer = Trainer(args, space, data)
    splits = final_windows(args, data)
    with own_workdir(args.workdir) as workdir:
        config = {k: v for k, v in sorted(vars(args).items()) if k not in ("workdir", "data_dir")}
        begin(workdir, config, data_fingerprint(data.source, data.train, data.valid, data.test),
              check_config(workdir, config))
        return _search_and_report(args, space, data, trainer, splits, workdir, t0)


def _search_and_report(args, space, data, trainer, splits, workdir: pathlib.Path, t0: float) -> str:
    """The three searches at equal cost, the final evaluation, the summary files; returns the text."""
    k_ws, k_es, k_lanas, k_final = jax.random.split(jax.random.key(args.seed), 4)
    runs = {"RS-ES": rs_es(trainer, k_es, workdir, args.budget_chunks)}
    spent = runs["RS-ES"][1][-1][0] // trainer.tokens_per_chunk  # equal cost: what RS-ES spent
    runs["RS-WS"] = rs_ws(trainer, k_ws, workdir, spent)
    runs["LaNAS"] = lanas(trainer, k_lanas, workdir, spent)
    final = final_evaluation(args, space, data, {m: r[0] for m, r in runs.items()}, k_final,
                             workdir / "final.jsonl", splits)
    unigram = unigram_perplexity(data.train, np.asarray(trainer.valid[1]).ravel(), data.vocab_size)
    rows = []
    for m, (enc, curve, seconds) in runs.items():
        rows.append({"method": m, "search_train_tokens": int(curve[-1][0]),
                     "search_seconds_this_run": round(seconds, 1),
                     "search_best_val_ppl": round(float(lm.perplexity(curve[-1][1])), 2),
                     "final_val_ppl": round(final[m]["val_ppl"], 2),
                     "final_test_ppl": round(final[m]["test_ppl"], 2),
                     "cell": final[m]["cell"]})
    write_csv(workdir / "summary.csv", rows)
    head = ("| method | search train tokens | search s (this run) | search best val ppl* | final val ppl | "
            "final test ppl |\n|---|---|---|---|---|---|\n")
    table = head + "".join(
        f"| {r['method']} | {r['search_train_tokens']:,} | {r['search_seconds_this_run']} | "
        f"{r['search_best_val_ppl']} | {r['final_val_ppl']} | {r['final_test_ppl']} |\n" for r in rows)
    text = (f"{table}\n*RS-WS: with shared weights; the others: after their own (partial) training.\n"
            f"Unigram perplexity of the validation tokens: {unigram:.1f}. "
            f"Final: {args.final_epochs} epochs on "
            f"{final['RS-WS']['train_tokens_each']:,} tokens per model, {args.final_seeds} seed(s).\n\n"
            + "".join(f"{r['method']}: {r['cell']}\n" for r in rows))
    (workdir / "summary.md").write_text(text)
    plot(runs, workdir / "rnn_ptb.png")
    return text + f"\nwall time of this invocation {time.time() - t0:.0f} s; results in {workdir}\n"


def plot(runs: dict, path: pathlib.Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, (_, curve, _) in runs.items():
        tokens, loss = np.asarray(curve, np.float64).T
        ax.step(tokens, lm.perplexity(loss), where="post", label=m, marker="." if m == "RS-WS" else None)
    ax.set_xlabel("training tokens spent by the search")
    ax.set_ylabel("best validation perplexity so far")
    ax.legend()
    save_figure(fig, path)


def main(argv=None) -> int:
    return run_main(lambda: print(rnn_ptb(parse_args(argv)), end=""))


if __name__ == "__main__":
    sys.exit(main())
