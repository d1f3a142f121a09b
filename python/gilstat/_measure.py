"""gilstat.measure(): the GIL of this process between a `with` block's enter and exit.

Who reads the rings: a `gilstat drain` child process, handed the probe's
region fd.  It drains the rings into a recording (the same file `gilstat
record` writes) and, at the end, prints that recording's `gilstat report
--json`: the report and the file are the CLI's own, byte for byte.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref

from gilstat import _probe
from gilstat._errors import GilstatError

# One reader per process: a second measure() while one runs is refused.
_active = threading.Lock()

_PR_SET_PTRACER = 0x59616D61  # prctl: Yama lets this pid trace us


def _let_trace(pid):
    """Lets our reader stop our threads for the long-hold stacks where Yama's
    ptrace_scope 1 allows only ancestors to trace (a no-op elsewhere)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PTRACER, ctypes.c_ulong(pid), 0, 0, 0)
    except (OSError, AttributeError):
        pass

_NOT_ENDED = "the measurement has not ended: its report exists after the `with` block"


def measure():
    """A context manager measuring every thread of this process:

        with gilstat.measure() as m:
            ...
        m.report()        # the dict of `gilstat report --json`
        m.thread("name")  # one thread's row
        m.save("x.gilstat")
    """
    return Measurement()


class Measurement:
    def __init__(self):
        self._report = None
        self._recording = None
        self._proc = None
        self._dir = None
        # The reader takes the holder's stack of holds longer than this (ms)
        # while another thread waits (assert_releases_gil's message); None: no stacks.
        self.hold_stacks_ms = None
        self.reader_notes = ""  # what the reader said on stderr (why no stacks, ...)

    # -- measuring ---------------------------------------------------------

    def __enter__(self):
        if not _active.acquire(blocking=False):
            raise GilstatError("gilstat.measure() is already measuring in this process",
                               "measurements cannot be nested or overlap (one reader per "
                               "process): measure the outer block only")
        try:
            self._begin()
        except BaseException:
            self._abandon()
            _active.release()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._end()
        except GilstatError:
            if exc_type is None:
                raise
            # The block's own exception is the one to see; the reader's failure
            # is on stderr.
            print("gilstat: the measurement failed as well: %s" % sys.exc_info()[1],
                  file=sys.stderr)
        finally:
            _active.release()
        return False

    def _begin(self):
        binary = _probe.locations()[0]
        if not binary or not os.path.exists(binary):
            raise GilstatError("the gilstat binary was not found (looked for %s)" % binary,
                               "put gilstat on PATH or set GILSTAT_BIN")
        fd = _probe.region_fd()
        self._report = None
        self._dir = tempfile.mkdtemp(prefix="gilstat-measure-")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._recording = os.path.join(self._dir, "measure.gilstat")
        # Started while the probe is not armed (no fork or vfork under the hooks);
        # it opens the region only after the "go" below, once the probe's session
        # is the new one.
        argv = [binary, "drain", "--fd", str(fd), "-o", self._recording]
        if self.hold_stacks_ms:
            argv += ["--hog-threshold", "%gms" % self.hold_stacks_ms]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, pass_fds=(fd,))
        if self.hold_stacks_ms:
            _let_trace(self._proc.pid)
        # The probe arms here, in this thread, with the GIL held (PyDLL): this
        # thread is the GIL's holder from this instant.
        _probe.start("heartbeat", reader=self._proc.pid)
        try:
            self._proc.stdin.write(b"go\n")
            self._proc.stdin.flush()
        except OSError:
            pass  # it exited: the missing "ready" says why
        if self._proc.stdout.readline() != b"ready\n":
            _probe.stop()
            raise GilstatError("the gilstat reader did not start: %s" % self._reader_failure())

    def _end(self):
        proc, self._proc = self._proc, None
        try:
            out, err = proc.communicate(b"stop\n")
        except OSError:  # it exited already: what it said is still readable
            out, err = proc.stdout.read(), proc.stderr.read()
            proc.wait()
        # The reader asked the probe to unhook; this makes sure even if it died.
        _probe.stop()
        said = err.decode("utf-8", "replace").strip()
        if proc.returncode != 0:
            raise GilstatError("the gilstat reader failed (exit %d): %s"
                               % (proc.returncode, said))
        self.reader_notes = said
        # Its warnings (a probe that did not confirm its stop, ...); the notes about
        # stacks go into the assertion's message instead.
        warnings = [l for l in said.splitlines() if "long-hold stacks" not in l]
        if warnings:
            print("\n".join(warnings), file=sys.stderr)
        self._report = json.loads(out.decode("utf-8"))

    def _reader_failure(self):
        proc, self._proc = self._proc, None
        try:
            _, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        return err.decode("utf-8", "replace").strip() or "exit %s" % proc.returncode

    def _abandon(self):
        if self._proc is not None:
            self._proc.kill()
            self._proc.communicate()
            self._proc = None

    # -- results -----------------------------------------------------------

    def report(self):
        """The measurement as a dict: exactly `gilstat report --json` of its recording."""
        if self._report is None:
            raise GilstatError(_NOT_ENDED)
        return self._report

    def thread(self, name_or_tid):
        """One thread's row of report()["threads"], by tid (int) or thread name.
        Raises LookupError when no thread, or more than one, has that name."""
        rows = self.report()["threads"]
        if isinstance(name_or_tid, int):
            found = [t for t in rows if name_or_tid in (t["tid"], t.get("host_tid"))]
        else:
            found = [t for t in rows if t["name"] == name_or_tid]
        if len(found) == 1:
            return found[0]
        if found:
            raise LookupError("%d threads are named %r (tids %s): ask for one by its tid"
                              % (len(found), name_or_tid,
                                 ", ".join(str(t["tid"]) for t in found)))
        known = ", ".join("%s (%d)" % (t["name"], t["tid"]) for t in rows[:12])
        raise LookupError("no thread %r in this measurement; threads: %s"
                          % (name_or_tid, known or "none"))

    def save(self, path):
        """Writes the recording, a normal gilstat recording (`gilstat report PATH`,
        `gilstat export PATH ...`)."""
        if self._report is None:
            raise GilstatError(_NOT_ENDED)
        shutil.copyfile(self._recording, path)

    def text(self):
        """The text report of `gilstat report` for this measurement."""
        if self._report is None:
            raise GilstatError(_NOT_ENDED)
        binary = _probe.locations()[0]
        done = subprocess.run([binary, "report", self._recording], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        return done.stdout.decode("utf-8", "replace")
