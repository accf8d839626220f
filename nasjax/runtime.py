"""Process-wide runtime settings: XLA flags, the compile cache on disk, and host memory reuse.

Each is set once per process by the entry point (a script's `main`, a test's subprocess), never by
library code that a caller imports, and none changes a result's bits:

- `avoid_cpu_scheduler_deadlock()` adds `CPU_SCHEDULER_FLAG` to XLA_FLAGS (processes that vmap searches
  over many seeds: sample_efficiency.py, lanas_transfer.py, and ri_benchmark.py, whose trained part
  then pays the training slowdown below rather than risk a hang in its tabular part).
- `use_compile_cache()` keeps every program compiled afterwards on disk, so that a second process loads
  what an earlier one compiled: on CPU a ConvNet's per-layer-shape programs (the layered engine)
  compile in ~0.1 s each, a whole network's training program in seconds, a traced DARTS step in
  ~16 s. JAX's default floor (1 s) would skip exactly the many small programs nasjax shares, so every
  program is cached. The programs loaded are those compiled: the same bits with and without it.
- `cpu_identity()` names the host CPU: XLA:CPU compiles for the features of the CPU it runs on, so the
  same program can sum in another order (other low bits) on another CPU model.
- `reuse_host_memory()` keeps freed host memory for reuse. glibc's malloc serves each request of
  32 MiB or more (a 128x32x32x64 float32 activation is exactly 32 MiB) with a fresh `mmap` and unmaps
  it on `free`; every such buffer then costs a page fault per 4 KiB page when first written, and
  XLA:CPU (like PyTorch's CPU allocator) allocates a new output for every op of every step. On this
  project's CPU an elementwise op over 128x32x32x64 took 10.4 ms, 1.1 ms with the memory kept; a
  transpose 12.9 against 3.5 ms. `mallopt` (M_MMAP_MAX 0, M_TRIM_THRESHOLD 2 GiB) makes malloc serve
  large requests from its heap and keep what is freed there: the process holds on to its peak host
  memory until it exits, and so do the processes it starts afterwards (glibc reads the same settings
  from their environment, `CHILD_ENV`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import pathlib
import warnings

import jax

# XLA:CPU (jaxlib 0.10.2) deadlocks in some vmapped searches under its concurrency-optimized thunk
# scheduler: NAO on NAS-Bench-201, jit(vmap(lax.scan(ask/tell))) over 48 or more seeds, never finishes
# (every worker thread idle, the caller waiting; 32 seeds finish in 0.5 s). Turning the scheduler off
# is the only remedy found; a jit's own compiler_options do not reach it, and it costs training
# programs ~13 % (a DARTS step, 362 -> 411 ms), so only processes that vmap searches turn it off.
CPU_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

COMPILE_CACHE_ENV = "NASJAX_COMPILE_CACHE"

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
_MMAP_MAX, _TRIM_BYTES = 0, 2**31 - 1  # no mmapped requests; keep up to 2 GiB of free heap
# The same two settings as glibc reads them from the environment when a process starts: what a child
# process (a Ray worker, a subprocess) needs in its environment to keep memory the same way.
CHILD_ENV = {"MALLOC_MMAP_MAX_": str(_MMAP_MAX), "MALLOC_TRIM_THRESHOLD_": str(_TRIM_BYTES)}


def avoid_cpu_scheduler_deadlock() -> None:
    """Add `CPU_SCHEDULER_FLAG` to XLA_FLAGS unless the user set that option. Takes effect only if
    called before the process's first JAX computation (XLA reads its flags once)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_SCHEDULER_FLAG.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {CPU_SCHEDULER_FLAG}".strip()


def use_compile_cache(default: str | os.PathLike | None = None) -> pathlib.Path:
    """Cache every program compiled from now on, in the first of: JAX's configured folder
    ($JAX_COMPILATION_CACHE_DIR), $NASJAX_COMPILE_CACHE, `default`, ~/.cache/nasjax/xla (under
    $XDG_CACHE_HOME when set). Returns the folder used. Call it before the process compiles anything:
    JAX decides at its first compilation whether the process uses a cache (so a library call made
    later, e.g. by a script run inside a test process, changes nothing there).

    A cache entry that cannot be read or written (a full or read-only disk) only costs a compilation,
    so JAX's warning per program is silenced: the run's own files report such a disk."""
    home = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "nasjax" / "xla"
    folder = pathlib.Path(jax.config.jax_compilation_cache_dir or os.environ.get(COMPILE_CACHE_ENV)
                          or default or home)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry")
    return folder


def reuse_host_memory() -> bool:
    """Keep freed host memory for reuse, for every allocation from now on, PyTorch's included: in this
    process, and (through `CHILD_ENV`, set in os.environ) in every process it starts afterwards.
    Returns whether it applied: False where the C library has no glibc `mallopt` (macOS, musl), which
    changes nothing."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not (mallopt(_M_MMAP_MAX, _MMAP_MAX) and mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)):
        return False
    os.environ.update(CHILD_ENV)
    return True


def cpu_identity() -> str:
    """The host CPU as "model name (flags <digest>)" from /proc/cpuinfo ("unknown" elsewhere): equal
    identities compile XLA:CPU programs for the same instruction set."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]
    return f"{fields.get('model name', 'unknown')} (flags {flags})"
