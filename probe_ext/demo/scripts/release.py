"""release: the same native CPU work as hold.py, releasing the GIL around it.

Py_BEGIN_ALLOW_THREADS (the C++ twin of PyO3's allow_threads) lets both
threads compute at once: near-zero GIL holds and a parallel speed-up.
"""
from demo_common import native_sum_in_threads

if __name__ == "__main__":
    native_sum_in_threads(release_gil=True)
