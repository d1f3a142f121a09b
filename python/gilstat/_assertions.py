"""Assertions about the GIL, for test suites."""
import os
import sys
import threading
import warnings

from gilstat._errors import GilstatError, GilstatWarning
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


HOLD_STACKS_MS = 10  # holds longer than this, while the competitor waits, get a stack
MAX_FRAMES = 16


def _frame_text(frame):
    if frame["kind"] == "python":
        return "%s (%s:%d)" % (frame["function"], frame["file"], frame["line"])
    where = os.path.basename(frame["object"]) if frame["object"] else "?"
    return "%s [%s]" % (frame["function"] or "??", where)


def longest_hold_text(m, row):
    """The message's lines about the thread's longest hold and its stack: the
    stack `gilstat drain` took (the holder stopped for a moment, as `record --pid`
    does) of fn's longest hold that kept the competitor waiting."""
    text = "longest hold %.3f ms (of %d holds)" % (row["hold_ns"]["max"] / 1e6,
                                                   row["hold_ns"]["count"])
    # Long holds that kept the competitor waiting while fn's thread was not
    # waiting itself: fn's thread held the GIL (main only joins).
    hogs = [e for e in m.report()["hogs"]["entries"]
            if any(w.startswith(COMPETITOR_THREAD + " (") for w in e["waiting"])
            and not any(w.startswith(FN_THREAD + " (") for w in e["waiting"]) and e["stack"]]
    if not hogs:
        why = m.reader_notes.strip() or (
            "no hold of this thread lasted %d ms while the competitor waited" % HOLD_STACKS_MS)
        return text + "; no stack (%s)" % why
    hog = max(hogs, key=lambda e: e["longest_s"])
    frames = [_frame_text(f) for f in hog["stack"][:MAX_FRAMES]]
    more = len(hog["stack"]) - len(frames)
    return "%s; the longest hold with a stack (%.3f ms, taken while it held the GIL), " \
           "innermost first:\n    %s%s" % (text, hog["longest_s"] * 1e3, "\n    ".join(frames),
                                            "\n    ... %d more" % more if more > 0 else "")


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
    m = new_measurement()
    m.hold_stacks_ms = HOLD_STACKS_MS
    with m:
        competitor.start()
        try:
            outcome = _run_in_thread(FN_THREAD, fn, args, kwargs)
        finally:
            stop.set()
            competitor.join()
    if "error" in outcome:
        raise outcome["error"]
    row = m.thread(outcome["tid"])
    run_s = row["lifetime_s"]
    fraction = row["held_s"] / run_s if run_s > 0 else 0.0
    if fraction > max_held_fraction:
        raise AssertionError(
            "%s held the GIL %.1f%% of its run time (max_held_fraction %.1f%%): held %.3f s "
            "of %.3f s run time (waited %.3f s, released %.3f s); the competing pure-Python "
            "thread held it %.3f s; %s" % (
                getattr(fn, "__qualname__", repr(fn)), 100 * fraction, 100 * max_held_fraction,
                row["held_s"], run_s, row["wait_s"], row["released_s"],
                m.thread(COMPETITOR_THREAD)["held_s"], longest_hold_text(m, row)))
    return outcome["result"]


def module_row(report, module):
    """The report's "GIL by module" row of `module`: a module object (matched by
    its file) or a name ("_mylib" matches _mylib.cpython-312-x86_64-linux-gnu.so).
    Raises LookupError listing the hooked modules when none matches."""
    if report.get("modules") is None:
        raise GilstatError("this measurement has no per-module accounting (the probe did not "
                           "hook extension modules: GILSTAT_NO_MODULE_HOOKS is set?)")
    rows = report["modules"]["rows"]
    path = getattr(module, "__file__", None)
    if path:
        found = [r for r in rows if os.path.realpath(r["path"]) == os.path.realpath(path)]
    else:
        name = getattr(module, "__name__", module)
        found = [r for r in rows if r["name"] == name or r["name"].split(".")[0] == name]
    if len(found) == 1:
        return found[0]
    names = ", ".join(sorted(r["name"] for r in rows)) or "none"
    raise LookupError("%s %r among the extension modules gilstat hooked (%s)"
                      % ("more than one match for" if found else "no", path or module, names))


def assert_callback_rate(fn, *args, module, max_per_s, **kwargs):
    """Runs fn(*args, **kwargs) in this thread, measured by gilstat, and raises
    AssertionError when the extension `module` (a module object, or its name)
    called back into Python from threads without the GIL (PyGILState_Ensure)
    more than `max_per_s` times per second of the measurement.  Each such
    callback has to win the GIL first.  Returns fn's result otherwise."""
    __tracebackhide__ = True
    return check_callback_rate(measure, fn, args, kwargs, module, max_per_s)


def check_callback_rate(new_measurement, fn, args, kwargs, module, max_per_s):
    __tracebackhide__ = True
    if gil_disabled():
        warn_gil_disabled("assert_callback_rate(%s)" % getattr(fn, "__name__", "fn"))
        return fn(*args, **kwargs)
    with new_measurement() as m:
        result = fn(*args, **kwargs)
    report = m.report()
    row = module_row(report, module)
    if row["callbacks_per_s"] > max_per_s:
        raise AssertionError(
            "%s called back into Python %.0f times per second (max_per_s %g): %d callbacks "
            "from threads without the GIL (PyGILState_Ensure) in %.3f s; they waited %.3f s "
            "for the GIL and held it %.3f s. Fewer, larger callbacks (collect results in "
            "native code and hand them over in batches) cut both" % (
                row["name"], row["callbacks_per_s"], max_per_s, row["callbacks"],
                report["duration_s"], row["callback_wait_s"], row["callback_held_s"]))
    return result
