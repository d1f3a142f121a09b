"""The shared region's resident size follows the live threads, not every thread that
ever ran: the CLI gives back the pages of an exited thread's ring (docs/region.md,
"What stays resident"). 40 threads each write their whole ring (768 KiB: 30 MiB in
all) and end; afterwards the target holds little of the region. Heavy tier, ~4 s.
"""
import pytest

from conftest import workload

RING_KIB = 32768 * 24 // 1024


def test_exited_threads_rings_are_given_back(gilstat, heavy):
    result = gilstat("run", "--json", "--", heavy.path, workload("ring_memory.py"))
    assert result.returncode == 0, result.describe()
    report, truth = result.report(), result.program_json()
    ctx = result.describe()
    if truth["rss_shmem_kib"] is None:
        pytest.skip("this kernel's /proc/self/status has no RssShmem")
    print("RssShmem after the threads ended: %d KiB (their rings: %d KiB)"
          % (truth["rss_shmem_kib"], 40 * RING_KIB))
    # The threads really wrote their rings: every call an acquisition.
    assert sum(t["acquisitions"] for t in report["threads"]) >= truth["calls"], ctx
    # The header, the name log and the main thread's ring at most.
    assert truth["rss_shmem_kib"] < 4 * RING_KIB, ctx
