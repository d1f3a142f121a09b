"""Reads a live process's GOT slots for the pthread calls gilstat's probe hooks, and
tells whether they are as they were before an attach.

The probe patches the JUMP_SLOT and GLOB_DAT relocations of the interpreter object
(libpython3.X.so for a shared build, the executable for a static one) for HOOKED, and
on detach puts back the values it saved. Here the relocations come from `readelf -rW`
(binutils, always there with the build tools), the load base from /proc/PID/maps and
the values from /proc/PID/mem.

A slot may legitimately change between two readings through ordinary lazy binding:
from the object's own PLT stub to the resolved function. That is accepted only when
the new value is exactly the libc definition of that symbol and version (from libc's
dynamic symbol table), never anything else, and never the probe.
"""
import os
import re
import struct
import subprocess

HOOKED = ("pthread_mutex_init", "pthread_mutex_lock", "pthread_mutex_unlock",
          "pthread_cond_signal", "pthread_cond_wait", "pthread_cond_timedwait")
SLOT_TYPES = ("R_X86_64_JUMP_SLOT", "R_X86_64_GLOB_DAT")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Mapping:
    def __init__(self, line):
        fields = line.split(None, 5)
        start, end = fields[0].split("-")
        self.start, self.end = int(start, 16), int(end, 16)
        self.perms = fields[1]
        self.offset = int(fields[2], 16)
        self.path = fields[5].strip() if len(fields) > 5 else ""

    def __contains__(self, address):
        return self.start <= address < self.end


def read_maps(pid):
    with open("/proc/%d/maps" % pid) as f:
        return [Mapping(line) for line in f if line.strip()]


def is_probe_path(path):
    return "libgilstat_probe" in path or "memfd:gilstat" in path


def probe_mapped(pid):
    """True when the probe library is loaded in pid."""
    return any(is_probe_path(m.path) for m in read_maps(pid))


def readelf(option, path):
    """readelf -W option path, cached per file version (the tests read the same few
    objects many times)."""
    st = os.stat(path)
    key = (option, os.path.realpath(path), st.st_ino, st.st_mtime_ns)
    if key not in _readelf_cache:
        _readelf_cache[key] = subprocess.run(
            ["readelf", "-W", option, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            check=True, timeout=60, env=dict(os.environ, LC_ALL="C")).stdout.decode()
    return _readelf_cache[key]


_readelf_cache = {}


def elf_type(path):
    match = re.search(r"^\s*Type:\s+(\w+)", readelf("-h", path), re.M)
    assert match, "readelf -h %s: no Type" % path
    return match.group(1)


def first_load_vaddr(path):
    for line in readelf("-l", path).splitlines():
        fields = line.split()
        if fields and fields[0] == "LOAD":
            return int(fields[2], 16)
    raise AssertionError("readelf -l %s: no LOAD segment" % path)


def load_bias(path, maps):
    """Runtime address minus link-time address for the object at path."""
    if elf_type(path) == "EXEC":
        return 0
    real = os.path.realpath(path)
    starts = [m.start for m in maps
              if m.offset == 0 and (m.path == path or os.path.realpath(m.path) == real)]
    assert starts, "%s is not mapped" % path
    return min(starts) - (first_load_vaddr(path) & ~(PAGE - 1))


def relocations(path):
    """[(link-time slot address, type, 'name@version')] for JUMP_SLOT / GLOB_DAT."""
    out = []
    for line in readelf("-r", path).splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[2] in SLOT_TYPES:
            out.append((int(fields[0], 16), fields[2], fields[4]))
    return out


def dynamic_symbols(path):
    """{'name@version': address} for the defined functions of path."""
    out = {}
    for line in readelf("--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[3] == "FUNC" and fields[6] != "UND":
            name = fields[7].replace("@@", "@")
            out[name] = int(fields[1], 16)
    return out


def plt_range(path):
    """(link-time start, end) of the .plt section, where lazy-binding stubs live."""
    for line in readelf("-S", path).splitlines():
        match = re.search(r"\]\s+\.plt\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if match:
            start = int(match.group(1), 16)
            return start, start + int(match.group(2), 16)
    return 0, 0


def defines(path, symbol):
    """True when path's dynamic symbol table defines symbol."""
    for line in readelf("--dyn-syms", path).splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[6] != "UND" and fields[7].split("@")[0] == symbol:
            return True
    return False


def interpreter_object(pid, maps):
    """The mapped object that defines _PyRuntime: libpython3.X.so for a shared build,
    else the python executable (which is not /proc/PID/exe when the process was started
    through an explicit ld.so, as the launchers of tests/interpreters do)."""
    paths = []
    for m in maps:
        if m.path.startswith("/") and m.path not in paths and os.path.isfile(m.path):
            paths.append(m.path)
    exe = os.readlink("/proc/%d/exe" % pid)

    def rank(path):
        name = os.path.basename(path)
        if re.match(r"libpython3\.\d+", name):
            return 0
        return 1 if "python" in name else (2 if path == exe else 3)

    for path in sorted(paths, key=rank):
        if rank(path) < 3 and defines(path, "_PyRuntime"):
            return path
    raise AssertionError("process %d maps no object defining _PyRuntime" % pid)


def libc_path(maps):
    for m in maps:
        if re.search(r"/libc\.so\.6$", m.path) or re.search(r"/libc-[\d.]+\.so$", m.path):
            return m.path
    raise AssertionError("no libc mapped")


class GotReader:
    """The GOT slots of one process's interpreter object."""

    def __init__(self, pid, symbols=HOOKED, all_slots=False):
        self.pid = pid
        maps = read_maps(pid)
        self.object = interpreter_object(pid, maps)
        self.bias = load_bias(self.object, maps)
        plt = plt_range(self.object)
        self.plt = (self.bias + plt[0], self.bias + plt[1])
        wanted = set(symbols)
        self.slots = []  # (runtime address, type, 'name@version')
        for offset, kind, name in relocations(self.object):
            if all_slots or name.split("@")[0] in wanted:
                self.slots.append((self.bias + offset, kind, name))
        hooked = [s for s in self.slots if s[2].split("@")[0] in HOOKED]
        assert hooked, "no relocation for %s in %s" % (HOOKED, self.object)
        libc = libc_path(maps)
        libc_bias = load_bias(libc, maps)
        self.libc_address = {name: libc_bias + value
                             for name, value in dynamic_symbols(libc).items()
                             if name.split("@")[0] in HOOKED}
        self._fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self):
        """{slot address: value} now."""
        values = {}
        for address, _, _ in self.slots:
            data = os.pread(self._fd, 8, address)
            assert len(data) == 8, "short read of the GOT slot at %#x" % address
            values[address] = struct.unpack("<Q", data)[0]
        return values

    def lazy_stub(self, value):
        return self.plt[0] <= value < self.plt[1]

    def hooked_slots(self, values):
        """The slots of HOOKED symbols whose value is neither libc's definition nor a
        lazy-binding stub in the interpreter object's .plt: patched by someone."""
        patched = []
        for address, _, name in self.slots:
            if name.split("@")[0] not in HOOKED:
                continue
            value = values[address]
            if value == self.libc_address.get(name) or self.lazy_stub(value):
                continue
            patched.append(name)
        return patched

    def describe(self, value, maps):
        for m in maps:
            if value in m:
                return "%#x (%s+%#x)" % (value, m.path or "[anon]", value - m.start)
        return "%#x (unmapped)" % value

    def differences(self, before, after):
        """Human-readable list of slots whose `after` value is not acceptable given
        `before`; empty when every slot is restored."""
        maps = read_maps(self.pid)
        probe = [m for m in maps if is_probe_path(m.path)]
        problems = []
        for address, kind, name in self.slots:
            b, a = before[address], after[address]
            where = "%s %s slot %#x" % (name, kind, address)
            if any(a in m for m in probe):
                problems.append("%s points into the probe: %s"
                                % (where, self.describe(a, maps)))
                continue
            if a == b:
                continue
            lazy_before = self.lazy_stub(b)
            exact = self.libc_address.get(name)
            if name.split("@")[0] in HOOKED:
                if lazy_before and a == exact:
                    continue  # lazy binding resolved it to libc's own definition
            elif lazy_before and not self.lazy_stub(a):
                continue  # another symbol resolved by lazy binding
            problems.append("%s was %s, now %s (libc's %s is %s)"
                            % (where, self.describe(b, maps), self.describe(a, maps), name,
                               "%#x" % exact if exact is not None else "unknown"))
        return problems
