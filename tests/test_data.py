"""nasjax.data on the real CIFAR-10 subset: loading, split, errors, normalization, augmentations."""

import os
import pickle
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from nasjax.data import (CIFAR10_MEAN, CIFAR10_POLICY, CIFAR10_STD, DataError, apply_op, augment_batch,
                         cifar10_autoaugment, load_cifar10, normalize, random_cutout, stratified_split)
from nasjax.data.autoaugment import OPS
from nasjax.train import TrainConfig

FOLDER = "cifar-10-batches-py"
TRAIN_SIZE, TEST_SIZE = 5085, 1017  # the shared subset (its README)


@pytest.fixture(scope="module")
def unsplit(data_dir):
    """The training set in its original order (no validation split)."""
    return load_cifar10(data_dir, validation_fraction=0.0)


def _raw(data_dir, name):
    with open(data_dir / FOLDER / name, "rb") as f:
        return pickle.load(f, encoding="bytes")


# --- loading ----------------------------------------------------------------------------------------
def test_shapes_dtypes_sizes(cifar, data_dir):
    chex.assert_shape(cifar.train_images, (None, 32, 32, 3))
    assert len(cifar.train_images) + len(cifar.val_images) == TRAIN_SIZE
    assert len(cifar.test_images) == TEST_SIZE
    for images, labels in [(cifar.train_images, cifar.train_labels), (cifar.val_images, cifar.val_labels),
                           (cifar.test_images, cifar.test_labels)]:
        assert images.dtype == np.uint8 and labels.dtype == np.int32
        assert images.shape == (len(labels), 32, 32, 3)
        assert labels.min() == 0 and labels.max() == 9
    assert abs(len(cifar.val_images) - TRAIN_SIZE / 2) <= 10
    assert cifar.source == f"local:{data_dir / FOLDER}" and cifar.num_classes == 10


def test_original_order_and_pixel_layout(unsplit, data_dir):
    raw = _raw(data_dir, "data_batch_1")
    np.testing.assert_array_equal(unsplit.train_labels[:5], [6, 9, 9, 4, 1])  # frog, truck, truck, deer, car
    assert len(unsplit.train_images) == TRAIN_SIZE and len(unsplit.val_images) == 0
    # Row = 1024 red, 1024 green, 1024 blue values, row-major: pixel (r, c) sits at r * 32 + c.
    for r, c in [(0, 0), (5, 17), (31, 31)]:
        np.testing.assert_array_equal(unsplit.train_images[0, r, c], raw[b"data"][0, [r * 32 + c + k * 1024
                                                                                       for k in range(3)]])
    np.testing.assert_array_equal(unsplit.test_labels, _raw(data_dir, "test_batch")[b"labels"])


@pytest.mark.parametrize("fraction", [0.5, 0.1])
def test_split_disjoint_deterministic_stratified(unsplit, data_dir, fraction):
    labels = unsplit.train_labels
    train_idx, val_idx = stratified_split(labels, fraction, seed=3)
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(len(labels)))
    per_class = np.bincount(labels, minlength=10)
    np.testing.assert_array_equal(np.bincount(labels[val_idx], minlength=10), np.round(fraction * per_class))

    ds = load_cifar10(data_dir, validation_fraction=fraction, split_seed=3)
    np.testing.assert_array_equal(ds.val_images, unsplit.train_images[val_idx])
    np.testing.assert_array_equal(ds.train_labels, labels[train_idx])
    again = load_cifar10(data_dir, validation_fraction=fraction, split_seed=3)
    np.testing.assert_array_equal(again.val_images, ds.val_images)
    other = load_cifar10(data_dir, validation_fraction=fraction, split_seed=4)
    assert not np.array_equal(other.val_images, ds.val_images)


def test_bad_fraction_and_source(data_dir):
    with pytest.raises(ValueError, match="validation_fraction"):
        load_cifar10(data_dir, validation_fraction=1.0)
    with pytest.raises(ValueError, match="source"):
        load_cifar10(data_dir, source="web")


@pytest.mark.parametrize("inner", [False, True])
def test_env_var_path(monkeypatch, data_dir, unsplit, inner):
    monkeypatch.setenv("NASJAX_DATA_DIR", str(data_dir / FOLDER if inner else data_dir))
    ds = load_cifar10(validation_fraction=0.0, source="local")
    assert ds.source == f"local:{data_dir / FOLDER}"
    np.testing.assert_array_equal(ds.train_images, unsplit.train_images)


def test_missing_data_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match=r"(?s)nope.*does not exist.*NASJAX_DATA_DIR"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(DataError, match=r"(?s)data_batch_1.*missing.*--data-dir"):
        load_cifar10(tmp_path)
    monkeypatch.delenv("NASJAX_DATA_DIR")
    with pytest.raises(DataError, match="NASJAX_DATA_DIR is not set"):
        load_cifar10(source="local")


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _rewrite(path, **changes):
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    batch.update({k.encode(): v for k, v in changes.items()})
    path.write_bytes(pickle.dumps(batch))


@pytest.mark.parametrize("corrupt, message", [
    (_truncate, "truncated or corrupt"),
    (lambda p: p.write_bytes(pickle.dumps([1, 2, 3])), "truncated or corrupt"),
    (lambda p: _rewrite(p, data=np.zeros((4, 100), np.uint8), labels=[0] * 4),
     r"expected uint8 data \(N, 3072\)"),
    (lambda p: _rewrite(p, data=np.zeros((4, 3072), np.uint8), labels=[0] * 3), "expected uint8 data"),
    (lambda p: _rewrite(p, data=np.zeros((2, 3072), np.uint8), labels=[3, 12]),
     r"labels must be integers in 0\.\.9"),
])
def test_corrupt_file_errors(tmp_path, data_dir, corrupt, message):
    folder = tmp_path / FOLDER
    shutil.copytree(data_dir / FOLDER, folder)
    (folder / "data_batch_3").chmod(0o644)
    corrupt(folder / "data_batch_3")
    with pytest.raises(DataError, match=rf"(?s)data_batch_3.*{message}.*NASJAX_DATA_DIR") as info:
        load_cifar10(tmp_path)
    assert isinstance(info.value, ValueError)


def test_tfds_failure_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails, as without TF
    monkeypatch.delenv("NASJAX_DATA_DIR")
    for source in ("tfds", "auto"):
        with pytest.raises(DataError, match=r"(?s)tensorflow-datasets failed.*internet.*NASJAX_DATA_DIR"):
            load_cifar10(source=source)


# Run in a fresh interpreter: TensorFlow stays out of the test process. The download is replaced by the
# folder the original archive unpacks to; everything else (tfds preparing the dataset, loading it and
# nasjax's conversion) is the online path.
_TFDS_SCRIPT = """
import sys
import numpy as np
import tensorflow_datasets as tfds
from nasjax.data import load_cifar10

tfds.download.DownloadManager.download_and_extract = lambda self, url: sys.argv[1]
data = load_cifar10(source="tfds", validation_fraction=0.0)
np.savez(sys.argv[2], train_images=data.train_images, train_labels=data.train_labels,
         test_images=data.test_images, test_labels=data.test_labels, source=data.source)
"""


def test_tfds_path_prepares_cifar10_from_the_original_archive(tmp_path, data_dir):
    """The online path offline: tensorflow-datasets prepares CIFAR-10 from files in the original
    binary release's format (the first 8 real images of each batch) and `load_cifar10(source="tfds")`
    returns them. A fresh install without tfds' undeclared dependencies fails here."""
    from nasjax.data.cifar10 import TEST_FILE, TRAIN_FILES, _read_batch

    folder = tmp_path / "download" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    (folder / "batches.meta.txt").write_text("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\n"
                                             "ship\ntruck\n")
    expected = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        images, labels = (a[:8] for a in _read_batch(data_dir / FOLDER / name))
        # Binary release: per image one label byte, then 1024 red, 1024 green, 1024 blue bytes.
        rows = np.concatenate([labels[:, None].astype(np.uint8), images.transpose(0, 3, 1, 2).reshape(8, -1)], 1)
        (folder / f"{name}.bin").write_bytes(rows.tobytes())
        split = "test" if name == TEST_FILE else "train"
        expected.setdefault(split, []).append((images, labels))
    out = tmp_path / "out.npz"
    env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _TFDS_SCRIPT, str(folder.parent), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    assert str(got["source"]) == "tfds"
    for split in ("train", "test"):
        images = np.concatenate([i for i, _ in expected[split]])
        labels = np.concatenate([l for _, l in expected[split]])
        assert got[f"{split}_images"].dtype == np.uint8 and got[f"{split}_labels"].dtype == np.int32
        # tfds shuffles the examples: compare (image, label) pairs as sets.
        want = sorted(i.tobytes() + bytes([l]) for i, l in zip(images, labels))
        have = sorted(i.tobytes() + bytes([int(l)]) for i, l in zip(got[f"{split}_images"],
                                                                     got[f"{split}_labels"]))
        assert have == want


def test_normalize_statistics(unsplit):
    x = normalize(unsplit.train_images)
    chex.assert_type(x, jnp.float32)
    chex.assert_shape(x, unsplit.train_images.shape)
    # The constants are the full training set's; the subset must land close to zero mean, unit std.
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=0.05)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, atol=0.05)
    np.testing.assert_allclose(normalize(np.full((32, 32, 3), 255, np.uint8))[0, 0],
                               (1 - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD), rtol=1e-6)


# --- augmentations ------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [dict(), dict(padding_mode="reflect", cutout=16),
                                   dict(cutout=16, autoaugment=True)])
def test_augment_deterministic_and_key_dependent(cifar_batch, flags):
    a = augment_batch(jax.random.key(0), cifar_batch, **flags)
    chex.assert_trees_all_equal(a, augment_batch(jax.random.key(0), cifar_batch, **flags))
    chex.assert_shape(a, cifar_batch.shape)
    chex.assert_type(a, jnp.float32)
    b = augment_batch(jax.random.key(1), cifar_batch, **flags)
    assert not np.array_equal(a, b)
    # Each image gets its own key: not all images share one transformation.
    assert not all(np.array_equal(a[i] - cifar_batch[i], a[0] - cifar_batch[0]) for i in range(1, 8))


def _synthetic(n):
    """n copies of a (32, 32, 3) image with distinct positive values, so every position is identifiable."""
    return jnp.tile(jnp.arange(1.0, 32 * 32 * 3 + 1).reshape(1, 32, 32, 3), (n, 1, 1, 1))


@pytest.mark.parametrize("mode, np_mode", [("zeros", "constant"), ("reflect", "reflect")])
def test_crop_is_a_window_of_the_padded_image(mode, np_mode):
    """Training crops (`TrainConfig.crop_padding`, the CIFAR protocol's 4) shift the image by every
    offset in [-4, 4], both ways, and by no other."""
    padding = TrainConfig().crop_padding
    assert padding == 4
    x = _synthetic(512)
    out = np.asarray(augment_batch(jax.random.key(5), x, crop_padding=padding, flip=False,
                                   padding_mode=mode, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    padded = np.pad(np.asarray(x[0]), ((4, 4), (4, 4), (0, 0)), mode=np_mode)
    shifts = []
    for img in out:
        pixel = (int(img[16, 16, 0]) - 1) // 3  # the centre pixel's position in the original image
        dy, dx = pixel // 32 - 16, pixel % 32 - 16
        assert np.array_equal(img, padded[4 + dy:4 + dy + 32, 4 + dx:4 + dx + 32])
        shifts.append((dy, dx))
    dys, dxs = zip(*shifts)
    assert set(dys) == set(dxs) == set(range(-4, 5))


def test_zero_padding_is_black_after_normalization():
    x = normalize(np.full((16, 32, 32, 3), 200, np.uint8))
    out = augment_batch(jax.random.key(2), x, flip=False)
    black = normalize(np.zeros((3,), np.uint8))
    is_black = np.all(np.isclose(out, black), axis=-1)
    assert is_black.any() and np.all(np.isclose(out, black) | np.isclose(out, x[0, 0, 0]))


def test_flip_mirrors_half_the_time():
    x = _synthetic(64)
    out = np.asarray(augment_batch(jax.random.key(7), x, crop_padding=0))
    flipped = np.array([np.array_equal(o, x[0, :, ::-1]) for o in out])
    kept = np.array([np.array_equal(o, x[0]) for o in out])
    assert np.all(flipped ^ kept) and 16 < flipped.sum() < 48


@pytest.mark.parametrize("length", [8, 16])
def test_cutout_zeroes_one_clipped_square(length):
    x = _synthetic(64)
    out = np.asarray(jax.vmap(random_cutout, in_axes=(0, 0, None))(jax.random.split(jax.random.key(3), 64),
                                                                   x, length))
    full = 0
    for img, src in zip(out, np.asarray(x)):
        zero = np.all(img == 0, axis=-1)
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert h <= length and w <= length and zero.sum() == h * w  # one axis-aligned rectangle
        # Clipped only at the border; untouched pixels keep their values.
        assert h == length or rows[0] == 0 or rows[-1] == 31
        assert w == length or cols[0] == 0 or cols[-1] == 31
        np.testing.assert_array_equal(img[~zero], src[~zero])
        full += h == w == length
    assert full > 10


def test_cutout_applies_after_normalization(cifar_batch):
    out = augment_batch(jax.random.key(4), cifar_batch, crop_padding=0, flip=False, cutout=16)
    assert np.all(np.sum(np.all(out == 0, axis=-1), axis=(1, 2)) >= 8 * 8)


# --- AutoAugment ------------------------------------------------------------------------------------------
def _pil_reference(name, image, level, sign):
    """Popien's PIL implementation of one op (geometric ops with PIL's default nearest resampling)."""
    fill, m = (128, 128, 128), level / 9
    im = Image.fromarray(image)
    affine = {"ShearX": (1, 0.3 * m * sign, 0, 0, 1, 0), "ShearY": (1, 0, 0, 0.3 * m * sign, 1, 0),
              "TranslateX": (1, 0, 150 / 331 * m * 32 * sign, 0, 1, 0),
              "TranslateY": (1, 0, 0, 0, 1, 150 / 331 * m * 32 * sign)}
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    if name in affine:
        out = im.transform(im.size, Image.AFFINE, affine[name], fillcolor=fill)
    elif name in enhance:
        out = enhance[name](im).enhance(1 + 0.9 * m * sign)
    else:
        out = {"Rotate": lambda: im.rotate(30 * m * sign, fillcolor=fill),
               "AutoContrast": lambda: ImageOps.autocontrast(im), "Invert": lambda: ImageOps.invert(im),
               "Equalize": lambda: ImageOps.equalize(im),
               "Solarize": lambda: ImageOps.solarize(im, 256 - 256 * m),
               "Posterize": lambda: ImageOps.posterize(im, int(np.round(8 - 4 * m)))}[name]()
    return np.asarray(out, np.float32)


@pytest.mark.parametrize("name", sorted(OPS))
def test_autoaugment_ops_match_pil(cifar, name):
    images = cifar.test_images[:6]
    for level in (3, 9):
        for seed in (0, 1):
            key = jax.random.key(seed)
            sign = 1.0 if jax.random.bernoulli(key) else -1.0  # the ops' own sign draw
            ours = np.stack([apply_op(name, key, jnp.asarray(im, jnp.float32), level) for im in images])
            ref = np.stack([_pil_reference(name, im, level, sign) for im in images])
            diff = np.abs(ours - ref)
            # PIL rounds some intermediates differently: off-by-one values, rarely two.
            assert diff.max() <= 2 and np.mean(diff > 1) < 1e-3, (name, level, sign, diff.max())


def test_policy_table():
    assert len(CIFAR10_POLICY) == 25
    for sub in CIFAR10_POLICY:
        assert len(sub) == 2
        for op, prob, level in sub:
            assert op in OPS and 0.0 <= prob <= 1.0 and 0 <= level <= 9
    with pytest.raises(ValueError, match="unknown AutoAugment op 'Blur'"):
        apply_op("Blur", jax.random.key(0), jnp.zeros((32, 32, 3)), 3)


def test_autoaugment_range_and_determinism(cifar):
    images = jnp.asarray(cifar.train_images[:64], jnp.float32)
    keys = jax.random.split(jax.random.key(9), 64)
    run = jax.jit(jax.vmap(cifar10_autoaugment))
    out = run(keys, images)
    chex.assert_shape(out, images.shape)
    chex.assert_trees_all_equal(out, run(keys, images))
    assert out.min() >= 0 and out.max() <= 255 and np.array_equal(out, np.round(out))
    changed = np.any(out != images, axis=(1, 2, 3))
    assert 0 < changed.sum() < 64  # some sub-policies fire, some draws apply nothing


def test_autoaugment_in_augment_batch_only_adds_the_policy_and_jits_inside_user_code(cifar):
    # Same key -> same crop and flip draws; the policy changes some images and leaves the others as they were.
    x = normalize(cifar.train_images[:64])
    key = jax.random.key(11)
    plain = augment_batch(key, x)
    with_aa = jax.jit(lambda k, x: augment_batch(k, x, autoaugment=True))(key, x)  # as a train step calls it
    pixels = (np.asarray(with_aa) * np.array(CIFAR10_STD) + np.array(CIFAR10_MEAN)) * 255
    assert pixels.min() > -1e-3 and pixels.max() < 255 + 1e-3
    differ = [not np.allclose(a, b, atol=1e-4) for a, b in zip(plain, with_aa)]
    assert 0 < sum(differ) < 64



def test_take_cuts_each_part_and_names_a_short_one(cifar):
    small = cifar.take(train=64, test=32)
    np.testing.assert_array_equal(small.train_images, cifar.train_images[:64])
    np.testing.assert_array_equal(small.test_labels, cifar.test_labels[:32])
    assert len(small.val_labels) == len(cifar.val_labels)  # 0: the whole part
    with pytest.raises(ValueError, match="val images"):
        cifar.take(val=len(cifar.val_labels) + 1)
