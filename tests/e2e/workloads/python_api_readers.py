"""One reader per process (tests/e2e/test_python_api.py drives this over stdin):
measure() while `gilstat record --pid` reads this process, then a measurement
that `gilstat record --pid` tries to attach to."""
import sys

import gilstat


def step(text):
    print(text, flush=True)
    sys.stdin.readline()


step("ready")  # the test attaches `gilstat record --pid` now
try:
    with gilstat.measure():
        pass
    print("measured", flush=True)
except gilstat.GilstatError as e:
    print("refused: %s" % str(e).splitlines()[0], flush=True)
sys.stdin.readline()  # the recording has ended
with gilstat.measure() as m:
    step("measuring")  # the test tries `gilstat record --pid` now
print("done %d" % len(m.report()["threads"]), flush=True)
