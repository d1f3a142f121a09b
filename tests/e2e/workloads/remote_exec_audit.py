"""Imported by the attach workloads (not a workload itself): records the paths of the
PEP 768 remote-exec scripts this process runs. CPython 3.14+ raises the audit event
"cpython.remote_debugger_script" right before running one, so a test can tell whether
gilstat's request ran, and how often. Does nothing before 3.14."""
import sys

SCRIPTS = []


def _audit(event, args):
    if event.endswith("remote_debugger_script"):
        SCRIPTS.append(str(args[0]))


if hasattr(sys, "remote_exec"):
    sys.addaudithook(_audit)
