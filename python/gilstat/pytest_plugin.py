"""pytest plugin: `pytest -p gilstat.pytest_plugin` (automatic where gilstat is
installed, through the `pytest11` entry point).

Nothing happens, not even loading the probe, until a test asks for the
`gilstat` fixture:

    def test_compress_releases_gil(gilstat):
        gilstat.assert_releases_gil(mylib.compress, data)

    def test_workers(gilstat):
        with gilstat.measure() as m:
            run_workers()
        assert m.thread("worker-0")["wait_s"] < 0.1

When such a test fails, the text report of its last measurement is added to
the failure output (a "gilstat" section).
"""
import pytest

_SECTION = "gilstat report of the test's last measurement"


class GilstatFixture:
    """What the `gilstat` fixture gives: measure() and the assertions, with the
    test's measurements kept for its failure output."""

    def __init__(self):
        self.measurements = []

    def measure(self):
        import gilstat

        m = gilstat.measure()
        self.measurements.append(m)
        return m

    def assert_releases_gil(self, fn, *args, max_held_fraction=0.05, **kwargs):
        from gilstat import _assertions

        __tracebackhide__ = True
        return _assertions.check_releases_gil(self.measure, fn, args, kwargs,
                                              max_held_fraction)

    def assert_callback_rate(self, fn, *args, module, max_per_s, **kwargs):
        from gilstat import _assertions

        __tracebackhide__ = True
        return _assertions.check_callback_rate(self.measure, fn, args, kwargs, module,
                                               max_per_s)


@pytest.fixture
def gilstat():
    """gilstat.measure(), assert_releases_gil() and assert_callback_rate() for this test."""
    return GilstatFixture()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    fixture = getattr(item, "funcargs", {}).get("gilstat")
    if not isinstance(fixture, GilstatFixture):
        return
    ended = [m for m in fixture.measurements if m._report is not None]
    if ended:
        rep.sections.append((_SECTION, ended[-1].text()))
