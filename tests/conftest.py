"""Test set-up: several CPU host devices (for sharding tests) and the shared real data."""

import os
import pathlib

# Must happen before jax is imported anywhere: sharded code paths are tested on 4 host devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault(
    "NASJAX_DATA_DIR", str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


SLOW_TESTS = pathlib.Path(__file__).with_name("slow_tests.txt")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark slow the tests listed in slow_tests.txt (one per line: seconds, test id)."""
    slow = {line.split()[1] for line in SLOW_TESTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def assert_supernet_paths_equal_standalone():
    """`check(space, supernet, variables, x, archs, **network) -> traced`: for each arch,
    `nasjax.nn.supernet(space, **network)`'s path (genotype as data, one jitted program `traced`) against
    `nasjax.nn.build(space, arch, **network)` (genotype built in)
    on the same weights: training-mode logits, auxiliary logits, updated batch statistics and every
    gradient, with drop-path, within float rounding of each leaf's scale (the summation orders differ,
    and a batch of 4 makes the auxiliary head's batch norm over 4 values at 1x1 amplify that in a few
    small elements); and only the chosen ops' parameters get gradients."""
    import functools

    import chex
    import jax
    import jax.numpy as jnp

    import nasjax

    def check(space, supernet, variables, x, archs, **network):
        def loss(net, params, key, *genotype):
            (logits, aux), updates = net.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                               *genotype, train=True, rngs={"dropout": key},
                                               mutable=["batch_stats"])
            return jnp.sum(jnp.sin(logits)) + jnp.sum(aux ** 2), (logits, aux, updates)

        traced = jax.jit(jax.value_and_grad(functools.partial(loss, supernet), has_aux=True))
        for arch in archs:
            static = nasjax.nn.build(space, arch, **network)
            expected = jax.jit(jax.value_and_grad(functools.partial(loss, static), has_aux=True))(
                variables["params"], jax.random.key(1))
            actual = traced(variables["params"], jax.random.key(1), nasjax.nn.arch_data(space, arch))
            chex.assert_trees_all_equal_structs(actual, expected)
            for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
                scale = float(np.max(np.abs(e), initial=0.0))
                np.testing.assert_allclose(a, e, rtol=0, atol=1e-4 * scale + 1e-7,
                                           err_msg=jax.tree_util.keystr(path))
            grads = actual[1]
            touched = sum(int(np.count_nonzero(g)) for g in jax.tree.leaves(grads))
            chosen = nasjax.nn.param_count(space, arch, grads)
            assert 0.9 * chosen <= touched <= chosen
        return traced

    return check
