"""hold: the same native CPU work in 2 threads, with the GIL kept throughout.

The classic "forgot to release the GIL" extension: while one thread is in
native code the other cannot even start its own native work, so two cores
do the job of one. Compare with release.py.
"""
from demo_common import native_sum_in_threads

if __name__ == "__main__":
    native_sum_in_threads(release_gil=False)
