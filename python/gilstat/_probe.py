"""The probe in this process, through ctypes.

ctypes, not an extension module: one pure-Python package for every
interpreter of the matrix, the free-threaded ones included (they cannot load
a stable-ABI extension).  The calls go through ctypes.PyDLL, which keeps the
GIL held: the thread that arms the probe is the GIL's holder at that instant,
as a thread the probe finds holding it at an attach.
"""
import ctypes
import errno
import os
import shutil
import sys

from gilstat._errors import GilstatError

# protocol.hpp: gilstat_probe_start's failures are -errno, or
# -(kStartStatusBase + Status) (start_failure).
_START_STATUS_BASE = 1 << 20
_STATUS_TEXT = {3: "this CPython version is not supported",
                4: "the probe found no GIL layout it knows in this interpreter",
                5: "the probe could not hook the GIL's pthread calls"}
_ENV_SHM_FD = "GILSTAT_SHM_FD"  # set by `gilstat run` (protocol.hpp kEnvShmFd)

_library = None
_region_fd = None
_region_pid = None  # the process _region_fd belongs to (a forked child gets its own)


def locations():
    """(gilstat binary, probe library): $GILSTAT_BIN / $GILSTAT_PROBE, else the
    ones _locations.py names (the build tree's, or the installed tree's relative
    to this package), else `gilstat` on PATH and the probe in its libdir."""
    binary = os.environ.get("GILSTAT_BIN")
    probe = os.environ.get("GILSTAT_PROBE")
    try:
        from gilstat import _locations
        binary = binary or _locations.GILSTAT_BIN
        probe = probe or _locations.PROBE_LIBRARY
    except ImportError:
        pass
    if not binary or not os.path.exists(binary):
        binary = shutil.which("gilstat") or binary
    if (not probe or not os.path.exists(probe)) and binary:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(binary)))
        for libdir in ("lib", "lib64", "lib/%s" % getattr(sys.implementation, "_multiarch", "")):
            candidate = os.path.join(prefix, libdir, "gilstat", "libgilstat_probe.so")
            if os.path.exists(candidate):
                probe = candidate
                break
    return binary, probe


def library():
    """The probe library, loaded once: the copy already in the process (`gilstat
    run` preloads it, an attach injects it) or the one beside the binary."""
    global _library
    if _library is not None:
        return _library
    try:
        lib = ctypes.PyDLL("libgilstat_probe.so", mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        path = locations()[1]
        if not path or not os.path.exists(path):
            raise GilstatError("the gilstat probe library was not found (looked for %s)" % path,
                               "build gilstat (cmake --build build) and put build/python on "
                               "PYTHONPATH, or set GILSTAT_PROBE to libgilstat_probe.so")
        try:
            lib = ctypes.PyDLL(path, mode=os.RTLD_NOW)
        except OSError as e:
            raise GilstatError("cannot load the gilstat probe: %s" % e)
    lib.gilstat_probe_start.restype = ctypes.c_int64
    lib.gilstat_probe_start.argtypes = [ctypes.c_char_p]
    lib.gilstat_probe_stop.restype = ctypes.c_int
    lib.gilstat_probe_stop.argtypes = []
    lib.gilstat_probe_status.restype = ctypes.c_int
    lib.gilstat_probe_status.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    _library = lib
    return lib


def status():
    """The probe's one-line status ("status=1 python=3.12.1 hooks=4 gils=1 ...")."""
    buf = ctypes.create_string_buffer(512)
    library().gilstat_probe_status(buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def _region_files():
    """(dev, inode) of this process's probe regions (memfds named "gilstat"; the probe
    creates one when an attach or measure() first starts it)."""
    files = set()
    for name in os.listdir("/proc/self/fd"):
        path = os.path.join("/proc/self/fd", name)
        try:
            if os.readlink(path).startswith("/memfd:gilstat"):
                st = os.stat(path)
                files.add((st.st_dev, st.st_ino))
        except OSError:
            continue
    return files


def _holder(ours=None):
    """(pid, argv) of another gilstat process (not `ours`) that has our region open,
    or None."""
    files = _region_files()
    if not files:
        return None
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (me, ours):
            continue
        try:
            with open("/proc/%s/comm" % entry) as f:
                if not f.read().startswith("gilstat"):
                    continue
            fd_dir = "/proc/%s/fd" % entry
            for name in os.listdir(fd_dir):
                other = os.stat(os.path.join(fd_dir, name))
                if (other.st_dev, other.st_ino) in files:
                    with open("/proc/%s/cmdline" % entry, "rb") as f:
                        argv = f.read().split(b"\0")
                    return int(entry), [a.decode("utf-8", "replace") for a in argv if a]
        except OSError:
            continue
    return None


def _busy_error(ours=None):
    if _ENV_SHM_FD in os.environ:
        return GilstatError(
            "this process runs under `gilstat run`, which reads its probe; gilstat.measure() "
            "cannot read it as well",
            "run the program without `gilstat run` to measure from Python (or read the report "
            "`gilstat run` prints when the program exits)")
    holder = _holder(ours)
    if holder:
        pid, argv = holder
        what = "gilstat " + argv[1] if len(argv) > 1 else "gilstat"
        return GilstatError("another gilstat reads this process: `%s` (pid %d)" % (what, pid),
                            "only one gilstat may read a process: stop it first")
    return GilstatError("another gilstat reads this process (`gilstat record --pid`, `top` or "
                        "`exporter`)", "only one gilstat may read a process: stop it first")


def start(config, reader=None):
    """Installs the hooks and arms the probe (the caller holds the GIL); returns the
    region's fd.  `reader`: the pid of our own reader, already started.  Raises
    GilstatError with the reason on failure."""
    global _region_fd, _region_pid
    # A reader that has just attached may not have been seen beating yet, and the
    # probe would then take its region over: ask the process table first.
    if _region_files() and _holder(reader):
        raise _busy_error(reader)
    rc = library().gilstat_probe_start(config.encode())
    if rc >= 0:
        _region_fd, _region_pid = int(rc), os.getpid()
        return _region_fd
    if rc == -errno.EBUSY:
        raise _busy_error(reader)
    if rc <= -_START_STATUS_BASE:
        code = -rc - _START_STATUS_BASE
        raise GilstatError("the probe cannot measure this interpreter: %s (%s)"
                           % (_STATUS_TEXT.get(code, "status %d" % code), status()))
    raise GilstatError("the probe failed to start: %s" % os.strerror(-rc))


def stop():
    """Stops recording and restores the hooked GOT slots."""
    return library().gilstat_probe_stop()


def region_fd():
    """The fd of this process's region, created (by a start and an immediate stop)
    the first time: the reader is started while the probe is not armed."""
    if _region_pid is not None and _region_pid != os.getpid():
        # The forking thread keeps its parent's per-thread probe state (its ring is
        # in the parent's region): its events would not reach a region of ours.
        raise GilstatError("gilstat cannot measure in a process forked from one it measured",
                           "measure in the parent, or in a process started with exec "
                           "(subprocess, or multiprocessing's 'spawn' start method)")
    if _region_fd is None:
        start("")
        stop()
    return _region_fd
