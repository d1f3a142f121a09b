"""Assertions about the GIL, for test suites."""
import sys
import threading
import warnings

from gilstat._errors import GilstatWarning
from gilstat._measure import measure

FN_THREAD = "gilstat-fn"
COMPETITOR_THREAD = "gilstat-competitor"


def gil_disabled():
    """True on a free-threaded build running without its GIL (nothing can hold it)."""
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return is_enabled is not None and not is_enabled()


def warn_gil_disabled(what):
    warnings.warn("gilstat: %s passed without measuring: the GIL is disabled in this "
                  "free-threaded build (Python %s), so no thread can hold it"
                  % (what, sys.version.split()[0]), GilstatWarning, stacklevel=3)


def _run_in_thread(name, fn, args, kwargs):
    outcome = {}

    def body():
        outcome["tid"] = threading.get_native_id()
        try:
            outcome["result"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=body, name=name)
    thread.start()
    thread.join()
    return outcome


def _compete(stop):
    """Pure-Python work: wants the GIL all the time, so a thread that keeps it
    holds it against a real competitor (and one that releases it loses it)."""
    n = 0
    while not stop.is_set():
        n += 1


def longest_hold_line(report, row):
    """The line of the failure message about the thread's longest hold.  Where the
    report carries stacks of long holds, they belong here."""
    return "longest hold %.3f ms (of %d holds)" % (row["hold_ns"]["max"] / 1e6,
                                                   row["hold_ns"]["count"])


def assert_releases_gil(fn, *args, max_held_fraction=0.05, **kwargs):
    """Runs fn(*args, **kwargs) in a fresh thread while a pure-Python thread competes
    for the GIL, measured by gilstat.  Raises AssertionError when fn's thread held the
    GIL more than `max_held_fraction` of its run time; returns fn's result otherwise
    (fn's own exception propagates)."""
    __tracebackhide__ = True  # pytest shows the caller's line, not ours
    return check_releases_gil(measure, fn, args, kwargs, max_held_fraction)


def check_releases_gil(new_measurement, fn, args, kwargs, max_held_fraction):
    """assert_releases_gil, measured by new_measurement() (the pytest fixture keeps
    its measurements)."""
    __tracebackhide__ = True
    if gil_disabled():
        warn_gil_disabled("assert_releases_gil(%s)" % getattr(fn, "__name__", "fn"))
        outcome = _run_in_thread(FN_THREAD, fn, args, kwargs)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]
    stop = threading.Event()
    competitor = threading.Thread(target=_compete, args=(stop,), name=COMPETITOR_THREAD)
    with new_measurement() as m:
        competitor.start()
        try:
            outcome = _run_in_thread(FN_THREAD, fn, args, kwargs)
        finally:
            stop.set()
            competitor.join()
    if "error" in outcome:
        raise outcome["error"]
    report = m.report()
    row = m.thread(outcome["tid"])
    run_s = row["lifetime_s"]
    fraction = row["held_s"] / run_s if run_s > 0 else 0.0
    if fraction > max_held_fraction:
        raise AssertionError(
            "%s held the GIL %.1f%% of its run time (max_held_fraction %.1f%%): held %.3f s "
            "of %.3f s run time (waited %.3f s, released %.3f s); %s; the competing "
            "pure-Python thread held it %.3f s" % (
                getattr(fn, "__qualname__", repr(fn)), 100 * fraction, 100 * max_held_fraction,
                row["held_s"], run_s, row["wait_s"], row["released_s"],
                longest_hold_line(report, row), m.thread(COMPETITOR_THREAD)["held_s"]))
    return outcome["result"]
