"""The NAS-Bench-101 reader on a tiny file in the official format, written by the test."""

import json

import jax
import numpy as np
import pytest

from nasjax.benchmarks.nasbench101 import (NASBench101, OutOfDomainError, crc32c_many,
                                           decode_model_metrics, encode_model_metrics, encode_record,
                                           read_tfrecord, write_tfrecord)
from nasjax.benchmarks.tabular import BenchmarkDataError
from nasjax.spaces.nasbench101 import NASBench101Space

SPACE = NASBench101Space()
C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
CELLS = [  # (matrix, ops) as a user writes them; the file stores the pruned form under the official key
    ([[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0, 0],
      [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1], [0] * 7], ["input", C1, C3, C3, C3, MP, "output"]),
    ([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], ["input", C3, MP, "output"]),
    ([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ["input", C1, "output"]),
]
EPOCHS = {108: 3, 36: 2}  # epoch budget -> repeats stored (the official files have 3)


def fake_metrics(cell: int, epochs: int, repeat: int) -> list[dict]:
    """Distinct, recognisable metrics for step 0, half-way and the end of training."""
    return [{"current_epoch": stage * epochs / 2,
             "training_time": 10.0 * stage + cell + 0.1 * repeat,
             "train_accuracy": 0.5 + 0.1 * stage,
             "validation_accuracy": 0.6 + 0.01 * cell + 0.001 * repeat + 0.1 * stage,
             "test_accuracy": 0.55 + 0.01 * cell + 0.002 * repeat + 0.1 * stage}
            for stage in range(3)]


def cell_records(cells=CELLS, hash_of=None):
    records = []
    for c, (matrix, ops) in enumerate(cells):
        enc = SPACE.encode(matrix, ops)
        pruned, names = SPACE.spec(enc)
        module_hash = hash_of(enc) if hash_of else SPACE.arch_hash(enc)
        for epochs, repeats in EPOCHS.items():
            for r in range(repeats):
                metrics = encode_model_metrics(fake_metrics(c, epochs, r), trainable_parameters=1000 + c,
                                               total_time=99.0)
                records.append(encode_record(module_hash, epochs, pruned, names, metrics))
    return records


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    path = tmp_path_factory.mktemp("nb101") / "tiny.tfrecord"
    write_tfrecord(path, cell_records())
    return path


@pytest.fixture
def bench(path):
    return NASBench101(path, check_hashes=True)


def enc_of(i):
    return SPACE.encode(*CELLS[i])


def assert_same_data(a, b):
    np.testing.assert_array_equal(a.pop("module_adjacency"), b.pop("module_adjacency"))
    assert a == b


# --- the file format ----------------------------------------------------------------------------------
def test_crc32c_matches_published_check_values():
    # "123456789" (the CRC catalogue's check value) and RFC 3720 B.4's 32-byte vectors.
    data = [b"123456789", bytes(32), b"\xff" * 32, bytes(range(32)), bytes(range(31, -1, -1)), b""]
    np.testing.assert_array_equal(crc32c_many(data), [0xE3069283, 0x8A9136AA, 0x62A8AB43, 0x46DD794E,
                                                      0x113FDB5C, 0])


def test_tfrecord_files_are_byte_identical_to_tensorflows(tmp_path):
    tf = pytest.importorskip("tensorflow")
    records = [b"", b"a", json.dumps(["x" * 500]).encode()] + cell_records()[:3]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for r in records:
            writer.write(r)
    write_tfrecord(tmp_path / "ours.tfrecord", records)
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()
    assert read_tfrecord(tmp_path / "tf.tfrecord") == records


def test_model_metrics_match_protobuf():
    """Our encoder/decoder against protobuf's own, with the message built from model_metrics.proto."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="model_metrics.proto", package="nasbench",
                                               syntax="proto2")
    evaluation = proto.message_type.add(name="EvaluationData")
    for number, name in enumerate(["current_epoch", "training_time", "train_accuracy",
                                   "validation_accuracy", "test_accuracy"], start=1):
        evaluation.field.add(name=name, number=number, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
    evaluation.field.add(name="checkpoint_path", number=6, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    metrics = proto.message_type.add(name="ModelMetrics")
    metrics.field.add(name="evaluation_data", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                      type_name=".nasbench.EvaluationData")
    metrics.field.add(name="trainable_parameters", number=2, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    metrics.field.add(name="total_time", number=3, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    ModelMetrics = message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))

    evaluations = fake_metrics(1, 108, 2)
    evaluations[2]["checkpoint_path"] = "/model.ckpt-1234"
    ours = encode_model_metrics(evaluations, trainable_parameters=2_694_282, total_time=1234.5)
    parsed = ModelMetrics.FromString(ours)
    assert parsed.trainable_parameters == 2_694_282 and parsed.total_time == 1234.5
    assert parsed.evaluation_data[2].checkpoint_path == "/model.ckpt-1234"
    assert parsed.evaluation_data[1].validation_accuracy == evaluations[1]["validation_accuracy"]

    theirs = ModelMetrics(trainable_parameters=-7, total_time=3.0)  # negative: 10-byte varint
    theirs.evaluation_data.add(training_time=1.5, test_accuracy=0.9)
    decoded = decode_model_metrics(theirs.SerializeToString())
    assert decoded["trainable_parameters"] == -7 and decoded["total_time"] == 3.0
    assert decoded["evaluation_data"] == [{"current_epoch": 0.0, "training_time": 1.5, "train_accuracy": 0.0,
                                           "validation_accuracy": 0.0, "test_accuracy": 0.9,
                                           "checkpoint_path": ""}]


# --- the official API --------------------------------------------------------------------------------
def test_loads_every_cell_and_epoch_budget(bench):
    assert len(bench) == 3 and bench.valid_epochs == (36, 108)
    assert bench.hash_iterator() == sorted(SPACE.arch_hash(enc_of(i)) for i in range(3))
    fixed, computed = bench.get_metrics_from_spec(enc_of(1))
    np.testing.assert_array_equal(fixed["module_adjacency"], CELLS[1][0])
    assert fixed["module_operations"] == CELLS[1][1] and fixed["trainable_parameters"] == 1001
    assert [len(computed[e]) for e in (36, 108)] == [2, 3]
    assert computed[108][2]["final_test_accuracy"] == fake_metrics(1, 108, 2)[2]["test_accuracy"]
    assert computed[108][0]["halfway_training_time"] == fake_metrics(1, 108, 0)[1]["training_time"]
    assert bench.get_budget_counters() == (0.0, 0)


def test_query_draws_a_repeat_with_the_key_and_counts_the_budget(bench):
    keys = jax.random.split(jax.random.key(0), 40)
    results = [bench.query(enc_of(0), k) for k in keys]
    accuracies = {r["validation_accuracy"] for r in results}
    assert accuracies == {fake_metrics(0, 108, r)[2]["validation_accuracy"] for r in range(3)}
    assert_same_data(bench.query(enc_of(0), keys[7]), dict(results[7]))  # same key, same repeat
    time_spent, epochs_spent = bench.get_budget_counters()
    assert epochs_spent == 41 * 108
    assert time_spent == pytest.approx(sum(r["training_time"] for r in results) + results[7]["training_time"])
    assert set(results[0]) == {"module_adjacency", "module_operations", "trainable_parameters",
                               "training_time", "train_accuracy", "validation_accuracy", "test_accuracy"}
    bench.reset_budget_counters()
    half = bench.query(enc_of(2), keys[0], epochs=36, stop_halfway=True)
    assert half["test_accuracy"] in {fake_metrics(2, 36, r)[1]["test_accuracy"] for r in range(2)}
    assert bench.get_budget_counters() == (half["training_time"], 18)


def test_query_mean_averages_the_repeats(bench):
    mean = bench.query_mean(enc_of(1))
    expected = np.mean([fake_metrics(1, 108, r)[2]["validation_accuracy"] for r in range(3)])
    assert mean["validation_accuracy"] == pytest.approx(expected, abs=1e-15)
    assert bench.get_budget_counters()[1] == 108


def test_isomorphic_and_padded_encodings_query_the_same_cell(bench):
    matrix, ops = CELLS[0]
    order = [0, 5, 2, 3, 4, 1, 6]  # swap vertices 1 and 5: both lie between input and output only
    m = np.zeros((7, 7), int)
    new_ops = list(ops)
    for i in range(7):
        new_ops[order[i]] = ops[i]
        for j in range(7):
            m[order[i], order[j]] = matrix[i][j]
    permuted = SPACE.encode(m, new_ops)
    assert not np.array_equal(permuted, enc_of(0))
    assert_same_data(bench.query(permuted, jax.random.key(1)), bench.query(enc_of(0), jax.random.key(1)))
    extra = enc_of(2).copy()
    extra[SPACE.edges.index((3, 4))] = 1  # an island edge: pruned away
    assert not np.array_equal(extra, enc_of(2))
    assert_same_data(bench.query_mean(extra), bench.query_mean(enc_of(2)))


@pytest.mark.parametrize("enc, epochs, message", [
    (np.zeros(26, np.int32), 108, "disconnected cell"),
    (np.zeros(5, np.int32), 108, "shape"),
    (None, 12, "invalid number of epochs 12"),
    ("missing", 108, "is not in"),
])
def test_out_of_domain_queries_raise(bench, enc, epochs, message):
    if enc is None:
        enc = enc_of(0)
    elif isinstance(enc, str):
        enc = SPACE.encode([[0, 1, 0], [0, 0, 1], [0, 0, 0]], ["input", MP, "output"])
    with pytest.raises(OutOfDomainError, match=message):
        bench.query(enc, jax.random.key(0), epochs=epochs)
    assert bench.get_budget_counters() == (0.0, 0)


def test_is_valid_follows_the_space(bench):
    assert bench.is_valid(enc_of(0)) and not bench.is_valid(np.zeros(26, np.int32))
    assert not bench.is_valid(np.zeros(5, np.int32))
    assert bench.get_budget_counters() == (0.0, 0)


def test_enumerate_optimum_and_objective(bench):
    encs = bench.enumerate()
    assert [SPACE.arch_hash(e) for e in encs] == bench.hash_iterator()
    best, score = bench.optimum()
    assert SPACE.arch_hash(best) == SPACE.arch_hash(enc_of(2))  # highest validation accuracy by design
    expected = 100 * np.mean([fake_metrics(2, 108, r)[2]["validation_accuracy"] for r in range(3)])
    assert score == pytest.approx(expected)
    archs = np.stack([enc_of(0), np.zeros(26, np.int32), enc_of(1)])
    key = jax.random.key(3)
    scores = bench.objective()(archs, key)
    assert scores.dtype == np.float32 and np.isnan(scores[1])
    keys = jax.random.split(key, 3)
    for i in (0, 2):
        assert scores[i] == np.float32(100 * bench.query(archs[i], keys[i])["validation_accuracy"])
    means = bench.objective(noisy=False, metric="test_accuracy")(archs, key)
    assert means[2] == np.float32(100 * bench.query_mean(enc_of(1))["test_accuracy"])


# --- bad files ----------------------------------------------------------------------------------------
def corrupt(path, tmp_path, edit):
    data = bytearray(path.read_bytes())
    data = edit(data)
    out = tmp_path / "bad.tfrecord"
    out.write_bytes(bytes(data))
    return out


def flip(offset):
    def edit(data):
        data[offset] ^= 0x01
        return data
    return edit


def test_corrupt_and_truncated_files_are_refused(path, tmp_path):
    first_len = int.from_bytes(path.read_bytes()[:8], "little")
    second = 12 + first_len + 4  # byte offset of the second record
    with pytest.raises(BenchmarkDataError, match=f"data CRC mismatch in record 1 at byte {second}"):
        NASBench101(corrupt(path, tmp_path, flip(second + 12 + 30)))
    with pytest.raises(BenchmarkDataError, match=f"length CRC mismatch in record 1 at byte {second}"):
        NASBench101(corrupt(path, tmp_path, flip(second)))
    with pytest.raises(BenchmarkDataError, match="truncated file"):
        NASBench101(corrupt(path, tmp_path, lambda d: d[:-3]))
    with pytest.raises(BenchmarkDataError, match="not found.*download"):
        NASBench101(tmp_path / "absent.tfrecord")


def test_records_that_are_not_nasbench_rows_are_refused(tmp_path):
    write_tfrecord(tmp_path / "x.tfrecord", [json.dumps(["h", 108, "01", "input"]).encode()])
    with pytest.raises(BenchmarkDataError, match="record 0 is not a NAS-Bench-101 record"):
        NASBench101(tmp_path / "x.tfrecord")


def test_check_hashes_catches_keys_that_are_not_the_official_hash(tmp_path):
    write_tfrecord(tmp_path / "h.tfrecord", cell_records(CELLS[:1], hash_of=lambda enc: "0" * 32))
    assert len(NASBench101(tmp_path / "h.tfrecord")) == 1
    with pytest.raises(BenchmarkDataError, match="hashes to"):
        NASBench101(tmp_path / "h.tfrecord", check_hashes=True)


# --- nasjax.benchmarks.load, like every other benchmark ---------------------------------------------------
@pytest.mark.parametrize("folder", [".", "nasbench101"])
def test_loads_by_name_from_the_data_folder(path, tmp_path, monkeypatch, folder):
    import shutil

    import nasjax
    from nasjax.benchmarks import Benchmark

    # After `import nasjax` alone, the documented module is an attribute.
    assert nasjax.benchmarks.nasbench101.NASBench101 is NASBench101
    monkeypatch.delenv("NASJAX_DATA_DIR", raising=False)
    with pytest.raises(BenchmarkDataError, match="nasbench_only108.tfrecord"):
        nasjax.benchmarks.load("nasbench101")
    with pytest.raises(BenchmarkDataError, match=f"nasbench_only108.tfrecord not found in {tmp_path}"):
        nasjax.benchmarks.load("nasbench101", data_dir=tmp_path)
    (tmp_path / folder).mkdir(exist_ok=True)
    shutil.copy(path, tmp_path / folder / "nasbench_only108.tfrecord")
    bench = nasjax.benchmarks.load("nasbench101", data_dir=tmp_path)
    assert isinstance(bench, Benchmark) and bench.name == "nasbench101" and len(bench) == len(CELLS)
    enc, score = bench.optimum()
    assert float(bench.objective(noisy=False)(enc[None], jax.random.key(0))[0]) == pytest.approx(score)
    monkeypatch.setenv("NASJAX_DATA_DIR", str(tmp_path))  # the same folder from the environment
    assert len(nasjax.benchmarks.load("nasbench101")) == len(CELLS)


def test_tabular_benchmarks_follow_the_same_protocol(data_dir):
    from nasjax import benchmarks

    bench = benchmarks.load("convnet-cifar10", data_dir)  # a TabularBenchmark, as the NB-201 ones
    assert isinstance(bench, benchmarks.Benchmark) and bench.name == "convnet-cifar10"
