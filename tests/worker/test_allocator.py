"""The process's malloc keeps what it frees: a pass that allocates, writes and frees the same tens of megabytes
again and again (through the C allocator, as torch's CPU tensors do) stops paying a page fault per page each
time (counted by the kernel, in fresh processes)."""

import subprocess
import sys
from pathlib import Path

import pytest

from worker.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]
SIZE = 20 * 2**20

PASSES = """
import ctypes, resource, sys
from worker.allocator import keep_freed_memory
tuned = sys.argv[1] == "tuned" and keep_freed_memory(2**30)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
SIZE = 20 * 2**20
def one_pass():  # four activations of 20 MB alive at once (a forward pass kept for its backward), written, then freed
    blocks = [libc.malloc(SIZE) for _ in range(4)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
one_pass()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_pass()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PASSES, mode], cwd=ROOT, env={"PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_spares_the_page_faults_of_every_pass():
    (default_took, default), (tuned_took, tuned) = faults("default"), faults("tuned")
    assert (default_took, tuned_took) == ("False", "True")
    assert keep_freed_memory(0) is False  # CONVLENS_MALLOC_KEEP_BYTES=0: glibc's defaults are left alone
    pages = 10 * 4 * SIZE // 4096  # every pass's pages, 10 passes
    assert default > pages / 2, default  # glibc's defaults: 20 MB blocks are fresh mmaps, faulted in each pass
    assert tuned < pages / 20, tuned
