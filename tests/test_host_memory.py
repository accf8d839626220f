"""`reuse_host_memory`: a large buffer freed and allocated again is not page-faulted in again, in the
process and in the processes it starts afterwards."""

import pathlib
import subprocess
import sys

import pytest

# Minor page faults of allocating, writing and freeing a 64 MiB buffer 4 times.
_FAULTS = """
import ctypes, ctypes.util, resource
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        p = libc.malloc(64 << 20)
        ctypes.memset(p, 1, 64 << 20)
        libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""
# Run in a fresh process (the setting is process-wide): the faults before and after the call (the
# first pass after it grows the heap once), then those of a child started after it, which never calls it.
_PROBE = _FAULTS + f"""
import subprocess, sys
from nasjax.runtime import reuse_host_memory
default = faults()
applied = reuse_host_memory()
faults()
reused = faults()
child = subprocess.run([sys.executable, "-c", {_FAULTS + "faults(); print(faults())"!r}],
                       capture_output=True, text=True, check=True).stdout.strip()
print(applied, default, reused, child)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    applied, default, reused, child = out.split()
    assert applied == "True"
    pages = 4 * (64 << 20) // 4096
    thp = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not (thp.exists() and "[always]" in thp.read_text()):  # else mmapped buffers fault per 2 MiB page
        assert int(default) > pages // 2, out  # glibc mmaps each buffer: about a fault per 4 KiB page
    assert int(reused) < pages // 20, out
    assert int(child) < pages // 20, out
