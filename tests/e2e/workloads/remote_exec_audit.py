"""Imported by the attach workloads (not a workload itself): records the paths of the
PEP 768 remote-exec scripts this process runs. CPython 3.14+ raises the audit event
"cpython.remote_debugger_script" right before running one, so a test can tell whether
gilstat's request ran, and how often. Does nothing before 3.14."""
import sys

SCRIPTS = []


def _audit(event, args):
    if event.endswith("remote_debugger_script"):
        SCRIPTS.append(str(args[0]))


def probe_loaded():
    """Whether gilstat's probe library is mapped in this process (by path, or as the
    memfd copy "/memfd:gilstat:<name>"; the region is "/memfd:gilstat")."""
    with open("/proc/self/maps") as f:
        return any("libgilstat_probe" in line or "memfd:gilstat:" in line for line in f)


if hasattr(sys, "remote_exec"):
    sys.addaudithook(_audit)
