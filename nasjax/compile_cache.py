"""Compiled programs kept on disk, so that a second process loads what an earlier one compiled.

On CPU a ConvNet's per-layer-shape programs (the layered engine) compile in ~0.1 s each, a whole
network's training program in seconds, a traced DARTS step in ~16 s; every new process pays them again
unless they are cached. `use_compile_cache()` turns on JAX's persistent compilation cache for every
program compiled after it, however short its compilation: JAX's default floor (1 s) would skip exactly
the many small programs nasjax shares. The programs loaded are those compiled, so results are the same
bits with and without the cache.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV = "NASJAX_COMPILE_CACHE"


def use_compile_cache(default: str | os.PathLike | None = None) -> pathlib.Path:
    """Cache every program compiled from now on, in the first of: JAX's configured folder
    ($JAX_COMPILATION_CACHE_DIR), $NASJAX_COMPILE_CACHE, `default`, ~/.cache/nasjax/xla (under
    $XDG_CACHE_HOME when set). Returns the folder used. Call it before the process compiles anything:
    JAX decides at its first compilation whether the process uses a cache (so a library call made
    later, e.g. by a script run inside a test process, changes nothing there)."""
    home = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "nasjax" / "xla"
    folder = pathlib.Path(jax.config.jax_compilation_cache_dir or os.environ.get(ENV) or default or home)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder
