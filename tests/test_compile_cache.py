"""`nasjax.runtime`: a second process loads the programs the first one compiled, same bits."""

import json
import os
import subprocess
import sys

import pytest

# Trains two small ConvNets with the layered engine (the CPU default) in a fresh process using the
# compile cache at argv[1]; prints [programs asked of the cache, found in it, val accs, test accs].
SCRIPT = r"""
import json, sys
import jax, numpy as np
from jax import monitoring
from nasjax.runtime import use_compile_cache
from nasjax.data import load_cifar10
from nasjax.spaces import ConvNetSpace
from nasjax.train import TrainConfig, train_population

counts = {"/jax/compilation_cache/compile_requests_use_cache": 0, "/jax/compilation_cache/cache_hits": 0}
def count(event, **kwargs):
    if event in counts:
        counts[event] += 1
monitoring.register_event_listener(count)
folder = use_compile_cache(sys.argv[1])
assert str(folder) == sys.argv[1], folder
space = ConvNetSpace(channels=(8, 16), kernels=(3,), max_depth=2)
archs = np.stack([space.encode([(8, 3)]), space.encode([(16, 3), (8, 3)])])
data = load_cifar10().take(train=64, val=32, test=32)
results, _ = train_population(space, archs, data, TrainConfig(epochs=1, batch_size=32),
                              jax.random.PRNGKey(0), execution="layered")
print(json.dumps([*counts.values(), [r.val_acc for r in results], [r.test_acc for r in results]]))
"""


def run_fresh(cache_dir) -> list:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "NASJAX_COMPILE_CACHE")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(cache_dir)], capture_output=True, text=True,
                         env=env)
    if out.returncode:
        pytest.fail(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_second_process_compiles_nothing_and_gets_the_same_bits(tmp_path):
    cache = tmp_path / "xla"
    asked, found, val_acc, test_acc = run_fresh(cache)
    assert asked > 10 and found == 0  # an empty cache: every program compiled, and written
    assert any(cache.iterdir())
    asked_again, found_again, val_again, test_again = run_fresh(cache)
    assert asked_again == asked and found_again == asked  # every program loaded, none compiled
    assert (val_again, test_again) == (val_acc, test_acc)


# Compiles three programs with every cache write failing as on a full disk; prints what it warned.
FULL_DISK = r"""
import errno, sys, warnings
from jax._src import compilation_cache
from nasjax.runtime import use_compile_cache

use_compile_cache(sys.argv[1])

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

compilation_cache.put_executable_and_time = full
import jax, jax.numpy as jnp
with warnings.catch_warnings(record=True) as seen:
    for n in range(3):
        jax.jit(lambda x: x * n + 1)(jnp.ones(3)).block_until_ready()
print(len([w for w in seen if "compilation cache" in str(w.message)]))
"""


def test_cache_entries_that_cannot_be_written_warn_nothing(tmp_path):
    """A full disk costs compilations, not a warning per program: the scripts report the disk in one
    line when their own files cannot be written."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "NASJAX_COMPILE_CACHE")}
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "xla")], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "0" and "persistent compilation cache" not in out.stderr
