"""Test set-up: several CPU host devices (for sharding tests) and the shared real data."""

import os
import pathlib

# Must happen before jax is imported anywhere: sharded code paths are tested on 4 host devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault(
    "NASJAX_DATA_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder holding `cifar-10-batches-py/` and `nasbench201/` (real data)."""
    path = pathlib.Path(os.environ["NASJAX_DATA_DIR"])
    if not (path / "cifar-10-batches-py").is_dir():
        pytest.fail(f"real data not found under NASJAX_DATA_DIR={path}")
    return path


@pytest.fixture(scope="session")
def cifar(data_dir):
    """The real CIFAR-10 subset through the same local-folder path a user takes."""
    from nasjax.data import load_cifar10

    return load_cifar10(data_dir)


@pytest.fixture(scope="session")
def cifar_batch(cifar):
    """8 real normalized training images, float32 (8, 32, 32, 3)."""
    from nasjax.data import normalize

    return normalize(cifar.train_images[:8])


@pytest.fixture(scope="session")
def random_variables():
    """`random_variables(module, x, *args)`: variables of Flax `module` for input x (and further call
    arguments) without compiling its
    initialisers: the tree from `module.init` traced (`jax.eval_shape`), kernels drawn with numpy at
    LeCun scale, BatchNorm at identity. Compiling flax's threefry initialisers costs XLA on CPU several
    seconds per network, more than the forward passes the tests check."""
    import jax
    import jax.numpy as jnp

    def build(module, x, *args):
        rng = np.random.default_rng(0)

        def fill(path, leaf):
            name = jax.tree_util.keystr(path[-1:])
            if name in ("['scale']", "['var']"):
                return jnp.ones(leaf.shape, leaf.dtype)
            if name in ("['bias']", "['mean']"):
                return jnp.zeros(leaf.shape, leaf.dtype)
            return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), leaf.dtype)

        return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(module.init, jax.random.key(0), x, *args))

    return build
