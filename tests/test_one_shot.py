"""nasjax.experiment.one_shot's own mechanisms, with the supernet's training and scoring replaced by
stand-ins (the real ones run in test_weight_sharing.py, test_supernet_benchmark.py and
test_lanas_cifar.py's one-shot run): the supernet is trained once, saved as a checkpoint and read back
after, a diverging one is refused and not saved, and a cell asked again is not scored again."""

import jax
import numpy as np
import pytest

from nasjax.benchmarks import supernet
from nasjax.data import Dataset
from nasjax.experiment import UsageError, one_shot
from nasjax.spaces import NASNetSpace
from nasjax.train import TrainConfig

SPACE = NASNetSpace(num_nodes=2, init_channels=4, layers=3)
CONFIG = TrainConfig(epochs=2, batch_size=4)
Data = Dataset(*[np.zeros((n, 32, 32, 3), np.uint8) if i % 2 == 0 else np.zeros(n, np.int32)
                 for i, n in enumerate((8, 8, 4, 4, 0, 0))], "cifar10", "stand-in")


@pytest.fixture
def trainings(monkeypatch):
    """Calls of the stand-in train_supernet; its state is {'w': epochs * [1, 2]}, its loss `loss`."""
    calls = []

    def train(space, data, config, key, progress=None):
        calls.append(config.epochs)
        for epoch in range(config.epochs):
            progress(epoch, trainings.loss)
        return {"w": np.float32([1, 2]) * config.epochs}, np.full((config.epochs, 2), trainings.loss)

    trainings = type("T", (), {"calls": calls, "loss": 0.5})
    monkeypatch.setattr(supernet, "init_supernet", lambda *a: {"w": np.zeros(2, np.float32)})
    monkeypatch.setattr(one_shot, "train_supernet", train)
    return trainings


def trained(folder):
    return one_shot.trained_supernet(SPACE, Data, CONFIG, None, folder, split_seed=0, val_images=4)


def test_the_supernet_is_trained_once_and_read_back(trainings, tmp_path, capsys):
    first = trained(tmp_path)
    assert trainings.calls == [2] and (tmp_path / supernet.WEIGHTS_FILE).stat().st_size > 0
    assert "supernet epoch 2/2: mean training loss 0.5000" in capsys.readouterr().err
    metadata = (tmp_path / supernet.METADATA_FILE).read_text()  # a checkpoint any strategy can search
    again = trained(tmp_path)
    assert trainings.calls == [2]  # read, not trained
    np.testing.assert_array_equal(again["w"], first["w"])
    assert (tmp_path / supernet.METADATA_FILE).read_text() == metadata


def test_a_diverging_supernet_is_refused_and_not_saved(trainings, tmp_path):
    trainings.loss = float("nan")
    with pytest.raises(UsageError, match="not finite from epoch 1 on"):
        trained(tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_repeated_cell_is_answered_from_the_cache(monkeypatch):
    scored = []

    def score(state, candidates):
        scored.append(candidates.copy())
        return np.asarray([candidates.sum() / 100.0])

    monkeypatch.setattr(supernet, "candidate_scorer", lambda space, data, config, bn_batches: score)
    objective = one_shot.supernet_objective(SPACE, None, Data, CONFIG, seed=3)
    cells = np.asarray(SPACE.sample(jax.random.key(0), 2))
    scores, records = objective(np.stack([cells[0], cells[1], cells[0]]), None)
    assert len(scored) == 2  # cells[0] once
    np.testing.assert_array_equal(scores, np.float32([cells[0].sum(), cells[1].sum(), cells[0].sum()]) / 100)
    assert [r["seed"] for r in records] == [3, 3, 3] and records[1]["description"] == SPACE.describe(cells[1])
    np.testing.assert_array_equal(objective.scores(cells[1:]), scores[1:2])
    assert len(scored) == 2
