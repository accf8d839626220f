"""NAS-Bench-101's official data file, read without TensorFlow, with the official API's semantics.

    bench = nasjax.benchmarks.load("nasbench101", data_dir)  # <data_dir>/nasbench_only108.tfrecord
    bench = NASBench101("nasbench_only108.tfrecord")      # any file in the format, e.g. nasbench_full
    enc = bench.space.encode(matrix, ops)                # or any NASBench101Space encoding
    data = bench.query(enc, key)                         # one of the 3 training repeats, drawn with key
    time_spent, epochs_spent = bench.get_budget_counters()

File format (nasbench/api.py): a TFRecord file, i.e. records of
    uint64 length | uint32 masked_crc32c(length) | length bytes of data | uint32 masked_crc32c(data)
(little-endian; CRC-32C, masked as ((crc >> 15 | crc << 17) + 0xa282ead8) mod 2^32). Each record's data
is the UTF-8 JSON list [module_hash, epochs, raw_adjacency, raw_operations, raw_metrics]: the hash is
the cell's isomorphism-invariant key (`NASBench101Space.arch_hash`), raw_adjacency the pruned V' x V'
matrix as a string of V'^2 '0'/'1' characters, raw_operations the V' op names joined by commas, and
raw_metrics a base64 `nasbench.ModelMetrics` protobuf (nasbench/lib/model_metrics.proto):
    ModelMetrics   { repeated EvaluationData evaluation_data = 1; int32 trainable_parameters = 2;
                     double total_time = 3; }
    EvaluationData { double current_epoch = 1; double training_time = 2; double train_accuracy = 3;
                     double validation_accuracy = 4; double test_accuracy = 5; string checkpoint_path = 6; }
evaluation_data holds the evaluations at step 0, half-way and at the end of training. One record per
(cell, epoch budget, repeat): 423,624 cells x 3 repeats at 108 epochs in `nasbench_only108.tfrecord`.

Every CRC is checked; a corrupt or truncated file raises `BenchmarkDataError` naming the record and its
byte offset. Checking is vectorised over records with numpy (a byte-at-a-time Python loop would take
minutes on the 499 MB file).

Semantics follow `nasbench.api.NASBench`: `is_valid` checks the (pruned) cell without touching the
budget; `query` returns one repeat's metrics (drawn with a JAX key instead of Python's global RNG) and
adds its training time and epochs to the budget counters; `stop_halfway` returns the half-way
evaluation and counts half the epochs. `query_mean` averages the repeats (the denoised score) and
counts like one query. The budget counters are the object's only mutable state, as in the official API.
"""

from __future__ import annotations

import array
import base64
import json
import os
import pathlib
import struct
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

from nasjax.benchmarks.tabular import BenchmarkDataError, data_folder
from nasjax.spaces.base import InvalidEncodingError
from nasjax.spaces.nasbench101 import NASBench101Space

FILENAME = "nasbench_only108.tfrecord"
DOWNLOAD = ("download it from https://storage.googleapis.com/nasbench/nasbench_only108.tfrecord (499 MB) or "
            "nasbench_full.tfrecord (1.95 GB), see https://github.com/google-research/nasbench")
METRICS = ("training_time", "train_accuracy", "validation_accuracy", "test_accuracy")
HALFWAY, FINAL = 1, 2  # indices into ModelMetrics.evaluation_data (0 is the untrained model)


class OutOfDomainError(ValueError):
    """The queried cell or epoch budget is outside the benchmark (as `nasbench.api.OutOfDomainError`)."""


# --- CRC-32C (Castagnoli), vectorised over many byte strings ---------------------------------------------
def _crc_table() -> np.ndarray:
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> 1) ^ np.uint32(0x82F63B78), crc >> 1).astype(np.uint32)
    return crc


_CRC_TABLE = _crc_table()
_MASK_DELTA = 0xA282EAD8


def crc32c_many(chunks: Sequence[bytes | memoryview]) -> np.ndarray:
    """CRC-32C of each byte string: uint32 (len(chunks),).

    One numpy step per byte position updates every string at once; strings are sorted by length so
    that the ones still running form a prefix.
    """
    lengths = np.array([len(c) for c in chunks], np.int64)
    out = np.empty(len(chunks), np.uint32)
    step = 1 << 15  # strings per batch: bounds the memory of the joined bytes
    for lo in range(0, len(chunks), step):
        idx = np.arange(lo, min(lo + step, len(chunks)))
        idx = idx[np.argsort(-lengths[idx], kind="stable")]
        lens = lengths[idx]
        flat = np.frombuffer(b"".join(chunks[i] for i in idx), np.uint8)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        crc = np.full(len(idx), 0xFFFFFFFF, np.uint32)
        running = len(idx)
        for pos in range(int(lens[0]) if len(lens) else 0):
            while lens[running - 1] <= pos:
                running -= 1
            c = crc[:running]
            crc[:running] = _CRC_TABLE[(c ^ flat[starts[:running] + pos]) & 0xFF] ^ (c >> 8)
        out[idx] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def masked_crc32c_many(chunks: Sequence[bytes | memoryview]) -> np.ndarray:
    """TFRecord's masked CRC-32C of each byte string: uint32 (len(chunks),)."""
    crc = crc32c_many(chunks).astype(np.uint64)
    return ((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF).astype(np.uint32)


# --- TFRecord files ---------------------------------------------------------------------------------
def read_tfrecord(path: str | os.PathLike) -> list[bytes]:
    """Every record's data, in file order, after checking both CRCs of every record."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise BenchmarkDataError(f"{path}: NAS-Bench-101 file not found; {DOWNLOAD}")
    data = memoryview(path.read_bytes())
    offsets, lengths, stored_len_crc, stored_data_crc = [], [], [], []
    pos, truncated = 0, None
    while pos < len(data):
        if len(data) - pos < 12:
            truncated = f"{len(data) - pos} stray bytes at the end (a record header is 12)"
            break
        length, len_crc = struct.unpack_from("<QI", data, pos)
        offsets.append(pos)
        lengths.append(length)
        stored_len_crc.append(len_crc)
        end = pos + 12 + length + 4
        if end > len(data):
            truncated = (f"record {len(offsets) - 1} at byte {pos} needs {end - pos} bytes, "
                         f"{len(data) - pos} left")
            break
        stored_data_crc.append(struct.unpack_from("<I", data, end - 4)[0])
        pos = end
    # A corrupt length field sends the walk astray: report the first bad header CRC before anything else.
    headers = [data[o:o + 8] for o in offsets]
    bad = np.flatnonzero(masked_crc32c_many(headers) != np.array(stored_len_crc, np.uint32))
    if len(bad):
        i = int(bad[0])
        raise BenchmarkDataError(f"{path}: corrupt file: length CRC mismatch in record {i} at byte "
                                 f"{offsets[i]}")
    if truncated:
        raise BenchmarkDataError(f"{path}: truncated file: {truncated}")
    records = [data[o + 12:o + 12 + n] for o, n in zip(offsets, lengths)]
    bad = np.flatnonzero(masked_crc32c_many(records) != np.array(stored_data_crc, np.uint32))
    if len(bad):
        i = int(bad[0])
        raise BenchmarkDataError(f"{path}: corrupt file: data CRC mismatch in record {i} at byte "
                                 f"{offsets[i]} ({len(bad)} bad record(s))")
    return [bytes(r) for r in records]


def write_tfrecord(path: str | os.PathLike, records: Iterable[bytes]) -> None:
    """Write records in the TFRecord format (e.g. a subset of the benchmark, or test data)."""
    records = [bytes(r) for r in records]
    headers = [struct.pack("<Q", len(r)) for r in records]
    header_crc, data_crc = masked_crc32c_many(headers), masked_crc32c_many(records)
    with open(path, "wb") as f:
        for h, hc, r, rc in zip(headers, header_crc, records, data_crc):
            f.write(h + struct.pack("<I", int(hc)) + r + struct.pack("<I", int(rc)))


# --- the ModelMetrics protobuf (wire format, the fields nasbench uses) ----------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes) -> Iterable[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = bytes(buf[pos:pos + size]), pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + size]), pos + size
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number})")
        if pos > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, value


_EVAL_FIELDS = {1: "current_epoch", 2: "training_time", 3: "train_accuracy",
                4: "validation_accuracy", 5: "test_accuracy"}


def decode_model_metrics(buf: bytes) -> dict:
    """A serialized `nasbench.ModelMetrics` as {"evaluation_data": [dict], "trainable_parameters": int,
    "total_time": float}; unknown fields are skipped, as protobuf parsers do."""
    out = {"evaluation_data": [], "trainable_parameters": 0, "total_time": 0.0}
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 2:
            evaluation = dict.fromkeys(_EVAL_FIELDS.values(), 0.0)
            evaluation["checkpoint_path"] = ""
            for n, w, v in _fields(value):
                if n in _EVAL_FIELDS and w == 1:
                    evaluation[_EVAL_FIELDS[n]] = struct.unpack("<d", v)[0]
                elif n == 6 and w == 2:
                    evaluation["checkpoint_path"] = v.decode("utf-8")
            out["evaluation_data"].append(evaluation)
        elif number == 2 and wire == 0:
            out["trainable_parameters"] = value - (1 << 64) if value >= 1 << 63 else value  # int32
        elif number == 3 and wire == 1:
            out["total_time"] = struct.unpack("<d", value)[0]
    return out


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 -> ten-byte two's complement, as protobuf writes it
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _encode_length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def encode_model_metrics(evaluation_data: Sequence[dict], trainable_parameters: int,
                         total_time: float = 0.0) -> bytes:
    """Serialize a `nasbench.ModelMetrics` (the inverse of `decode_model_metrics`)."""
    out = b""
    for evaluation in evaluation_data:
        message = b"".join(_encode_varint(n << 3 | 1) + struct.pack("<d", float(evaluation.get(name, 0.0)))
                           for n, name in _EVAL_FIELDS.items())
        if evaluation.get("checkpoint_path"):
            message += _encode_length_delimited(6, evaluation["checkpoint_path"].encode("utf-8"))
        out += _encode_length_delimited(1, message)
    out += _encode_varint(2 << 3) + _encode_varint(int(trainable_parameters))
    return out + _encode_varint(3 << 3 | 1) + struct.pack("<d", float(total_time))


def encode_record(module_hash: str, epochs: int, matrix: np.ndarray, ops: Sequence[str],
                  metrics: bytes) -> bytes:
    """One record's data in the official layout (see the module docstring)."""
    raw_adjacency = "".join(str(int(e)) for e in np.asarray(matrix).reshape(-1))
    return json.dumps([module_hash, int(epochs), raw_adjacency, ",".join(ops),
                       base64.b64encode(metrics).decode("ascii")]).encode("utf-8")


# --- the benchmark ------------------------------------------------------------------------------------
class NASBench101:
    """The official dataset in memory: fixed statistics per cell, metrics per (epochs, repeat).

    path          the official `.tfrecord` (or a subset in the same format)
    space         the `NASBench101Space` whose encodings are queried (the default is the benchmark's)
    check_hashes  recompute every stored cell's hash and compare it with its key (slow: minutes on the
                  full file; proves `arch_hash` reproduces the official keys)
    name          its name in logs (`nasjax.benchmarks.Benchmark`)
    """

    jittable = True  # the `Benchmark` protocol's capabilities
    enumerable = True

    def __init__(self, path: str | os.PathLike, space: NASBench101Space | None = None,
                 check_hashes: bool = False, name: str = "nasbench101"):
        self.name = name
        self.path = pathlib.Path(path)
        self.space = space or NASBench101Space()
        rows: dict[str, int] = {}
        self._matrices: list[np.ndarray] = []
        self._operations: list[list[str]] = []
        params = array.array("q")
        # One entry per record: its cell's row, epochs and the 8 metrics (half-way then final).
        rec_row, rec_epochs, rec_values = array.array("q"), array.array("q"), array.array("d")
        for i, raw in enumerate(read_tfrecord(self.path)):
            try:
                module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = json.loads(raw)
                if not all(isinstance(x, str) for x in (module_hash, raw_adjacency, raw_operations)):
                    raise TypeError("hash, adjacency and operations must be strings")
                metrics = decode_model_metrics(base64.b64decode(raw_metrics, validate=True))
                evaluations = [metrics["evaluation_data"][j] for j in (HALFWAY, FINAL)]
            except (ValueError, TypeError, IndexError) as e:
                raise BenchmarkDataError(
                    f"{self.path}: record {i} is not a NAS-Bench-101 record ({e})") from None
            if module_hash not in rows:
                rows[module_hash] = len(rows)
                self._matrices.append(self._parse_matrix(raw_adjacency, i))
                self._operations.append(raw_operations.split(","))
                params.append(metrics["trainable_parameters"])
            rec_row.append(rows[module_hash])
            rec_epochs.append(int(epochs))
            rec_values.extend(e[name] for e in evaluations for name in METRICS)
        if not rows:
            raise BenchmarkDataError(f"{self.path}: no records")
        self._rows = rows
        self._params = np.frombuffer(params, np.int64)
        self._computed = self._arrange(len(rows), np.frombuffer(rec_row, np.int64),
                                       np.frombuffer(rec_epochs, np.int64),
                                       np.frombuffer(rec_values, np.float64).reshape(-1, 2, len(METRICS)))
        self.valid_epochs = tuple(sorted(self._computed))
        self._encodings: np.ndarray | None = None
        if check_hashes:
            self._check_hashes()
        self.reset_budget_counters()

    def _parse_matrix(self, raw_adjacency: str, record: int) -> np.ndarray:
        dim = int(round(len(raw_adjacency) ** 0.5))
        if dim * dim != len(raw_adjacency) or set(raw_adjacency) - {"0", "1"}:
            raise BenchmarkDataError(f"{self.path}: record {record}: adjacency {raw_adjacency!r} is not "
                                     "a square 0/1 matrix")
        digits = np.frombuffer(raw_adjacency.encode("ascii"), np.uint8) - ord("0")
        return digits.astype(np.int8).reshape(dim, dim)

    @staticmethod
    def _arrange(n_cells: int, row: np.ndarray, epochs: np.ndarray,
                 values: np.ndarray) -> dict[int, np.ndarray]:
        """{epochs: float64 (cells, repeats, 2, 4)}: repeats in file order, NaN where a cell has fewer."""
        out = {}
        for e in np.unique(epochs):
            sel = np.flatnonzero(epochs == e)
            order = sel[np.argsort(row[sel], kind="stable")]
            r = row[order]
            first = np.searchsorted(r, r)  # position of each cell's first record
            repeat = np.arange(len(r)) - first
            table = np.full((n_cells, int(repeat.max()) + 1, 2, len(METRICS)), np.nan)
            table[r, repeat] = values[order]
            out[int(e)] = table
        return out

    def _stored_encoding(self, row: int) -> np.ndarray:
        try:
            return self.space.encode(self._matrices[row], self._operations[row])
        except InvalidEncodingError as e:
            raise BenchmarkDataError(f"{self.path}: a stored cell is not in {self.space}: {e}") from None

    def _check_hashes(self) -> None:
        for module_hash, row in self._rows.items():
            found = self.space.arch_hash(self._stored_encoding(row))
            if found != module_hash:
                raise BenchmarkDataError(f"{self.path}: stored cell {module_hash} hashes to {found}")

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"NASBench101({str(self.path)!r}: {len(self)} cells, epochs {self.valid_epochs})"

    # --- official API -----------------------------------------------------------------------------
    def is_valid(self, enc) -> bool:
        """Whether `enc` is a cell of the space (does not touch the budget counters)."""
        enc = np.asarray(enc)
        return enc.shape == self.space.encoding_shape and np.issubdtype(enc.dtype, np.integer) \
            and not self.space.validation_errors(enc.astype(np.int64))

    def _row(self, enc) -> tuple[int, str]:
        try:
            module_hash = self.space.arch_hash(enc)
        except InvalidEncodingError as e:
            raise OutOfDomainError(str(e)) from None
        if module_hash not in self._rows:
            raise OutOfDomainError(f"cell {module_hash} ({self.space.describe(enc)}) is not in {self.path}")
        return self._rows[module_hash], module_hash

    def _table(self, epochs: int) -> np.ndarray:
        if epochs not in self._computed:
            raise OutOfDomainError(f"invalid number of epochs {epochs}, must be one of {self.valid_epochs}")
        return self._computed[epochs]

    def _fixed(self, row: int) -> dict:
        return {"module_adjacency": self._matrices[row].copy(),
                "module_operations": list(self._operations[row]),
                "trainable_parameters": int(self._params[row])}

    def _spend(self, metrics: np.ndarray, row: int, epochs: int, stop_halfway: bool) -> dict:
        data = self._fixed(row)
        data.update(zip(METRICS, metrics[0 if stop_halfway else 1].tolist()))
        self.training_time_spent += data["training_time"]
        self.total_epochs_spent += epochs // 2 if stop_halfway else epochs
        return data

    def _repeats(self, enc, epochs: int) -> tuple[int, np.ndarray]:
        """(row, float64 (repeats, 2, 4) metrics of the stored repeats) of the cell `enc` denotes."""
        table = self._table(epochs)
        row, module_hash = self._row(enc)
        stored = table[row][~np.isnan(table[row, :, 1, 0])]
        if not len(stored):
            raise OutOfDomainError(f"cell {module_hash} has no {epochs}-epoch data in {self.path}")
        return row, stored

    def query(self, enc, key: jax.Array, epochs: int = 108, stop_halfway: bool = False) -> dict:
        """Metrics of one training repeat of `enc`, drawn uniformly with `key`; counts its budget.

        Returns {module_adjacency, module_operations, trainable_parameters, training_time,
        train_accuracy, validation_accuracy, test_accuracy} (accuracies in [0, 1], time in seconds).
        """
        row, stored = self._repeats(enc, epochs)
        pick = int(jax.random.randint(key, (), 0, len(stored)))
        return self._spend(stored[pick], row, epochs, stop_halfway)

    def query_mean(self, enc, epochs: int = 108, stop_halfway: bool = False) -> dict:
        """Like `query`, with every metric averaged over the repeats (the denoised score)."""
        row, stored = self._repeats(enc, epochs)
        return self._spend(stored.mean(axis=0), row, epochs, stop_halfway)

    def get_budget_counters(self) -> tuple[float, int]:
        """(training seconds, epochs) spent by the queries since the last reset."""
        return self.training_time_spent, self.total_epochs_spent

    def reset_budget_counters(self) -> None:
        self.training_time_spent, self.total_epochs_spent = 0.0, 0

    def hash_iterator(self) -> list[str]:
        """Every stored cell's key, sorted."""
        return sorted(self._rows)

    def get_metrics_from_hash(self, module_hash: str) -> tuple[dict, dict]:
        """(fixed statistics, {epochs: [per-repeat dict of halfway_*/final_* metrics]}); no budget."""
        if module_hash not in self._rows:
            raise OutOfDomainError(f"cell {module_hash} is not in {self.path}")
        row = self._rows[module_hash]
        computed = {}
        for epochs, table in self._computed.items():
            computed[epochs] = [
                {f"{stage}_{name}": float(v) for stage, values in zip(("halfway", "final"), repeat)
                 for name, v in zip(METRICS, values)}
                for repeat in table[row] if not np.isnan(repeat[1, 0])]
        return self._fixed(row), computed

    def get_metrics_from_spec(self, enc) -> tuple[dict, dict]:
        """`get_metrics_from_hash` of the cell `enc` denotes; no budget."""
        return self.get_metrics_from_hash(self._row(enc)[1])

    # --- for nasjax searches ----------------------------------------------------------------------
    def enumerate(self) -> np.ndarray:
        """Encodings of every stored cell, in `hash_iterator()` order: int32 (len(self), E + V - 2)."""
        if self._encodings is None:
            rows = [self._rows[h] for h in self.hash_iterator()]
            encs = np.stack([self._stored_encoding(r) for r in rows])
            encs.flags.writeable = False
            self._encodings = encs
        return self._encodings

    def optimum(self, metric: str = "validation_accuracy", epochs: int = 108) -> tuple[np.ndarray, float]:
        """(encoding, mean `metric` over repeats in percent, the unit of `objective`) of the best
        stored cell by that mean (the first in `hash_iterator()` order on ties)."""
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")
        rows = np.array([self._rows[h] for h in self.hash_iterator()])
        mean = np.nanmean(self._table(epochs)[rows, :, 1, METRICS.index(metric)], axis=1)
        best = int(np.nanargmax(mean))
        return self.enumerate()[best], float(100.0 * mean[best])

    def objective(self, noisy: bool = True, epochs: int = 108,
                  metric: str = "validation_accuracy") -> Callable[[jax.Array, jax.Array], np.ndarray]:
        """Host-side objective (archs int (n, E + V - 2), key) -> float32 (n,) `metric` in percent.

        noisy=True queries one repeat per architecture (row i uses `jax.random.split(key, n)[i]`),
        noisy=False the mean over repeats. Invalid architectures score NaN and cost nothing; every
        other one counts in the budget counters. A valid cell missing from the file raises.
        """
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")

        def scores(archs, key):
            archs = np.asarray(archs)
            keys = jax.random.split(key, archs.shape[0])
            out = np.full(archs.shape[0], np.nan, np.float32)
            for i, enc in enumerate(archs):
                if self.is_valid(enc):
                    data = self.query(enc, keys[i], epochs) if noisy else self.query_mean(enc, epochs)
                    out[i] = 100.0 * data[metric]
            return out

        return scores


def load(data_dir: str | os.PathLike | None = None) -> NASBench101:
    """The official `nasbench_only108.tfrecord` in `data_dir` (else $NASJAX_DATA_DIR), or in its
    `nasbench101/` folder; BenchmarkDataError naming where it looked when the file is in neither."""
    folder = data_folder(data_dir, FILENAME)
    candidates = (folder / FILENAME, folder / "nasbench101" / FILENAME)
    for path in candidates:
        if path.is_file():
            return NASBench101(path)
    raise BenchmarkDataError(f"NAS-Bench-101 file {FILENAME} not found in {folder} or "
                             f"{candidates[1].parent}; {DOWNLOAD}")
