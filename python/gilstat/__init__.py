"""gilstat from Python: measure the GIL of this process, exactly.

    import gilstat

    with gilstat.measure() as m:
        work()
    print(m.thread("MainThread")["held_s"])

    gilstat.assert_releases_gil(my_extension.compute, data)
    gilstat.assert_callback_rate(my_extension.run_pool, module=my_extension,
                                 max_per_s=1000)

The probe (libgilstat_probe.so) is loaded into this process when the first
measurement starts, never at import; a `gilstat drain` child process reads
its rings and writes a normal recording (docs/python-api.md).
"""
import sys

if not sys.platform.startswith("linux"):
    raise ImportError("gilstat works on Linux only (this is %s)" % sys.platform)
if sys.implementation.name != "cpython":
    raise ImportError("gilstat measures CPython's GIL; this is %s" % sys.implementation.name)
if not (3, 8) <= sys.version_info[:2] <= (3, 15):
    raise ImportError("gilstat supports CPython 3.8 to 3.15; this is CPython %d.%d"
                      % sys.version_info[:2])

from gilstat._errors import GilstatError, GilstatWarning  # noqa: E402
from gilstat._measure import Measurement, measure  # noqa: E402
from gilstat._assertions import assert_callback_rate, assert_releases_gil  # noqa: E402

__all__ = ["measure", "Measurement", "assert_releases_gil", "assert_callback_rate",
           "GilstatError", "GilstatWarning"]
